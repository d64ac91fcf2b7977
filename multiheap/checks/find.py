"""ptfind: the chunk that holds an address, in any arena's heap or mmapped chunk."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Optional

from multiheap.heaptypes import SIZE_BITS
from multiheap.walks import ChunkIndex


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
            hit = heap.walks.chunk_index(arena, seg).holding(addr)
        if hit is None:
            return None
        c = heap.chunk(hit)
        return Found(hit, c.size, heap.lists.chunk_state(c), arena.addr, addr - c.mem)
    for a, size, off in heap.mmapped.chunks():
        if a - off <= addr < a - off + heap.p.mmap_span(off, size)[1]:
            state = heap.lists.chunk_state(heap.chunk(a))  # 2.43: "tcache" when freed
            return Found(a, size, state, None, addr - (a + 2 * heap.sz))
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
    the caller uses the index).  The walk streams the heap from the anchor on."""
    if heap.walks.indexed(arena, seg):
        return None
    if not seg.start <= arena.top < seg.end or addr > arena.top:
        return None
    below = [x for x in _anchors(heap, arena)
             if seg.start <= x <= addr and not (x + 2 * heap.sz) & heap.p.align_mask]
    if not below:
        return None
    sz = heap.sz
    ix = ChunkIndex(seg.start, sz)
    hit = None
    for win in heap.walks.chunk_windows(arena, seg, start=max(below), into=ix):
        starts = win.starts
        want = (addr - win.base) // sz
        if hit is None and starts and starts[0] <= want:
            i = bisect.bisect_right(starts, want) - 1
            w = starts[i]
            if want < w + (win.words[w + 1] & ~SIZE_BITS) // sz:
                hit = win.base + w * sz
    if ix.stop is not None or ix.top != arena.top or len(ix.runs) != 1:
        return None
    if hit is None and addr < arena.top + 2 * sz:
        hit = arena.top
    return hit
