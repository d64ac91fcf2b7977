"""The checks behind ptcheck (and ptmap's colouring): one pass over every arena's
chunks, every free list, each thread's tcache, the mmapped chunks and ``mp_``.

Each problem becomes a :class:`Finding`.  ``glibc`` is what glibc of the target's
version would abort with, and on which operation, or None where glibc would not
notice.  No rule here flags a heap glibc itself could have produced.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Optional

from multiheap.checks.glibcmsg import glibc as gmsg
from multiheap.errors import TargetMemoryError
from multiheap.heaptypes import IS_MMAPPED, NON_MAIN_ARENA, PREV_INUSE, SIZE_BITS, Arena, FreeList
from multiheap.spill import SpillArray
from multiheap.walks import ChunkIndex

ERROR, WARNING = "error", "warning"
# findings listed of each kind; past it a kind is only counted (a heap corrupted
# throughout, or read with the wrong layout, would otherwise give millions)
MAX_PER_KIND = 1000
# index keys looked up as one dict at most (about 30 MB): chunks marked free are
# checked against their range of the index a range at a time
HELD_KEYS = 1 << 18
NEAR = 1 << 16  # bytes read around a word a check needs in a heap, on a miss


@dataclass
class Finding:
    """One problem: what (kind), how bad, where, what else it involves, and glibc's view."""

    kind: str
    severity: str
    addr: int
    related: list[int] = field(default_factory=list)
    message: str = ""
    glibc: Optional[dict] = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Seg:
    """One walked run of chunks (between fenceposts): the span the walk covered, and
    the segment's chunk index."""

    arena: Arena
    lo: int
    hi: int  # the walk covered [lo, hi)
    index: ChunkIndex


class Findings(list):
    """The findings listed (at most :data:`MAX_PER_KIND` of each kind), and in
    ``omitted`` how many more of each kind were found."""

    def __init__(self, items=(), omitted: Optional[dict[str, int]] = None) -> None:
        super().__init__(items)
        self.omitted: dict[str, int] = dict(omitted or {})


class Checker:
    """Runs every check once over one Heap; findings accumulate in ``found``."""

    def __init__(self, heap) -> None:
        self.h = heap
        self.v = heap.cfg.version
        self.sz = heap.sz
        self.p = heap.p
        self.found = Findings()
        self._kinds: dict[str, int] = {}  # findings of each kind so far
        self.segs: list[_Seg] = []
        # chunks whose successor's PREV_INUSE is clear (a huge heap's in the spill file)
        self.marked_free = SpillArray(heap.lists.spill)
        self.inside: dict[int, int] = {}  # a list entry inside a chunk -> that chunk
        self.lists: list[tuple[str, array]] = []  # each checked list: label, chunks
        self.no_a = SpillArray(heap.lists.spill)  # non-main arena chunks without NON_MAIN_ARENA

    # helpers -------------------------------------------------------------------
    def add(self, kind: str, sev: str, addr: int, related: list[int], message: str,
            key: Optional[str] = None, op: str = "") -> None:
        n = self._kinds[kind] = self._kinds.get(kind, 0) + 1
        if n > MAX_PER_KIND:
            self.found.omitted[kind] = n - MAX_PER_KIND
            return
        self.found.append(Finding(kind, sev, addr, [r for r in related if r is not None],
                                  message, gmsg(self.v, key, op) if key else None))

    def words(self, addr: int, n: int) -> Optional[tuple[int, ...]]:
        """``n`` words at ``addr`` from the bulk-read cache, or None.  On a miss in a
        heap, the :data:`NEAR` bytes around it are read (a bin's chunks, in list order,
        are often near each other), elsewhere the pages holding it."""
        blk = self.h.lists.block_at(addr, n * self.sz, NEAR)
        if blk is None:
            return None
        lo, _hi, buf = blk
        return tuple(self.h.word.unpack_from(buf, addr - lo + i * self.sz)[0]
                     for i in range(n))

    def req(self, size: int) -> int:
        """The largest request malloc serves with a chunk of ``size`` bytes."""
        return max(size - self.sz, 0)

    def region_name(self, addr: int) -> str:
        for r in self.h.target.regions():
            if r.start <= addr < r.end:
                return r.name or "anonymous memory"
        return "unmapped memory"

    def seg_of(self, addr: int) -> Optional[_Seg]:
        for s in self.segs:
            if s.lo <= addr < s.hi:
                return s
        return None

    def containing(self, s: _Seg, addr: int, listed: bool = False) -> int:
        """The chunk holding ``addr`` in a walked run.  The walk sorted every list
        entry of the run below top: inside a chunk (``inside``) or a chunk start."""
        found = self.inside.get(addr)
        if found is None and listed and (s.index.top is None or addr < s.index.top):
            return addr
        if found is None:
            found = s.index.holding(addr)
        return found if found is not None else s.lo

    def place(self, addr: int, arena: Optional[Arena],
              listed: bool = False) -> Optional[tuple[str, Optional[int], str]]:
        """Where a free-list entry lies if not on a chunk boundary of ``arena``'s heaps
        (any arena's if None): (kind, chunk it lies in, words), or None when it is fine
        or cannot be told (beyond where a walk stopped).  ``listed``: ``addr`` is an
        entry of a walked list (the chunk walk placed it already)."""
        s = self.seg_of(addr)
        if s is None:
            found = self.h.segment_of(addr)
            if found is not None:  # a heap whose walk stopped before addr
                return None
            if arena is None and self.p.tcache_takes_mmapped and \
                    self.h.mmapped.starts_at(addr):
                return None  # a tcache entry (arena None): 2.43 keeps mmapped chunks there
            return ("outside-heap", None,
                    f"outside every heap (in {self.region_name(addr)})")
        c = self.containing(s, addr, listed)
        if c != addr:
            return ("inside-chunk", c, f"inside the chunk at {c:#x}, not on a chunk boundary")
        if arena is not None and s.arena.addr != arena.addr:
            return ("wrong-arena", None, f"in a heap of arena {s.arena.addr:#x}, not "
                                         f"{arena.addr:#x}")
        return None

    # the chunk walk --------------------------------------------------------------
    def walk_arena(self, a: Arena) -> None:
        for st in a.stops:
            key = "top_size" if "top size" in st.reason else None
            self.add("arena", ERROR, st.addr, [a.addr], f"arena {a.addr:#x}: {st.reason}",
                     key, f"malloc of more than any free chunk holds (from top of arena "
                          f"{a.addr:#x})")
        for seg in a.heaps:
            self.walk_segment(a, seg)
        top = a.top
        if top and a.heaps:
            w = self.words(top, 2)
            if w is not None:
                size = w[1] & ~SIZE_BITS
                if size > a.f["system_mem"] and not any("top size" in s.reason
                                                        for s in a.stops):
                    self.add("top-size", ERROR, top, [a.addr],
                             f"top chunk size {size:#x} is larger than the arena's "
                             f"system_mem {a.f['system_mem']:#x}", "top_size",
                             "a malloc served from top")
                if not w[1] & PREV_INUSE:
                    self.add("top-prev-inuse", WARNING, top, [a.addr],
                             "top chunk's PREV_INUSE is clear (glibc always merges a free "
                             "chunk into top)")

    def walk_segment(self, a: Arena, seg) -> None:
        """Check each chunk header of one heap, over the engine's one chunk walk
        (:meth:`~multiheap.walks.ChunkWalks.chunk_windows`, past fenceposts)."""
        h, sz = self.h, self.sz
        want_a = 0 if a.is_main else NON_MAIN_ARENA
        marked = self.marked_free
        flags = IS_MMAPPED | NON_MAIN_ARENA
        ix = ChunkIndex(seg.start, sz)
        listed = h.lists.free_index()
        for win in h.walks.chunk_windows(a, seg, into=ix):  # streamed: a window at a time
            words, base, starts = win.words, win.base, win.starts
            if starts:  # each list entry up to the window's last chunk's end: a chunk
                # start, or inside which chunk (the next window begins at that end)
                last = starts[-1]
                end = base + last * sz + (words[last + 1] & ~SIZE_BITS)
                on = None
                for e in sorted(listed.between(base, end)):
                    w = (e - base) // sz
                    if (e - base) % sz == 0 and w <= last:
                        on = on if on is not None else set(starts)
                        if w in on:
                            continue
                    self.inside[e] = base + starts[bisect.bisect_right(starts, w) - 1] * sz
            for pw in win.marked:
                marked.append(base + pw * sz)
                size = words[pw + 1] & ~SIZE_BITS
                nw = pw + size // sz
                if nw + 1 < len(words) and words[nw] != size:
                    self._prev_size(base + nw * sz, base + pw * sz, words[nw], size)
            for w in win.starts:
                if words[w + 1] & flags != want_a:
                    self._flags(a, base + w * sz, words[w + 1])
        st = ix.stop
        if st is not None and st.reason.startswith("heap "):
            self.add("unreadable", WARNING, seg.start, [a.addr], st.reason)
            return
        if st is not None and not st.reason.startswith("top size"):
            prev = ix.before
            self.add("bad-size", ERROR, st.addr, [prev] if prev is not None else [],
                     f"{st.reason} at {st.addr:#x}: the chunk walk stops here"
                     + (f" (the chunk before it, {prev:#x}, says size "
                        f"{ix.read(prev) & ~SIZE_BITS:#x})"
                        if prev is not None else ""))
        elif a.is_main and ix.top is None and a.top and seg.start <= a.top < seg.end:
            hi = ix.runs[-1][1] if ix.runs else seg.start
            self.add("walk-stop", ERROR, hi, [a.top],
                     f"the chunk walk of arena {a.addr:#x} stops at {hi:#x} before its top "
                     f"chunk {a.top:#x}")
        for lo, hi in ix.runs:
            end = seg.end if ix.top == hi else hi  # top belongs to its run
            self.segs.append(_Seg(a, lo, end, ix))

    def _prev_size(self, addr: int, prev: int, stored: int, real: int) -> None:
        self.add("prev-size", ERROR, addr, [prev],
                 f"prev_size {stored:#x} of {addr:#x} disagrees with the size {real:#x} of "
                 f"the free chunk before it ({prev:#x})",
                 "consolidating" if self.v >= (2, 29) else "size_vs_prev",
                 f"free({addr + 2 * self.sz:#x})")

    def _flags(self, a: Arena, addr: int, sf: int) -> None:
        if sf & IS_MMAPPED:
            self.add("flags", ERROR, addr, [a.addr],
                     f"chunk {addr:#x} in an arena's heap has IS_MMAPPED set",
                     "munmap", f"free({addr + 2 * self.sz:#x})")
        elif a.is_main and sf & NON_MAIN_ARENA:
            self.add("flags", ERROR, addr, [a.addr],
                     f"chunk {addr:#x} of main_arena's heap has NON_MAIN_ARENA set: free() "
                     "would look for its arena in a heap_info that does not exist")
        elif not a.is_main and not sf & NON_MAIN_ARENA:
            self.no_a.append(addr)

    # free lists ------------------------------------------------------------------
    def two_lists(self) -> None:
        """A chunk in two free lists (found from the sorted list entries: only the
        chunks listed twice are looked for list by list)."""
        listed = self.h.lists.free_index()
        if listed.unique:
            return
        dup = listed.repeated()
        first: dict[int, str] = {}
        for label, chunks in self.lists:
            for c in [c for c in chunks if c in dup]:
                other = first.setdefault(c, label)
                if other != label:
                    self.add("in-two-lists", ERROR, c, [],
                             f"chunk {c:#x} is in two free lists: {other} and {label}")

    def label_of(self, c: int) -> str:
        """The first checked list holding chunk ``c`` (a finding's words)."""
        return next((label for label, chunks in self.lists if c in chunks), "a free list")

    def stop_finding(self, fl: FreeList, label: str, head: int, arena: Optional[Arena],
                     key_misaligned: Optional[str], op: str) -> None:
        """A list walk that stopped early: say what the last good entry points at."""
        st = fl.stop
        if st is None:
            return
        last = fl.chunks[-1] if fl.chunks else head
        if st.reason.startswith("cycle"):
            return  # reported by the callers (double free)
        if "misaligned" in st.reason:
            self.add("misaligned-link", ERROR, last, [st.addr, head],
                     f"{label}: the entry after {last:#x} is {st.addr:#x}, not a chunk "
                     "address (misaligned)", key_misaligned, op)
            return
        placed = self.place(st.addr, arena)
        if placed is not None:
            kind, inside, words = placed
            self.add(kind, ERROR, last, [st.addr, head] + ([inside] if inside else []),
                     f"{label}: the entry after {last:#x} is {st.addr:#x}, {words} "
                     f"({st.reason})")
            return
        self.add("bad-link", ERROR, last, [st.addr, head],
                 f"{label}: the walk stops at {st.addr:#x}: {st.reason}")

    def entries(self, fl: FreeList, label: str, head: int, arena: Optional[Arena]) -> None:
        self.lists.append((label, fl.chunks))
        for c in fl.chunks:
            placed = self.place(c, arena, listed=True)
            if placed is not None:
                kind, inside, words = placed
                self.add(kind, ERROR, c, [head] + ([inside] if inside else []),
                         f"{label} holds {c:#x}, {words}")

    def bins(self, a: Arena) -> None:
        h = self.h
        for fl in h.lists.bins(a):
            i = fl.index
            head = h.lists.bin_address(a, i)
            label = f"arena {a.addr:#x} {fl.kind} bin {i}"
            key = {"unsorted": "unsorted_links", "small": "small_links"}.get(fl.kind, "unlink")
            op = ("the next malloc that sorts the unsorted bin" if fl.kind == "unsorted"
                  else "a malloc that takes a chunk from this bin")
            self.entries(fl, label, head, a)
            self.stop_finding(fl, label, head, a, key, op)
            if fl.stop is not None and fl.stop.reason.startswith("cycle"):
                self.add("double-free", ERROR, fl.stop.addr, [head],
                         f"{label}: chunk {fl.stop.addr:#x} is in it twice (a cycle)", key, op)
            prev = head
            leaders: list[tuple[int, int, int]] = []
            last_size = None
            for c, size in zip(fl.chunks, fl.sizes):
                w = self.words(c, 6)
                if w is None:
                    break
                bk = w[3]
                if bk != prev:
                    self.add("bin-link", ERROR, c, [prev, bk, head],
                             f"{label}: bk of {c:#x} is {bk:#x} ({self.region_name(bk)}), "
                             f"but the chunk before it in the list is {prev:#x}", key, op)
                self._free_chunk(a, c, size, fl.kind, label, op)
                if fl.kind == "large" and size != last_size:
                    leaders.append((c, w[4], w[5]))
                last_size = size
                prev = c
            if fl.stop is None and fl.chunks and a.f["bins"][2 * (i - 1) + 1] != prev:
                tail = a.f["bins"][2 * (i - 1) + 1]
                self.add("bin-link", ERROR, head, [prev, tail],
                         f"{label}: the bin's bk is {tail:#x}, but its last chunk is "
                         f"{prev:#x}", key, op)
            if leaders and fl.stop is None:
                self._nextsize(leaders, label, head)

    def _free_chunk(self, a: Arena, c: int, size: int, kind: str, label: str,
                    op: str) -> None:
        """A chunk in a bin: its successor must say it is free, with its size."""
        sz = self.sz
        nxt = c + size
        w = self.words(nxt, 2)
        if kind == "unsorted":
            if size <= 2 * sz or size > a.f["system_mem"]:
                self.add("bad-size", ERROR, c, [], f"{label}: {c:#x} has size {size:#x}",
                         "unsorted_size", op)
                return
            if w is None or w[1] < 2 * sz or w[1] > a.f["system_mem"]:  # as glibc: the
                # whole size word (a fencepost's 2 words after a freed old top passes)
                self.add("next-size", ERROR, c, [nxt],
                         f"{label}: the chunk after {c:#x} (at {nxt:#x}) has an impossible "
                         f"size {(w[1] if w else 0):#x}", "unsorted_next_size", op)
                return
        if w is None:
            return
        if w[0] != size:
            self.add("prev-size", ERROR, c, [nxt],
                     f"{label}: {c:#x} has size {size:#x} but the next chunk's prev_size "
                     f"is {w[0]:#x}",
                     "unsorted_prev_size" if kind == "unsorted" else "size_vs_prev", op)
        elif w[1] & PREV_INUSE and self.seg_of(c) is not None:
            self.add("listed-inuse", ERROR, c, [nxt],
                     f"{label}: {c:#x} is in a bin but the next chunk's PREV_INUSE says it "
                     "is in use", "unsorted_prev_inuse" if kind == "unsorted" else None, op)

    def _nextsize(self, leaders: list[tuple[int, int, int]], label: str, head: int) -> None:
        n = len(leaders)
        for k, (c, fdn, bkn) in enumerate(leaders):
            want_fd, want_bk = leaders[(k + 1) % n][0], leaders[k - 1][0]
            if fdn != want_fd or bkn != want_bk:
                bad = bkn if bkn != want_bk else fdn
                which = "bk_nextsize" if bkn != want_bk else "fd_nextsize"
                self.add("nextsize-link", ERROR, c, [bad, head],
                         f"{label}: {which} of {c:#x} is {bad:#x} "
                         f"({self.region_name(bad)}), should be "
                         f"{want_bk if which == 'bk_nextsize' else want_fd:#x}",
                         "unlink_nextsize", "a malloc that takes this chunk from its bin")

    def fastbins(self, a: Arena) -> None:
        h = self.h
        for fl in h.lists.fastbins(a):
            head = a.addr
            label = f"arena {a.addr:#x} fastbin {fl.index}"
            size = self.p.fastbin_size(fl.index)
            op = (f"the first malloc({self.req(size):#x}) that finds it at the fastbin's "
                  "head (tcache empty)")
            self.entries(fl, label, head, a)
            st = fl.stop
            if st is not None and "does not belong" in st.reason:
                placed = self.place(st.addr, a)
                if placed is None:
                    self.add("fast-size", ERROR, st.addr,
                             [fl.chunks[-1] if fl.chunks else head],
                             f"{label}: {st.addr:#x} {st.reason}", "fast_size", op)
                    continue
            if st is not None and st.reason.startswith("cycle"):
                self.add("double-free", ERROR, st.addr, [head],
                         f"{label}: chunk {st.addr:#x} is in it twice (double free)")
                continue
            self.stop_finding(fl, label, head, a, "fast_unaligned", op)

    def tcaches(self, arena: Optional[Arena]) -> None:
        h, sz, p = self.h, self.sz, self.p
        for tc in h.lists.tcaches():
            if not tc.addr:
                continue
            keys = self._tcache_key(tc)
            for fl in tc.bins:
                if not fl.chunks and fl.stop is None and not fl.count_field:
                    continue
                if arena is not None and not any(
                        (s := self.seg_of(c)) is not None and s.arena.addr == arena.addr
                        for c in fl.chunks):
                    continue
                label = f"thread {tc.thread.num} tcache bin {fl.index}"
                size = p.tcache_size(fl.index) or 0
                op = (f"malloc({self.req(size):#x}) number {len(fl.chunks) + 1} from thread "
                      f"{tc.thread.num}")
                self.entries(fl, label, tc.addr, None)
                st = fl.stop
                if st is not None and st.reason.startswith("cycle"):
                    w = self.words(st.addr, 4)
                    intact = keys is None or (w is not None and w[3] == keys)
                    self.add("double-free", ERROR, st.addr, [tc.addr],
                             f"{label}: chunk {st.addr:#x} is in it twice (double free)",
                             "tcache_double_free" if intact else None,
                             f"free({st.addr + 2 * sz:#x})")
                else:
                    self.stop_finding(fl, label, tc.addr, None, "tcache_unaligned", op)
                if st is None:
                    self._tcache_count(tc, fl, label)
                if keys is not None and self.v >= (2, 29):
                    for c in fl.chunks:
                        w = self.words(c, 4)
                        if w is not None and w[3] != keys:
                            self.add("tcache-key", WARNING, c, [tc.addr],
                                     f"{label}: the key of {c:#x} is {w[3]:#x}, not "
                                     f"{keys:#x}: a double free of it would go unnoticed")

    def _tcache_key(self, tc) -> Optional[int]:
        """The key glibc stores in this thread's tcache entries, if it can be known."""
        if self.v < (2, 29):
            return None
        if self.v < (2, 34):
            return tc.addr
        sym = self.h.target.symbol("tcache_key")
        if sym:
            try:
                return self.h.mem.ptr(sym)
            except TargetMemoryError:
                return None
        return None

    def _tcache_count(self, tc, fl: FreeList, label: str) -> None:
        n, f = len(fl.chunks), fl.count_field
        if f is None:
            return
        if self.v >= (2, 42):
            total = self.h.mp.get("tcache_count")
            if total is None or f + n == total:
                return
            msg = (f"{label}: num_slots is {f} with {n} chunks listed, but they add up to "
                   f"{f + n}, not mp_.tcache_count {total}")
        else:
            if f == n:
                return
            msg = f"{label}: its count is {f} but the list holds {n} chunks"
        self.add("tcache-count", ERROR, tc.addr, [fl.chunks[0]] if fl.chunks else [], msg)

    # after the walks ---------------------------------------------------------------
    def states(self) -> None:
        """Chunks marked free must be in exactly one bin, and bin chunks marked free."""
        self.two_lists()
        listed = self.h.lists.free_index()
        for c, st in self._listed_states(listed, self.marked_free):
            if st is None:
                self._unlisted(c)
            elif st in ("tcache", "fast"):
                self.add("state", ERROR, c, [],
                         f"{c:#x} is in {self.label_of(c)} but the next chunk's PREV_INUSE "
                         "says it is free: freeing that chunk would merge this one")
        for c, st in self._listed_states(listed, self.no_a):
            if st != "free":  # not in an arena's bin
                self.add("flags", WARNING, c, [],
                         f"chunk {c:#x} of a non-main arena lacks NON_MAIN_ARENA: free() "
                         "would give it to main_arena")

    @staticmethod
    def _listed_states(listed, chunks) -> Iterator[tuple[int, Optional[str]]]:
        """(chunk, its list state or None) for many chunks, in order of address a
        block at a time: one range of the index each, not one search per chunk.  A
        block whose range holds more than :data:`HELD_KEYS` index keys is halved
        first, so that the dict of a range stays small even when the chunks are
        spread over a heap of millions of listed chunks."""
        for lo in range(0, len(chunks), 65536):
            todo = [sorted(chunks[lo:lo + 65536])]
            while todo:
                part = todo.pop()
                if len(part) > 1 and listed.count(part[0], part[-1] + 4) > HELD_KEYS:
                    half = len(part) // 2
                    todo += [part[half:], part[:half]]  # the lower half first
                    continue
                here = listed.between(part[0], part[-1] + 4)  # keys: addr | code (0-3)
                for c in part:
                    yield c, here.get(c)

    def _unlisted(self, c: int) -> None:
        w = self.words(c, 4)
        size = (w[1] & ~SIZE_BITS) if w else 0
        nxt = c + size
        key, op = None, f"free({nxt + 2 * self.sz:#x}) (merges backward)"
        if w is not None:
            fd, bk = w[2], w[3]
            f_bk, b_fd = self.words(fd + 3 * self.sz, 1), self.words(bk + 2 * self.sz, 1)
            if f_bk is None or b_fd is None or f_bk[0] != c or b_fd[0] != c:
                key = "unlink"
        self.add("unlisted-free", ERROR, c, [nxt],
                 f"{c:#x} is marked free by the PREV_INUSE bit of {nxt:#x} but is in no "
                 "free list" + ("" if key else "; its fd/bk would pass unlink's check "
                                              "(unsafe unlink)"), key, op)

    def mmapped(self) -> None:
        h = self.h
        chunks = h.mmapped.chunks()
        n, total = len(chunks), h.mmapped.total()
        want_n, want_b = h.mp["n_mmaps"], h.mp["mmapped_mem"]
        if (n, total) == (want_n, want_b) or h.mmapped.remap_drift():
            return  # every chunk found (2.43 overcounts remaps: a note says so)
        found = {a for a, _s, _p in chunks}
        for lo, hi in h.mmapped.anon_spans():
            for addr, size, off in h.mmapped.headers(lo, hi):
                if addr not in found and size and \
                        addr - off + self.p.mmap_span(off, size)[1] > hi:
                    self.add("mmapped-size", ERROR, addr, [hi],
                             f"mmapped chunk {addr:#x} has size {size:#x}: it runs past "
                             f"its mapping's end {hi:#x}", None)
        # A count that differs with no header to blame is the search's limit, not a
        # finding: ptcheck shows it as a note (mmapped.note), as ptstats does.

    def params(self) -> None:
        mp = self.h.mp
        limit = 4 * 1024 * 1024 * self.sz if self.sz == 8 else 512 * 1024
        if mp["mmap_threshold"] > limit:
            self.add("mp", WARNING, self.h.cfg.mp, [],
                     f"mp_.mmap_threshold {mp['mmap_threshold']:#x} is above glibc's "
                     f"maximum {limit:#x}")
        bins = mp.get("tcache_bins", mp.get("tcache_small_bins"))
        if bins is not None and bins > self.p.tcache_max_bins:
            self.add("mp", WARNING, self.h.cfg.mp, [],
                     f"mp_ says {bins} tcache bins, more than the {self.p.tcache_max_bins} "
                     "a tcache has")
        if mp["n_mmaps"] < 0 or mp["n_mmaps"] > mp["max_n_mmaps"]:
            self.add("mp", WARNING, self.h.cfg.mp, [],
                     f"mp_.n_mmaps {mp['n_mmaps']} is out of range (most ever: "
                     f"{mp['max_n_mmaps']})")


def run_checks(heap, arena: Optional[Arena] = None) -> Findings:
    """Every check over the heap (or one arena): the findings, empty when healthy
    (a list; its ``omitted``: how many more of a kind were found than listed, counted
    over every arena, as every arena is walked)."""
    c = Checker(heap)
    arenas = heap.arenas()
    for a in arenas:  # every arena is walked: list entries are placed against all heaps
        c.walk_arena(a)
    chosen = [arena] if arena is not None else arenas
    for a in chosen:
        c.bins(a)
        c.fastbins(a)
    c.tcaches(arena)
    c.states()
    if arena is None:
        c.mmapped()
        c.params()
    if arena is not None:
        keep = {s.lo for s in c.segs if s.arena.addr == arena.addr}
        spans = [(s.lo, s.hi) for s in c.segs if s.lo in keep]
        c.found = Findings([f for f in c.found if f.addr == arena.addr or
                            any(lo <= f.addr < hi for lo, hi in spans) or
                            f.kind in ("arena", "top-size")], c.found.omitted)
    return c.found
