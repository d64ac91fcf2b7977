"""Walking chunks in address order: ptlist's walk, ptstats' census, mmapped chunks.

A mixin of :class:`multiheap.heap.Heap`; every walk is bounded and records a
:class:`~multiheap.heaptypes.Stop` where it cannot go on.
"""

from __future__ import annotations

import bisect
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from multiheap.errors import TargetMemoryError
from multiheap.heaptypes import IS_MMAPPED, PREV_INUSE, SIZE_BITS, Arena, HeapSegment, Stop

# Chunk states as ptlist, ptchunk, ptstats, ptmap and ptvis name them (besides top and
# mmapped): in use; in a bin (free), a fastbin, a tcache; marked free by the next
# chunk's PREV_INUSE but in no list (orphan).
STATES = ("inuse", "free", "fast", "tcache", "orphan")


@dataclass
class ChunkIndex:
    """Every chunk start of one heap segment, as word indexes into ``words`` (the
    segment's bytes as native words, from address ``base``), in address order."""

    base: int
    sz: int
    starts: array  # word index of each chunk, top last when reached
    marked: array  # the chunks whose successor's PREV_INUSE is clear
    runs: list[tuple[int, int]]  # [lo, hi) word spans between fenceposts (top excluded)
    top_at: Optional[int]  # word index of top, if the walk reached it
    stop: Optional[Stop]  # where and why the walk stopped early
    before: Optional[int]  # the last good chunk before ``stop``
    words: Any

    def count(self) -> int:
        """Chunks, top excluded."""
        return len(self.starts) - (1 if self.top_at is not None else 0)

    def addr(self, i: int) -> int:
        return self.base + self.starts[i] * self.sz

    def holding(self, addr: int) -> Optional[int]:
        """The start of the chunk whose bytes include ``addr`` (top: its header and
        its span), or None (before the first chunk, in a fencepost, past the walk)."""
        w = (addr - self.base) // self.sz
        i = bisect.bisect_right(self.starts, w) - 1
        if i < 0:
            return None
        c = self.starts[i]
        size = self.words[c + 1] & ~SIZE_BITS
        return self.addr(i) if w < c + max(size // self.sz, 2) else None


class ChunkWalks:
    """Heap methods that walk chunks by their size fields."""

    # the chunk index: every chunk start of a segment, once per stop ---------------
    def chunk_index(self, arena: Arena, seg: HeapSegment) -> ChunkIndex:
        """Every chunk start of ``seg`` in address order, walked once per stop (cached).

        The one chunk walk by size fields behind ptlist, ptstats' census, ptchunk -c,
        ptcheck and ptfind.  In the main heap a fencepost (glibc's, where a foreign
        ``sbrk`` took the memory after a region) ends a run and the walk goes on at
        malloc's next region, the first aligned place whose sizes lead exactly to top.
        """
        cache = self.__dict__.setdefault("_chunk_index", {})
        key = (arena.addr, seg.start)
        found = cache.get(key)
        if found is None:
            found = cache[key] = self._build_index(arena, seg)
        return found

    def _build_index(self, arena: Arena, seg: HeapSegment) -> ChunkIndex:
        sz = self.sz
        kind = "Q" if sz == 8 else "I"
        try:
            buf, base = self.mem.load(seg.start, seg.end)
        except TargetMemoryError:
            return ChunkIndex(seg.start, sz, array(kind), array(kind), [], None,
                              Stop(seg.start, "heap memory is unreadable"), None, ())
        if (seg.start - base) % sz:
            return ChunkIndex(base, sz, array(kind), array(kind), [], None,
                              Stop(seg.start, "heap not word-aligned in memory"), None, ())
        if self.cfg.endian == sys.byteorder:
            words: Any = memoryview(buf)[:len(buf) - len(buf) % sz].cast(kind)
        else:
            words = array(kind, buf[:len(buf) - len(buf) % sz])
            words.byteswap()
        nw = len(words)
        shift = 3 if sz == 8 else 2
        low = ~(SIZE_BITS >> shift)
        minw, bad = self.p.minsize >> shift, self.p.align_mask & ~SIZE_BITS
        w = (seg.start - base) // sz
        end_w = min((seg.end - base) // sz, nw)
        top_w = (arena.top - base) // sz \
            if seg.start <= arena.top < seg.end and not (arena.top - base) % sz else -1
        starts, marks = array(kind), array(kind)
        push, mark = starts.append, marks.append
        runs: list[tuple[int, int]] = []
        run_lo, first = w, 0
        stop: Optional[Stop] = None
        before: Optional[int] = None
        top_at: Optional[int] = None
        marked = array(kind)
        while True:
            if w <= top_w and top_w + 2 <= end_w:
                limit = reach = top_w
            else:
                limit, reach = end_w - 1, end_w
            # the hot loop: one index, a shift, three compares per chunk; a chunk whose
            # successor's PREV_INUSE is clear is noted by its place in ``starts``
            while w < limit:
                sf = words[w + 1]
                step = (sf >> shift) & low
                if step < minw or sf & bad or w + step > reach:
                    break
                if not sf & PREV_INUSE:
                    mark(len(starts) - 1)
                push(w)
                w += step
            marked.extend([starts[k] for k in marks if k >= first])
            del marks[:]
            runs.append((run_lo, w))
            if w + 2 > end_w:
                if base + w * sz < seg.end and w < top_w:
                    stop = Stop(base + w * sz, "chunk header is unreadable")
                break
            sf = words[w + 1]
            prev = starts[-1] if len(starts) > first else -1
            if not sf & PREV_INUSE and prev >= 0:
                marked.append(prev)  # before top, or a fencepost after a freed old top
            if w == top_w:
                push(w)
                top_at = w
                size = sf & ~SIZE_BITS
                if base + w * sz + size != seg.end:
                    stop = Stop(base + w * sz, f"top size {size:#x} does not end at the "
                                               f"heap end {seg.end:#x}")
                break
            size = sf & ~SIZE_BITS
            if size in (0, 2 * sz):  # a fencepost: the end of a region
                nxt = self._after_fencepost(arena, words, w, top_w)
                if nxt is None:
                    break  # the end of a heap (or of the main heap's last region)
                w = run_lo = nxt
                first = len(starts)
                continue
            before = base + prev * sz if prev >= 0 else None
            if (sf >> shift) & low < minw or sf & bad:
                stop = Stop(base + w * sz, f"impossible chunk size {sf:#x}")
            elif w + ((sf >> shift) & low) > top_w >= 0 and w < top_w:
                stop = Stop(base + w * sz, f"size {size:#x} runs into the top chunk "
                                           f"{base + top_w * sz:#x}")
            else:
                stop = Stop(base + w * sz, f"size {size:#x} runs past the heap end "
                                           f"{seg.end:#x}")
            break
        return ChunkIndex(base, sz, starts, marked, runs, top_at, stop, before, words)

    def _after_fencepost(self, arena: Arena, words: Any, w: int,
                         top_w: int) -> Optional[int]:
        """At glibc's fencepost (a foreign ``sbrk`` took the memory after a main-heap
        region), the word index where malloc's next region starts: the first aligned
        place after it whose chunk sizes lead exactly to top.  None if there is none."""
        if not arena.is_main or top_w < 0 or w >= top_w:
            return None
        sz, minsize, mask = self.sz, self.p.minsize, self.p.align_mask
        shift = 3 if sz == 8 else 2
        align_w = self.p.malloc_alignment // sz
        reach: dict[int, bool] = {}
        c = w + 2
        while c < top_w:
            if (c + 2) % align_w == 0 and words[c + 1] & PREV_INUSE:
                path = []
                x, ok = c, False
                while True:
                    if x == top_w:
                        ok = True
                        break
                    if x in reach:
                        ok = reach[x]
                        break
                    if x > top_w:
                        break
                    size = words[x + 1] & ~SIZE_BITS
                    if size < minsize or size & mask:
                        break
                    path.append(x)
                    x += size >> shift
                for y in path:
                    reach[y] = ok
                if ok:
                    return c
            c += 1
        return None

    def next_run(self, addr: int) -> Optional[int]:
        """Where the walk goes on when ``addr`` is a fencepost ending a main-heap run
        (the next run's first chunk), else None."""
        found = self.segment_of(addr)
        if found is None:
            return None
        ix = self.chunk_index(*found)
        w = (addr - ix.base) // self.sz
        for (_lo, hi), (nlo, _nhi) in zip(ix.runs, ix.runs[1:]):
            if hi == w:
                return ix.base + nlo * self.sz
        return None

    # walking chunks ------------------------------------------------------------
    def walk(self, arena: Arena, seg: HeapSegment, stops: list[Stop],
             limit: Optional[int] = None, classify: bool = True,
             flag_names: Optional[Sequence[Any]] = None) -> Iterator[tuple[int, int, Any, str]]:
        """Yield (addr, size, flags, state) for each chunk of a segment, in order.

        The chunks are those of :meth:`chunk_index` (past fenceposts, up to top or to
        where a size is impossible, recorded in ``stops``).  ``limit`` caps the number
        of chunks; ``flag_names`` maps the 3 flag bits to what the caller shows instead
        of the number.  A chunk's state comes from the free lists (``free`` means in a
        bin), else from its successor's PREV_INUSE bit: ``inuse``, or ``orphan`` (marked
        free, in no list; ``free`` without ``classify``).
        """
        special = self.free_index() if classify else {}
        unlisted = "orphan" if classify else "free"
        ix = self.chunk_index(arena, seg)
        words, base, sz, starts = ix.words, ix.base, self.sz, ix.starts
        nwords = len(words)
        n = len(starts) if ix.top_at is None else len(starts) - 1
        if limit is not None:
            n = min(n, max(limit, 0))
        fl = flag_names if flag_names is not None else range(8)
        get = special.get
        batch = 65536
        for lo in range(0, n, batch):
            part = starts[lo:min(n, lo + batch)]
            out = []
            for w in part:
                sf = words[w + 1]
                size = sf & ~SIZE_BITS
                a = base + w * sz
                nx = w + (size // sz) + 1
                ns = words[nx] if nx < nwords else PREV_INUSE
                out.append((a, size, fl[sf & SIZE_BITS],
                            get(a) or ("inuse" if ns & PREV_INUSE else unlisted)))
            yield from out
        if ix.top_at is not None and (limit is None or limit > n):
            sf = words[ix.top_at + 1]
            yield base + ix.top_at * sz, sf & ~SIZE_BITS, fl[sf & SIZE_BITS], "top"
        if ix.stop is not None and (limit is None or limit > n):
            stops.append(ix.stop)

    def census(self, arena: Arena, stops: list[Stop]) -> dict[str, list[int]]:
        """{state: [count, bytes]} for the arena's chunks (top excluded): exactly the
        states :meth:`walk` gives, without classifying chunk by chunk.

        A chunk is in use unless a free list holds it (``free``: a bin, ``fast``,
        ``tcache``) or, in no list, its successor's PREV_INUSE is clear (``orphan``).
        Only the listed chunks that are chunk starts and the chunks marked free are
        looked at one by one; in-use figures are the walk's totals less those.
        """
        out = {k: [0, 0] for k in STATES if k != "inuse"}
        index = self.free_index()
        lists = [("free", fl) for fl in self.bins(arena)] + \
            [("fast", fl) for fl in self.fastbins(arena)] + \
            [("tcache", fl) for tc in self.tcaches() for fl in tc.bins]
        lists = [(st, fl) for st, fl in lists if fl.chunks]
        once = sum(len(fl.chunks) for _st, fl in lists) == len(index)  # no chunk twice
        sz = self.sz
        n_all = b_all = 0
        for seg in arena.heaps:
            ix = self.chunk_index(arena, seg)
            if ix.stop is not None:
                stops.append(ix.stop)
            words, base = ix.words, ix.base
            n = ix.count()
            n_all += n
            b_all += sum(hi - lo for lo, hi in ix.runs) * sz
            if not n:
                continue
            shift, low = sz.bit_length() - 1, sz - 1
            if once:
                groups = [(st, fl.chunks, fl.sizes) for st, fl in lists]
            else:  # a chunk in two lists has the one state free_index gives it
                by: dict[str, list[int]] = {}
                for a, st in index.items():
                    by.setdefault(st, []).append(a)
                groups = [(st, chunks, None) for st, chunks in by.items()]
            mark = bytearray(len(words) + 1)  # 1 at each chunk start (top: 0)
            if groups:
                for w in ix.starts:
                    mark[w] = 1
                if ix.top_at is not None:
                    mark[ix.top_at] = 0
            nm = len(mark)
            for st, chunks, sizes in groups:
                # a listed address that is no chunk start (before, after or between the
                # starts, or misaligned) lies inside another chunk, which keeps its state
                real = [w for a in chunks if not (a - base) & low
                        and 0 <= (w := (a - base) >> shift) < nm and mark[w]]
                out[st][0] += len(real)
                if sizes is not None and len(real) == len(chunks):
                    out[st][1] += sum(sizes)
                else:
                    out[st][1] += sum([words[w + 1] & ~SIZE_BITS for w in real])
            # a marked chunk is a chunk start: it is an orphan unless a list holds it
            orphans = [w for w in ix.marked if base + w * sz not in index]
            out["orphan"][0] += len(orphans)
            out["orphan"][1] += sum([words[w + 1] & ~SIZE_BITS for w in orphans])
        result = {"inuse": [n_all - sum(v[0] for v in out.values()),
                            b_all - sum(v[1] for v in out.values())]}
        result.update(out)
        return result

    # mmapped chunks --------------------------------------------------------------
    def _mmapped_at(self, base: int, end: int) -> Optional[tuple[int, int, int]]:
        """The mmapped chunk of the mapping starting at page ``base``, if any.

        sysmalloc puts the chunk ``k`` bytes in when the mapping's start would misalign
        the user pointer (i386's 16-byte alignment: k = 8) and stores k in prev_size.
        memalign moves the chunk further in, to an aligned user pointer, and adds that
        lead to prev_size: glibc's own check (munmap_chunk) is that chunk - prev_size
        is the page-aligned mapping start and prev_size + size its page-multiple length.
        """
        for k in range(0, self.p.malloc_alignment, self.sz):
            found = self._mmapped_header(base + k, base, end)
            if found is None:
                continue
            addr, size, prev = found
            total = prev + size
            align = 2 * self.p.malloc_alignment  # memalign: a lead to an aligned pointer
            while align < total:
                moved = -(-(addr + 2 * self.sz) // align) * align - 2 * self.sz
                if moved > addr:
                    inner = self._mmapped_header(moved, base, end)
                    if inner is not None and inner[1] + inner[2] == total:
                        return inner
                align *= 2
            return found
        return None

    def _mmapped_header(self, addr: int, base: int,
                        end: int) -> Optional[tuple[int, int, int]]:
        """(addr, size, prev_size) if ``addr`` holds the header of the chunk mapped at
        ``base`` (prev_size = addr - base, IS_MMAPPED alone, a page-multiple span)."""
        try:
            prev, sf = self._two.unpack(self.mem.read(addr, 2 * self.sz))
        except TargetMemoryError:
            return None
        size = sf & ~SIZE_BITS
        if (sf & SIZE_BITS) == IS_MMAPPED and size and prev == addr - base \
                and (size + prev) % 0x1000 == 0 and base + prev + size <= end \
                and not (addr + 2 * self.sz) & self.p.align_mask:
            return addr, size, prev
        return None

    def _anon_spans(self) -> list[tuple[int, int]]:
        """Writable memory no file backs, outside the arenas' heaps, as maximal spans.

        Hosts name and split mappings differently (a core's list, r2's ``unkN``, lldb's
        module names, the kernel merging neighbours): adjacent writable regions are
        joined, so no chunk depends on where a host drew a boundary.
        """
        regs = sorted((r for r in self.target.regions()
                       if "w" in r.perms and not r.name.startswith("/")),
                      key=lambda r: r.start)
        spans: list[list[int]] = []
        for r in regs:
            if spans and r.start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], r.end)
            else:
                spans.append([r.start, r.end])
        heaps = sorted((s.info or s.start, s.end) for a in self.arenas() for s in a.heaps)
        out: list[tuple[int, int]] = []
        for lo, hi in spans:
            for h_lo, h_hi in heaps:  # cut the heaps out
                if h_lo < hi and lo < h_hi:
                    if lo < h_lo:
                        out.append((lo, h_lo))
                    lo = max(lo, h_hi)
            if lo < hi:
                out.append((lo, hi))
        return out

    def mmapped_chunks(self) -> list[tuple[int, int, int]]:
        """(addr, size, prev_size) of every mmapped chunk, in address order (cached).

        Each mapping that can hold one (writable, no file, not an arena's heap) is
        tried at its start and followed chunk to chunk (the kernel merges adjacent
        mappings).  If that finds fewer chunks than ``mp_.n_mmaps``, every page of
        those spans is tried: a chunk's mapping can also follow other anonymous memory.
        """
        cached = self.__dict__.get("_mmapped")
        if cached is not None:
            return cached
        spans = self._anon_spans()
        region_starts = sorted({r.start for r in self.target.regions()} |
                               {lo for lo, _hi in spans})
        found: dict[int, tuple[int, int, int]] = {}

        def follow(base: int, end: int) -> None:
            while base + 2 * self.sz <= end and base not in found:
                hit = self._mmapped_at(base, end)
                if hit is None:
                    return
                found[base] = hit
                base += hit[1] + hit[2]

        for lo, hi in spans:
            for start in region_starts:
                if lo <= start < hi:
                    follow(start, hi)
        want = self.mp["n_mmaps"]
        if len(found) < want:
            for lo, hi in spans:
                for base in self._page_candidates(lo, hi, found):
                    follow(base, hi)
        out = sorted(found.values())
        self.__dict__["_mmapped"] = out
        return out

    def _page_candidates(self, lo: int, hi: int,
                         found: dict[int, tuple[int, int, int]]) -> Iterator[int]:
        """Page starts in [lo, hi) outside the chunks found so far whose first words
        could begin a mmapped chunk (read in 1 MiB pieces, not kept in the cache)."""
        page, piece, sz = 0x1000, 1 << 20, self.sz
        a = (lo + page - 1) & ~(page - 1)
        while a < hi:
            n = min(piece, hi - a)
            try:
                buf = self.target.read(a, n)
            except TargetMemoryError:
                a += n
                continue
            for off in range(0, n - 2 * sz + 1, page):
                base = a + off
                if any(b <= base < b + h[1] + h[2] for b, h in found.items()):
                    continue
                for k in range(0, self.p.malloc_alignment, sz):
                    prev, sf = self._two.unpack_from(buf, off + k) if off + k + 2 * sz <= n \
                        else (None, 0)
                    if prev == k and (sf & SIZE_BITS) == IS_MMAPPED:
                        yield base
                        break
            a += n

    def mmapped_note(self) -> Optional[str]:
        """Why the mmapped chunks found differ from mp_'s count and bytes, or None."""
        chunks = self.mmapped_chunks()
        n, total = len(chunks), sum(s + p for _a, s, p in chunks)
        want_n, want_b = self.mp["n_mmaps"], self.mp["mmapped_mem"]
        if (n, total) == (want_n, want_b):
            return None
        return (f"found {n} mmapped chunks ({total:#x} bytes) but mp_ counts {want_n} "
                f"({want_b:#x} bytes): a chunk's header may be damaged or its memory "
                "missing (a core without it), or mp_ is stale")

