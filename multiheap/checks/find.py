"""ptfind: the chunk that holds an address, in any arena's heap or mmapped chunk."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Optional

from multiheap.errors import TargetMemoryError
from multiheap.heaptypes import SIZE_BITS


@dataclass
class Found:
    """The chunk holding an address: where, which arena or mapping, state, offset."""

    addr: int
    size: int
    state: str
    arena: Optional[int]  # None for a mmapped chunk
    offset: int  # from the chunk's user data (negative: inside the header)


def find_chunk(heap, addr: int) -> Optional[Found]:
    """The chunk whose bytes include ``addr``, or None.

    A heap segment is searched by its chunk walk up to ``addr`` (the cached bulk read,
    no state lookups but the one chunk's); mmapped chunks by their spans.
    """
    found = heap.segment_of(addr)
    if found is not None:
        arena, seg = found
        hit = _walk_to(heap, arena, seg, addr)
        if hit is None:
            return None
        c = heap.chunk(hit)
        return Found(hit, c.size, heap.chunk_state(c), arena.addr, addr - c.mem)
    for a, size, prev in heap.mmapped_chunks():
        if a - prev <= addr < a + size:
            return Found(a, size, "mmapped", None, addr - (a + 2 * heap.sz))
    return None


def _walk_to(heap, arena, seg, addr: int) -> Optional[int]:
    """The start of the chunk holding ``addr``, walking by sizes from the segment start."""
    try:
        buf, base = heap.mem.load(seg.start, seg.end)
    except TargetMemoryError:
        return None
    sz = heap.sz
    shift = 3 if sz == 8 else 2
    if (seg.start - base) % sz or heap.cfg.endian != sys.byteorder:
        return None
    words = memoryview(buf)[:len(buf) - len(buf) % sz].cast("Q" if sz == 8 else "I")
    w, top = (seg.start - base) // sz, (arena.top - base) // sz
    want = (addr - base) // sz
    minsize, low = heap.p.minsize, ~(SIZE_BITS >> shift)
    n = len(words)
    while w + 1 < n:  # the hot loop: one index and a shift per chunk
        step = (words[w + 1] >> shift) & low
        if w == top:
            return w * sz + base if want < w + max(step, 2) else None
        if step < minsize >> shift:
            return None
        if w <= want < w + step:
            return w * sz + base
        w += step
    return None
