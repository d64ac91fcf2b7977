"""Walking chunks in address order: ptlist's walk, ptstats' census, mmapped chunks.

A mixin of :class:`multiheap.heap.Heap`; every walk is bounded and records a
:class:`~multiheap.heaptypes.Stop` where it cannot go on.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any, Optional

from multiheap.errors import TargetMemoryError
from multiheap.heaptypes import IS_MMAPPED, PREV_INUSE, SIZE_BITS, Arena, HeapSegment, Stop


class ChunkWalks:
    """Heap methods that walk chunks by their size fields."""

    # walking chunks ------------------------------------------------------------
    def walk(self, arena: Arena, seg: HeapSegment, stops: list[Stop],
             limit: Optional[int] = None, classify: bool = True,
             flag_names: Optional[Sequence[Any]] = None) -> Iterator[tuple[int, int, Any, str]]:
        """Yield (addr, size, flags, state) for each chunk of a segment, in order.

        The walk ends at the top chunk, at a fencepost, or where a size is impossible
        (recorded in ``stops``).  ``limit`` caps the number of chunks; ``flag_names``
        maps the 3 flag bits to what the caller shows instead of the number.  Chunks are read
        in batches by a tight loop over the segment's bytes; a chunk's state comes from
        the free lists, else from its successor's PREV_INUSE bit.
        """
        special = self.free_index() if classify else {}
        try:
            buf, base = self.mem.load(seg.start, seg.end)
        except TargetMemoryError:
            stops.append(Stop(seg.start, "heap memory is unreadable"))
            return
        end = min(seg.end, base + len(buf)) - base  # offsets from here on
        top = arena.top - base
        unpack = self._word.unpack_from
        sz, minsize, bad = self.sz, self.p.minsize, self.p.align_mask & ~SIZE_BITS
        o = seg.start - base
        left = limit if limit is not None else -1
        batch = 65536
        while left:
            offs: list[int] = []
            sfs: list[int] = []
            stop: Optional[Stop] = None
            at_top = False
            n = batch if left < 0 else min(batch, left)
            while n:
                if o + 2 * sz > end:
                    if o + base < seg.end:
                        stop = Stop(o + base, "chunk header is unreadable")
                    break
                sf = unpack(buf, o + sz)[0]
                if o == top:
                    at_top = True
                    break
                size = sf & ~SIZE_BITS
                if size == 0 and o + base >= seg.start + minsize:
                    break  # fencepost at the end of an old heap
                if sf & bad or size < minsize:
                    stop = Stop(o + base, f"impossible chunk size {sf:#x}")
                    break
                if o + size > end:
                    stop = Stop(o + base, f"size {size:#x} runs past the heap end {seg.end:#x}")
                    break
                offs.append(o)
                sfs.append(sf)
                o += size
                n -= 1
            # each chunk's state needs the PREV_INUSE bit of the chunk after it
            nxt = sfs[1:]
            nxt.append(unpack(buf, o + sz)[0] if o + 2 * sz <= end else PREV_INUSE)
            get = special.get
            fl = flag_names if flag_names is not None else range(8)
            yield from [(x + base, sf & ~SIZE_BITS, fl[sf & SIZE_BITS],
                         get(x + base) or ("inuse" if ns & PREV_INUSE else "free"))
                        for x, sf, ns in zip(offs, sfs, nxt)]
            if left > 0:
                left -= len(offs)
            if stop is not None:
                stops.append(stop)
                return
            if at_top and left:
                sf = unpack(buf, o + sz)[0]
                size = sf & ~SIZE_BITS
                yield o + base, size, (flag_names or range(8))[sf & SIZE_BITS], "top"
                if o + base + size not in (seg.end, end + base):
                    stops.append(Stop(o + base, f"top size {size:#x} does not end at the "
                                                f"heap end {seg.end:#x}"))
                return
            if n:  # ended early: fencepost, or out of bytes
                return

    def census(self, arena: Arena, stops: list[Stop]) -> dict[str, list[int]]:
        """{state: [count, bytes]} for the arena's chunks (top excluded).

        A bare walk counts every chunk; the free lists say which are free, fast or
        tcache; the rest are in use.  If the walk stops early, or finds free chunks no
        list knows, it falls back to classifying chunk by chunk.
        """
        out = {k: [0, 0] for k in ("inuse", "free", "fast", "tcache")}
        total_n = total_b = unlisted = 0
        own: list[Stop] = []
        for seg in arena.heaps:
            n, b, u = self._bare_walk(arena, seg, own)
            total_n, total_b, unlisted = total_n + n, total_b + b, unlisted + u
        listed_free = sum(len(fl.chunks) for fl in self.bins(arena))
        if own or unlisted != listed_free:
            for seg in arena.heaps:
                for _a, size, _f, st in self.walk(arena, seg, stops):
                    if st != "top":
                        out[st][0] += 1
                        out[st][1] += size
            return out
        # An arena's own bins hold only its chunks; a thread's tcache may hold any
        # arena's, so those are counted by address.
        for st, fls in (("free", self.bins(arena)), ("fast", self.fastbins(arena))):
            for fl in fls:
                out[st][0] += len(fl.sizes)
                out[st][1] += sum(fl.sizes)
        spans = [(s.start, s.end) for s in arena.heaps]
        acc = out["tcache"]
        for tc in self.tcaches():
            for fl in tc.bins:
                for a, size in zip(fl.chunks, fl.sizes):
                    if any(lo <= a < hi for lo, hi in spans):
                        acc[0] += 1
                        acc[1] += size
        out["inuse"] = [total_n - sum(v[0] for v in out.values()),
                        total_b - sum(v[1] for v in out.values())]
        return out

    def _bare_walk(self, arena: Arena, seg: HeapSegment,
                   stops: list[Stop]) -> tuple[int, int, int]:
        """(chunks, bytes, chunks marked free by their successor) up to top.

        The hot loop of ptstats: one read of the segment, then only the size words.
        Anything unusual (no top here, a bad size) falls back to :meth:`walk`, which
        says where and why it stopped.
        """
        top = arena.top
        if seg.start <= top < seg.end:
            try:
                buf, base = self.mem.load(seg.start, seg.end)
            except TargetMemoryError:
                buf, base = b"", seg.start
            o0, o_top = seg.start - base, top - base
            sz = self.sz
            if 0 <= o0 and o_top + 2 * sz <= len(buf) and not o0 % sz \
                    and self.cfg.endian == sys.byteorder:
                found = _count_chunks(buf, o0 // sz, o_top // sz, sz, self.p.minsize,
                                      self.p.align_mask & ~SIZE_BITS)
                if found is not None:
                    n, free = found
                    return n, o_top - o0, free
        n = total = unlisted = 0
        for _a, size, _flags, st in self.walk(arena, seg, stops, classify=False):
            if st == "top":
                break
            n += 1
            total += size
            if st == "free":
                unlisted += 1
        return n, total, unlisted

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


def _count_chunks(buf: bytes, w: int, w_top: int, sz: int, minsize: int,
                  bad: int) -> Optional[tuple[int, int]]:
    """(chunks, chunks whose PREV_INUSE is clear, top included) from word ``w`` to the
    top chunk at word ``w_top``; None unless the sizes lead exactly to top.

    ptstats' hot loop: the buffer seen as native words, one index and three integer
    operations per chunk.  Misaligned or tiny sizes send the caller to the careful walk.
    """
    words = memoryview(buf)[:len(buf) - len(buf) % sz].cast("Q" if sz == 8 else "I")
    shift = 3 if sz == 8 else 2
    low = ~(SIZE_BITS >> shift)  # the flag bits left after the shift
    n = inuse = seen = 0
    while w < w_top:
        sf = words[w + 1]
        if sf < minsize:
            return None
        n += 1
        inuse += sf & PREV_INUSE
        seen |= sf
        w += (sf >> shift) & low
    if w != w_top or seen & bad:
        return None
    inuse += words[w + 1] & PREV_INUSE
    return n, n + 1 - inuse
