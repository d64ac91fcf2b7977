"""Mmapped chunks: malloc's own mappings outside the arenas' heaps, found by their
headers (glibc keeps no list of them, only ``mp_``'s count and bytes).

:class:`MmappedChunks` is held by :class:`multiheap.heap.Heap` (``heap.mmapped``).  The
search is bounded by the writable anonymous memory the target has; a count that differs
from ``mp_``'s is said (:meth:`MmappedChunks.note`), never guessed away.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Callable, Optional

from multiheap.errors import TargetMemoryError
from multiheap.heaptypes import IS_MMAPPED, SIZE_BITS, ArenaView
from multiheap.layouts import Params
from multiheap.memory import Memory
from multiheap.target import Target, word_struct

# the kernel's mappings, never a mmapped chunk's (a thread's stack can be "[stack:TID]")
KERNEL_MAPPINGS = ("[stack", "[vvar", "[vdso", "[vsyscall", "[uprobes")


class MmappedChunks:
    """The mmapped chunks of one target at one stop (searched once, cached)."""

    def __init__(self, mem: Memory, params: Params, endian: str, target: Target,
                 arenas: ArenaView, mp: Callable[[], dict]) -> None:
        self.mem, self.p, self.sz = mem, params, params.ptr_size
        self.two = word_struct(self.sz, endian, 2)
        self.target = target
        self.model = arenas
        self._mp = mp  # malloc_par's fields, read when first needed
        self._found: Optional[list[tuple[int, int, int]]] = None

    def _at(self, base: int, end: int) -> Optional[tuple[int, int, int]]:
        """The mmapped chunk of the mapping starting at page ``base``, if any.

        sysmalloc puts the chunk ``k`` bytes in when the mapping's start would misalign
        the user pointer (i386's 16-byte alignment: k = 8) and stores k in prev_size.
        memalign moves the chunk further in, to an aligned user pointer, and adds that
        lead to prev_size: glibc's own check (munmap_chunk) is that chunk - prev_size
        is the page-aligned mapping start and the length (``Params.mmap_span``: prev_size
        + size, 2.43 adds a header) a page multiple.
        """
        for k in range(0, self.p.malloc_alignment, self.sz):
            found = self._header(base + k, base, end)
            if found is None:
                continue
            addr, size, prev = found
            total = self.p.mmap_span(prev, size)[1]
            align = 2 * self.p.malloc_alignment  # memalign: a lead to an aligned pointer
            while align < total:
                moved = -(-(addr + 2 * self.sz) // align) * align - 2 * self.sz
                if moved > addr:
                    inner = self._header(moved, base, end)
                    if inner is not None and \
                            self.p.mmap_span(inner[2], inner[1])[1] == total:
                        return inner
                align *= 2
            return found
        return None

    def _header(self, addr: int, base: int, end: int) -> Optional[tuple[int, int, int]]:
        """(addr, size, offset) if ``addr`` holds the header of the chunk mapped at
        ``base`` (its offset = addr - base, IS_MMAPPED alone, a page-multiple span)."""
        try:
            prev, sf = self.two.unpack(self.mem.read(addr, 2 * self.sz))
        except TargetMemoryError:
            return None
        size = sf & ~SIZE_BITS
        off, length = self.p.mmap_span(prev, size)
        if (sf & SIZE_BITS) == IS_MMAPPED and size and off == addr - base \
                and length % 0x1000 == 0 and base + length <= end \
                and not (addr + 2 * self.sz) & self.p.align_mask:
            return addr, size, off
        return None

    def anon_spans(self) -> list[tuple[int, int]]:
        """Writable memory no file backs, outside the arenas' heaps, as maximal spans.

        Hosts name and split mappings differently (a core's list, r2's ``unkN``, lldb's
        module names, the kernel merging neighbours): adjacent writable regions are
        joined, so no chunk depends on where a host drew a boundary.  The kernel's
        own mappings (``[stack]``, ``[vvar]``...) are left out: words on a stack can
        look like a chunk header.
        """
        regs = sorted((r for r in self.target.regions()
                       if "w" in r.perms and not r.name.startswith("/")
                       and not r.name.startswith(KERNEL_MAPPINGS)),
                      key=lambda r: r.start)
        spans: list[list[int]] = []
        for r in regs:
            if spans and r.start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], r.end)
            else:
                spans.append([r.start, r.end])
        heaps = sorted((s.info or s.start, s.end) for a in self.model.arenas() for s in a.heaps)
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

    def chunks(self) -> list[tuple[int, int, int]]:
        """(addr, size, offset into its mapping) of every mmapped chunk, in address
        order (cached).

        Each mapping that can hold one (writable, no file, not an arena's heap) is
        tried at its start and followed chunk to chunk (the kernel merges adjacent
        mappings).  If that finds fewer chunks than ``mp_.n_mmaps``, every page of
        those spans is tried: a chunk's mapping can also follow other anonymous memory.
        """
        if self._found is not None:
            return self._found
        spans = self.anon_spans()
        region_starts = sorted({r.start for r in self.target.regions()} |
                               {lo for lo, _hi in spans})
        found: dict[int, tuple[int, int, int]] = {}

        def follow(base: int, end: int) -> None:
            while base + 2 * self.sz <= end and base not in found:
                hit = self._at(base, end)
                if hit is None:
                    return
                found[base] = hit
                base += self.p.mmap_span(hit[2], hit[1])[1]

        for lo, hi in spans:
            for start in region_starts:
                if lo <= start < hi:
                    follow(start, hi)
        want = self._mp()["n_mmaps"]
        if len(found) < want:
            for lo, hi in spans:
                for base in self._page_candidates(lo, hi, found):
                    follow(base, hi)
        out = sorted(found.values())
        self._found = out
        return out

    def starts_at(self, addr: int) -> bool:
        """Whether a mmapped chunk begins at ``addr``."""
        chunks = self.chunks()
        i = bisect.bisect_left(chunks, (addr,))
        return i < len(chunks) and chunks[i][0] == addr

    def headers(self, lo: int, hi: int) -> Iterator[tuple[int, int, int]]:
        """(addr, size, offset) at each page start + k in [lo, hi) (k below the malloc
        alignment) whose words read as a mmapped chunk's header: IS_MMAPPED alone in
        the flags, an offset of k.  Read in 1 MiB pieces (a piece's readable prefix),
        not kept in the cache."""
        page, piece, sz = 0x1000, 1 << 20, self.sz
        a = (lo + page - 1) & ~(page - 1)
        while a < hi:
            try:
                buf = self.mem.fetch(a, min(a + piece, hi))
            except TargetMemoryError:
                a += page
                continue
            n = len(buf)
            for off in range(0, n - 2 * sz + 1, page):
                for k in range(0, min(self.p.malloc_alignment, n - off - 2 * sz + 1), sz):
                    prev, sf = self.two.unpack_from(buf, off + k)
                    if (sf & SIZE_BITS) == IS_MMAPPED:
                        size = sf & ~SIZE_BITS
                        if self.p.mmap_span(prev, size)[0] == k:
                            yield a + off + k, size, k
            a += n  # a prefix ends on a page: the unreadable page is skipped next

    def _page_candidates(self, lo: int, hi: int,
                         found: dict[int, tuple[int, int, int]]) -> Iterator[int]:
        """Page starts in [lo, hi) outside the chunks found so far whose first words
        could begin a mmapped chunk."""
        last = None
        for addr, _size, _off in self.headers(lo, hi):
            base = addr & ~0xfff
            if base == last or any(b <= base < b + self.p.mmap_span(h[2], h[1])[1]
                                   for b, h in found.items()):
                continue
            last = base
            yield base

    def total(self) -> int:
        """The mmapped chunks' mappings, in bytes (what ``mp_.mmapped_mem`` counts)."""
        return sum(self.p.mmap_span(off, s)[1] for _a, s, off in self.chunks())

    def remap_drift(self) -> int:
        """How many times ``mp_.mmapped_mem`` overcounts by a chunk header, when that
        alone explains the difference (else 0): glibc 2.43's mremap_chunk adds
        ``new_size - size - offset`` with ``size`` the chunk's size, not its mapping's
        (CHUNK_HDR_SZ more), so every realloc that remaps a mmapped chunk leaves
        2 * SIZE_SZ bytes too many, even after the chunk is freed."""
        if self.p.version < (2, 43):
            return 0
        hdr, extra = 2 * self.sz, self._mp()["mmapped_mem"] - self.total()
        if len(self.chunks()) != self._mp()["n_mmaps"] or extra <= 0 or extra % hdr:
            return 0
        return extra // hdr

    def note(self) -> Optional[str]:
        """Why the mmapped chunks found differ from mp_'s count and bytes, or None."""
        chunks = self.chunks()
        n, total = len(chunks), self.total()
        want_n, want_b = self._mp()["n_mmaps"], self._mp()["mmapped_mem"]
        if (n, total) == (want_n, want_b):
            return None
        k = self.remap_drift()
        if k:
            return (f"mp_.mmapped_mem is {want_b:#x}, {want_b - total:#x} bytes more than "
                    f"the {n} mmapped chunks' mappings ({total:#x}): glibc 2.43's "
                    f"mremap_chunk counts {2 * self.sz} bytes too many each time realloc "
                    f"remaps a mmapped chunk ({k} times here); the chunks are all found")
        return (f"found {n} mmapped chunks ({total:#x} bytes) but mp_ counts {want_n} "
                f"({want_b:#x} bytes): a chunk's header may be damaged or its memory "
                "missing (a core without it), or mp_ is stale")
