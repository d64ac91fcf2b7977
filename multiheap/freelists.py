"""Free lists: bins, fastbins and each thread's tcache, and what they say of a chunk.

:class:`FreeLists` is held by :class:`multiheap.heap.Heap` (``heap.lists``), given the
memory, the layout parameters and the arenas.  Each list is walked once per stop,
bounded (cycles, misaligned links, sizes that do not belong, a step limit).
"""

from __future__ import annotations

import itertools
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import Any, Generator, Optional, Union

from multiheap.discovery.facts import ThreadFacts
from multiheap.errors import TargetMemoryError
from multiheap.heaptypes import (
    IS_MMAPPED,
    MAX_LIST,
    PREV_INUSE,
    SIZE_BITS,
    Arena,
    ArenaView,
    Chunk,
    FreeList,
    SameSize,
    Stop,
    Tcache,
)
from multiheap.layouts import Layout, Params
from multiheap.listed import Listed
from multiheap.memory import CACHE_BYTES, Memory
from multiheap.spill import BLOCK, SpillArray, SpillFile
from multiheap.target import word_struct

# the low byte of an array item (alignment lives there: masks are below 256)
_LOW = 0 if sys.byteorder == "little" else array("Q").itemsize - 1
_ALIGNED: dict[tuple[int, int], bytes] = {}  # (mask, rem) -> byte -> 0 aligned / 1 not


class FreeLists:
    """The free lists of one target at one stop: walked on demand, each once."""

    def __init__(self, mem: Memory, params: Params, endian: str, state: Layout,
                 tcache: Optional[Layout], threads: Sequence[ThreadFacts],
                 arenas: ArenaView) -> None:
        self.mem, self.p, self.sz = mem, params, params.ptr_size
        self.two = word_struct(self.sz, endian, 2)
        self.native = endian == sys.byteorder  # words readable in place (memoryview.cast)
        self.L_state, self.L_tcache = state, tcache
        self.threads = threads
        self.model = arenas
        self._free_index: Optional[Listed] = None
        self._bins: dict[int, list[FreeList]] = {}
        self._fast: dict[int, list[FreeList]] = {}
        self._lists: dict[tuple[str, int, int], FreeList] = {}  # one walked list each
        self._members: dict[int, set[int]] = {}  # id(FreeList) -> its chunks, as a set
        self._tc_heads: Optional[list[Tcache]] = None
        self._tcaches: Optional[list[Tcache]] = None
        self._tc_struct: dict[int, Optional[dict]] = {}
        self._preloaded = False
        self.spill = SpillFile()  # where long lists keep their entries (flat memory)

    def preload(self) -> None:
        """Read each heap segment in one request, before lists are walked, when the
        heaps fit the memory cache; bigger heaps are read in windows as lists go."""
        if self._preloaded:
            return
        self._preloaded = True
        segs = [seg for a in self.model.arenas() for seg in a.heaps]
        if sum(seg.end - seg.start for seg in segs) > CACHE_BYTES // 4:
            return
        for seg in segs:
            try:
                self.mem.load(seg.start, seg.end)
            except TargetMemoryError:
                pass

    def _walk_list(self, fl: FreeList, first: int, end: int, protect: bool = False,
                   ptr_bias: int = 0, index_of=None, exact: int = 0) -> None:
        """Follow the links of one free list from chunk ``first`` until ``end``
        (:meth:`_list_steps`, each block it needs read when it asks)."""
        self._walk_lists([self._list_steps(fl, first, end, protect, ptr_bias, index_of,
                                           exact)])

    def _walk_lists(self, steps: list[Generator[int, Any, None]]) -> None:
        """Run several list walks together: each asks for the block holding an
        address; the window needed by most of them is read next and every walk that
        waits for it goes on.  Lists swept in the same order (a heap's fastbins)
        thus read each window of a huge heap once, not once per list."""
        waiting: dict[Any, int] = {}
        for g in steps:
            try:
                waiting[g] = next(g)
            except StopIteration:
                pass
        need = 3 * self.sz
        while waiting:
            if len(waiting) == 1:
                g, p = next(iter(waiting.items()))
            else:
                counts: dict[int, int] = {}
                for a in waiting.values():
                    counts[a >> 22] = counts.get(a >> 22, 0) + 1
                best = max(counts, key=counts.__getitem__)
                g, p = next((g, a) for g, a in waiting.items() if a >> 22 == best)
            blk = self.block_at(p, need)
            for g2, a in list(waiting.items()):
                if g2 is not g and (blk is None or not (blk[0] <= a and a + need <= blk[1])):
                    continue
                try:
                    waiting[g2] = g2.send(blk if g2 is g or blk is not None else None)
                except StopIteration:
                    del waiting[g2]

    def _list_steps(self, fl: FreeList, first: int, end: int, protect: bool = False,
                    ptr_bias: int = 0, index_of=None,
                    exact: int = 0) -> Generator[int, Any, None]:
        """:meth:`_steps`, the list's entries (and sizes) gathered in spill arrays: a
        list longer than :data:`~multiheap.spill.BLOCK` keeps them in the spill file,
        a shorter one ends with plain arrays."""
        fl.chunks = SpillArray(self.spill)
        if not isinstance(fl.sizes, SameSize):
            fl.sizes = SpillArray(self.spill)
        try:
            yield from self._steps(fl, first, end, protect, ptr_bias, index_of, exact)
        finally:
            fl.chunks = fl.chunks.compact()
            if isinstance(fl.sizes, SpillArray):
                fl.sizes = fl.sizes.compact()

    def _steps(self, fl: FreeList, first: int, end: int, protect: bool,
               ptr_bias: int, index_of, exact: int) -> Generator[int, Any, None]:
        """Follow the links of one free list from chunk ``first`` until ``end``;
        yields an address whose block it needs (and is sent that block, or None).

        The link is the word at chunk + 2*SIZE_SZ; ``protect`` undoes safe-linking;
        ``ptr_bias`` is subtracted from stored pointers (tcache links user pointers).
        ``index_of(size)`` must give ``fl.index`` for every chunk (a bin check); lists
        of one size (fastbins, tcache bins) pass that size as ``exact`` instead.

        This is ptstats' hot loop on heaps with many free chunks: cycles are found
        with Brent's method (one comparison per step, no set of visited chunks).
        """
        self.preload()
        sz = self.sz
        link = 2 * sz
        mask = self.p.align_mask
        unpack = self.two.unpack_from
        chunks = fl.chunks
        tail = chunks.tail  # the in-memory part, appended to in place
        chunk, size_of = tail.append, fl.sizes.append
        want = fl.index
        blk = self.mem.block(first)
        lo, hi, buf = blk if blk is not None else (0, 0, b"")
        p = first
        tortoise, power, left = -1, 1, 1
        while p != end:
            if exact and not ptr_bias and left > 1:
                p, n = self._plain_steps(tail, buf, lo, hi, p, end, tortoise,
                                         min(left - 1, BLOCK), exact, protect)
                chunks.settle()
                if n:
                    if isinstance(fl.sizes, SameSize):
                        fl.sizes.n += n
                    else:
                        fl.sizes.extend(itertools.repeat(exact, n))
                    left -= n
                    continue
            if p == tortoise:
                self._cut_cycle(fl, p)
                return
            if (p + link) & mask:
                fl.stop = Stop(p, "misaligned chunk address (corrupted link?)")
                return
            if not (lo <= p and p + link + sz <= hi):
                blk = self.mem.block(p)
                if blk is None or p + link + sz > blk[1]:
                    blk = yield p
                if blk is None:
                    fl.stop = Stop(p, "unreadable chunk")
                    return
                lo, hi, buf = blk
            sf, nxt = unpack(buf, p - lo + sz)  # the size word, then fd (the link)
            size = sf & ~SIZE_BITS
            if (size != exact) if exact else (index_of is not None and index_of(size) != want):
                fl.stop = Stop(p, f"chunk size {size:#x} does not belong in {fl.kind} "
                                  f"bin {want}" + (f" (size {exact:#x})" if exact else ""))
                return
            chunk(p)
            if len(tail) >= BLOCK:
                chunks.settle()
            size_of(size)
            left -= 1
            if not left:
                if len(chunks) >= MAX_LIST:
                    fl.stop = Stop(p, f"more than {MAX_LIST} chunks: runaway list")
                    return
                tortoise, power = p, power * 2
                left = power
            if protect:
                nxt ^= (p + link) >> 12
            if ptr_bias:
                nxt = nxt - ptr_bias if nxt else end
            p = nxt

    @staticmethod
    def _sizes(exact: int) -> Union[array, SameSize]:
        """Where a list's chunk sizes go: a count when they all have one size."""
        return SameSize(exact) if exact else array("Q")

    def _plain_steps(self, chunks: array, buf: Any, lo: int, hi: int, p: int, end: int,
                     tortoise: int, most: int, exact: int,
                     protect: bool) -> tuple[int, int]:
        """Up to ``most`` steps of a list of one size that :meth:`_list_steps` would
        take the same way (aligned, in the block, the right size, no cycle met):
        chunks appended; returns where it stopped and how many it took.  Anything
        else is left to :meth:`_list_steps`, which checks that step again."""
        sz = self.sz
        link, mask, unpack, add = 2 * sz, self.p.align_mask, self.two.unpack_from, chunks.append
        lim = hi - lo - link - sz  # the last offset whose link word is in the block
        keep = ~SIZE_BITS
        n0 = len(chunks)
        if self.native and not lo % sz and end < lo:  # the words themselves, in place
            words = memoryview(buf)[:len(buf) - len(buf) % sz].cast("Q" if sz == 8 else "I")
            shift = sz.bit_length() - 1
            # the hot loop of a first answer on a heap with many chunks in fastbins, at
            # its plainest: a link is followed while it stays at or above the window's
            # start (the list's end, 0, is below it) and the size word is right; one
            # past the window's end raises IndexError.  Alignment and the cycle check
            # are done after, on what it took, at C speed (:meth:`_first_bad`).
            # Without safe-linking the key shifts to 0 (addresses are below 2**64).
            key = 12 if protect else 64
            try:
                for _ in range(most):
                    if p < lo:
                        break
                    w = (p - lo) >> shift
                    if words[w + 1] & keep != exact:
                        break
                    add(p)
                    p = words[w + 2] ^ ((p + link) >> key)
            except IndexError:  # p's words are past the window's end
                if len(chunks) > n0 and chunks[-1] == p:
                    chunks.pop()  # its size word was in the window, its link is not
            k = self._first_bad(chunks, n0, tortoise, -link & mask, mask)
            if k is not None:
                p = chunks[k]
                del chunks[k:]
            return p, len(chunks) - n0
        for _ in range(most):
            o = p - lo
            if p == end or p == tortoise or (p + link) & mask or o < 0 or o > lim:
                break
            sf, nxt = unpack(buf, o + sz)
            if sf & keep != exact:
                break
            add(p)
            p = nxt ^ ((p + link) >> 12) if protect else nxt
        return p, len(chunks) - n0

    @staticmethod
    def _first_bad(chunks: array, n0: int, tortoise: int, rem: int,
                   mask: int) -> Optional[int]:
        """The index of the first entry from ``n0`` that the step-by-step walk would
        not have taken: misaligned (its low bits, ``& mask``, are not ``rem``) or the
        cycle check's ``tortoise``; None when there is none.  C speed: the entries'
        low bytes are mapped to 0 (aligned) or 1 and searched."""
        if len(chunks) <= n0:
            return None
        table = _ALIGNED.get((mask, rem))
        if table is None:
            table = _ALIGNED[mask, rem] = bytes(0 if v & mask == rem else 1 for v in range(256))
        k = chunks[n0:].tobytes()[_LOW::chunks.itemsize].translate(table).find(1)
        bad = None if k < 0 else n0 + k
        try:
            t = chunks.index(tortoise, n0, bad if bad is not None else len(chunks))
        except ValueError:
            return bad
        return t

    def block_at(self, p: int, need: int, size: int = 0) -> Optional[tuple[int, int, bytes]]:
        """The cached block holding ``need`` bytes at ``p`` (read if missing: the
        window of the heap holding it, :data:`~multiheap.memory.WINDOW` or ``size``
        bytes, else its pages), or None when unreadable."""
        blk = self.mem.block(p)
        if blk is None or p + need > blk[1]:
            found = self.model.segment_of(p)
            if found is not None:
                return self.mem.window(p, need, found[1].start, found[1].end, size)
            try:
                self.mem.read(p, need)
            except TargetMemoryError:
                return None
            blk = self.mem.block(p)
        return blk

    @staticmethod
    def _cut_cycle(fl: FreeList, again: int) -> None:
        """A cycle was found late (Brent): keep the chunks up to the first one the list
        reaches twice, and stop there, as a step-by-step check would have."""
        seen: set[int] = set()
        for i, c in enumerate(fl.chunks):
            if c in seen:
                del fl.chunks[i:], fl.sizes[i:]
                again = c
                break
            seen.add(c)
        fl.stop = Stop(again, "cycle: this chunk is already in the list")

    def bin_address(self, arena: Arena, i: int) -> int:
        """bin_at(arena, i): the fake chunk whose fd/bk are bins[2(i-1)], bins[2i-1]."""
        return arena.addr + self.L_state.offset("bins") + (i - 1) * 2 * self.sz - 2 * self.sz

    def bin_list(self, arena: Arena, i: int) -> FreeList:
        """Bin ``i`` (1 = unsorted) of an arena, walked along fd (cached)."""
        return self._bin_lists(arena, [i])[0]

    def _bin_lists(self, arena: Arena, which: list[int]) -> list[FreeList]:
        """Bins ``which`` of an arena, the ones not cached yet walked together."""
        steps, new = [], []
        for i in which:
            key = ("bin", arena.addr, i)
            if key in self._lists:
                continue
            kind = "unsorted" if i == 1 else ("small" if i < 64 else "large")
            fl = self._lists[key] = FreeList(kind, i)
            first = arena.f["bins"][2 * (i - 1)]
            b = self.bin_address(arena, i)
            if first not in (b, 0):  # 0: malloc_init_state has not run yet
                steps.append(self._list_steps(
                    fl, first, b, index_of=None if i == 1 else self.p.bin_index))
                new.append(fl)
        self._walk_lists(steps)
        for fl in new:
            if fl.index == 1 and fl.stop is None:
                tiny = [a for a, s in zip(fl.chunks, fl.sizes) if s < self.p.minsize]
                if tiny:
                    fl.stop = Stop(tiny[0], "impossible chunk size in the unsorted bin")
        return [self._lists[("bin", arena.addr, i)] for i in which]

    def bins(self, arena: Arena) -> list[FreeList]:
        """Bins 1 (unsorted) to 127."""
        if arena.addr not in self._bins:
            self._bins[arena.addr] = self._bin_lists(arena, list(range(1, 128)))
        return self._bins[arena.addr]

    def fastbin_list(self, arena: Arena, i: int) -> FreeList:
        """Fastbin ``i`` of an arena (cached)."""
        return self._fastbin_lists(arena, [i])[0]

    def _fastbin_lists(self, arena: Arena, which: list[int]) -> list[FreeList]:
        """Fastbins ``which`` of an arena, the ones not cached yet walked together."""
        steps = []
        for i in which:
            key = ("fast", arena.addr, i)
            if key in self._lists:
                continue
            fl = self._lists[key] = FreeList("fast", i, sizes=self._sizes(self.p.fastbin_size(i)))
            head = arena.f["fastbinsY"][i]
            if head:
                steps.append(self._list_steps(fl, head, 0, self.p.safe_linking,
                                              exact=self.p.fastbin_size(i)))
        self._walk_lists(steps)
        return [self._lists[("fast", arena.addr, i)] for i in which]

    def fastbins(self, arena: Arena) -> list[FreeList]:
        if not self.p.has_fastbins:
            return []
        if arena.addr not in self._fast:
            self._fast[arena.addr] = self._fastbin_lists(
                arena, list(range(len(arena.f["fastbinsY"]))))
        return self._fast[arena.addr]

    # tcache --------------------------------------------------------------------
    def tcache_heads(self) -> list[Tcache]:
        """Each thread's tcache pointer, lists not walked yet (cached)."""
        if self._tc_heads is None:
            self._tc_heads = []
            if self.L_tcache is not None:  # found by discovery, before this Heap
                for tf in self.threads:
                    self._tc_heads.append(Tcache(tf.thread, tf.tcache.value, tf.tcache.how))
        return self._tc_heads

    def tcaches(self) -> list[Tcache]:
        """Each thread's tcache with every bin walked (empty list before glibc 2.26)."""
        if self._tcaches is None:
            for tc in self.tcache_heads():
                if tc.addr and not tc.bins:
                    self._tcache_bins(tc)
            self._tcaches = self.tcache_heads()
        return self._tcaches

    def tcache_missing(self) -> list[tuple[Tcache, str]]:
        """Threads whose tcache could not be read, with why: (tcache, reason).

        Its free chunks are then counted as in use (no list names them); every command
        whose answer depends on it says so in a note (:meth:`tcache_notes`).  A NULL
        pointer is not missing: that thread has no tcache yet.
        """
        if self.L_tcache is None:
            return []
        out = []
        for tc in self.tcache_heads():
            if tc.addr is None:
                out.append((tc, tc.how))
            elif tc.addr and self._tcache_fields(tc) is None:
                out.append((tc, f"its struct at {tc.addr:#x} is unreadable "
                                f"({tc.how.removesuffix('; struct unreadable')})"))
        return out

    def tcache_notes(self) -> list[tuple[str, dict]]:
        """(message, JSON fields) for each thread whose tcache is missing."""
        out = []
        for tc, why in self.tcache_missing():
            t = tc.thread
            why = why.removeprefix("not found ").removeprefix("(").removesuffix(")") \
                if why.startswith("not found (") else why
            out.append((f"thread {t.num} (tid {t.tid}): tcache not found: {why}; the "
                        "chunks in it are counted as in use",
                        {"thread": t.num, "tid": t.tid, "tcache": "not found"}))
        return out

    def _tcache_fields(self, tc: Tcache) -> Optional[dict]:
        assert self.L_tcache is not None and tc.addr is not None
        if tc.addr not in self._tc_struct:
            try:
                lay = self.L_tcache
                self._tc_struct[tc.addr] = lay.parse(self.mem.read(tc.addr, lay.size))
            except TargetMemoryError:
                self._tc_struct[tc.addr] = None
                tc.how += "; struct unreadable"
        return self._tc_struct[tc.addr]

    def tcache_list(self, tc: Tcache, i: int) -> FreeList:
        """Bin ``i`` of one thread's tcache (cached)."""
        key = ("tcache", tc.addr or 0, i)
        fl = self._lists.get(key)
        if fl is None:
            f = self._tcache_fields(tc)
            p = self.p
            exact = (p.tcache_size(i) or 0) if i < p.tcache_small_bins else 0
            fl = FreeList("tcache", i, count_field=f[p.counts_field][i] if f else None,
                          sizes=self._sizes(exact))
            head = f["entries"][i] if f else 0
            if head:
                self._walk_list(fl, head - 2 * self.sz, -1, p.safe_linking,
                                ptr_bias=2 * self.sz, exact=exact)
            self._lists[key] = fl
        return fl

    def _tcache_bins(self, tc: Tcache) -> None:
        f = self._tcache_fields(tc)
        if f is not None:
            tc.bins = [self.tcache_list(tc, i) for i in range(len(f["entries"]))]

    def _listed(self, fl: FreeList, addr: int) -> bool:
        if len(fl.chunks) > 4096:  # a long list is not copied into a set
            return addr in fl.chunks
        members = self._members.get(id(fl))
        if members is None:
            members = self._members[id(fl)] = set(fl.chunks)
        return addr in members

    def _listed_state(self, c: Chunk) -> Optional[str]:
        """Which free list holds chunk ``c``, looking only where its size can be."""
        p, size = self.p, c.size
        if size < p.minsize or size & p.align_mask:
            return None
        if self.L_tcache is not None:
            i = p.tcache_index(size)
            idx = [i] if i < p.tcache_small_bins else \
                list(range(p.tcache_small_bins, p.tcache_max_bins))
            for tc in self.tcache_heads():
                f = self._tcache_fields(tc) if tc.addr else None
                for j in idx:
                    if f is not None and j < len(f["entries"]) \
                            and self._listed(self.tcache_list(tc, j), c.addr):
                        return "tcache"
        arena = self.model.arena_of(c.addr)
        if arena is None:
            return None
        if p.has_fastbins:
            i = p.fastbin_index(size)
            if 0 <= i < len(arena.f["fastbinsY"]) \
                    and self._listed(self.fastbin_list(arena, i), c.addr):
                return "fast"
        for i in (1, p.bin_index(size)):
            if 1 <= i < 128 and self._listed(self.bin_list(arena, i), c.addr):
                return "free"
        return None

    # classification ------------------------------------------------------------
    def free_index(self) -> Listed:
        """Chunk address -> "tcache" / "fast" / "free" for every listed free chunk."""
        if self._free_index is not None:
            return self._free_index
        lists: list[tuple[str, Sequence[int], int]] = []
        for state, fls in self._all_lists():
            lists += [(state, fl.chunks, fl.sizes.size if isinstance(fl.sizes, SameSize)
                       else 0) for fl in fls if fl.chunks]
        self._free_index = Listed(lists, self.spill)
        return self._free_index

    def _all_lists(self) -> Iterator[tuple[str, list[FreeList]]]:
        for a in self.model.arenas():
            yield "free", self.bins(a)
            yield "fast", self.fastbins(a)
        for tc in self.tcaches():
            yield "tcache", tc.bins

    def chunk_state(self, c: Chunk) -> str:
        if c.flags & IS_MMAPPED:  # 2.43's tcache may hold it
            tcached = self.p.tcache_takes_mmapped and self._listed_state(c) == "tcache"
            return "tcache" if tcached else "mmapped"
        for a in self.model.arenas():
            if c.addr == a.top:
                return "top"
        if self._free_index is not None:
            st = self._free_index.get(c.addr)
        else:  # one chunk: only the lists its size can be in
            st = self._listed_state(c)
        if st:
            return st
        try:
            nxt = self.mem.ptr(c.addr + c.size + self.sz)
        except TargetMemoryError:
            return "inuse"
        # marked free by its successor but in no list: an orphan (free = in a bin)
        return "inuse" if nxt & PREV_INUSE else "orphan"
