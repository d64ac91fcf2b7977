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

    In a heap segment: the engine's chunk index (built once per stop, shared with
    ptlist, ptstats and ptcheck).  Before it exists, a walk from the nearest free-list
    head below ``addr`` that leads exactly to top answers without walking the whole
    heap.  Mmapped chunks are searched by their spans.
    """
    found = heap.segment_of(addr)
    if found is not None:
        arena, seg = found
        hit = _from_anchor(heap, arena, seg, addr)
        if hit is None:
            hit = heap.chunk_index(arena, seg).holding(addr)
        if hit is None:
            return None
        c = heap.chunk(hit)
        return Found(hit, c.size, heap.chunk_state(c), arena.addr, addr - c.mem)
    for a, size, prev in heap.mmapped_chunks():
        if a - prev <= addr < a + size:
            return Found(a, size, "mmapped", None, addr - (a + 2 * heap.sz))
    return None


def _anchors(heap, arena) -> list[int]:
    """Chunk addresses the arena itself names: its bins' and fastbins' heads, its
    last remainder (read with the arena, so free)."""
    f = arena.f
    out = [x for x in f["bins"] if x]
    out += [x for x in f.get("fastbinsY", ()) if x]
    if f.get("last_remainder"):
        out.append(f["last_remainder"])
    return out


def _from_anchor(heap, arena, seg, addr: int) -> Optional[int]:
    """The chunk holding ``addr`` by a walk from the nearest anchor at or below it,
    if the chunk index is not built yet and that walk reaches top exactly (else None:
    the caller uses the index)."""
    if (arena.addr, seg.start) in heap.__dict__.get("_chunk_index", {}):
        return None
    if not seg.start <= arena.top < seg.end or addr > arena.top:
        return None
    below = [x for x in _anchors(heap, arena)
             if seg.start <= x <= addr and not (x + 2 * heap.sz) & heap.p.align_mask]
    if not below:
        return None
    start = max(below)
    try:
        buf, base = heap.mem.load(seg.start, seg.end)
    except TargetMemoryError:
        return None
    sz = heap.sz
    if (start - base) % sz or heap.cfg.endian != sys.byteorder:
        return None
    shift = 3 if sz == 8 else 2
    words = memoryview(buf)[:len(buf) - len(buf) % sz].cast("Q" if sz == 8 else "I")
    w, top = (start - base) // sz, (arena.top - base) // sz
    want = (addr - base) // sz
    minw, low, bad = heap.p.minsize >> shift, ~(SIZE_BITS >> shift), \
        heap.p.align_mask & ~SIZE_BITS
    hit = None
    while w < top:  # on to top: an anchor inside a chunk would not land on it
        sf = words[w + 1]
        step = (sf >> shift) & low
        if step < minw or sf & bad:
            return None
        if w <= want < w + step:
            hit = w
        w += step
    if w != top:
        return None
    if hit is None and want < top + 2:
        hit = top
    return base + hit * sz if hit is not None else None
