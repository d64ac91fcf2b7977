"""Is an address a chunk, or a user pointer someone gave without ``-m``?

``ptchunk keep[0]`` (a pointer malloc returned) read as a chunk header shows the user
data as prev_size and size: garbage such as "mmapped size=0x9a77...".  A chunk is
plausible when its size is possible (at least MINSIZE, aligned) and it either lies in
an arena's heap with the chunk after it inside that heap too, or it is a known mmapped
chunk.  When ADDR is not plausible and ADDR - 2*SIZE_SZ is, the caller shows that chunk
and says that ``-m`` was assumed.
"""

from __future__ import annotations

from typing import Any

from multiheap.errors import MultiheapError, TargetMemoryError
from multiheap.heaptypes import IS_MMAPPED, SIZE_BITS


def plausible_chunk(heap: Any, addr: int) -> bool:
    """True when ``addr`` looks like a chunk header: aligned, sane size, in place."""
    if not heap.aligned(addr):
        return False
    try:
        c = heap.chunk(addr)
    except TargetMemoryError:
        return False
    size, p = c.size, heap.p
    if size < p.minsize or size & p.align_mask & ~SIZE_BITS:
        return False
    if c.flags & IS_MMAPPED:
        try:
            return heap.mmapped.starts_at(addr)
        except MultiheapError:
            return False
    found = heap.segment_of(addr)
    if found is None:
        return False
    _arena, seg = found
    return addr + size <= seg.end


def chunk_or_user_pointer(heap: Any, addr: int) -> tuple[int, bool, str]:
    """(chunk address, whether -m was assumed, why) for an address given as a chunk.

    When ``addr`` is a plausible chunk, or neither it nor ``addr - 2*SIZE_SZ`` is,
    ``addr`` is kept (``why`` then says what is wrong, or is empty).
    """
    if plausible_chunk(heap, addr):
        return addr, False, ""
    mem = addr - 2 * heap.sz
    if mem >= 0 and plausible_chunk(heap, mem):
        return mem, True, (f"{addr:#x} is not a plausible chunk but {mem:#x} is: "
                           f"{addr:#x} taken as a user pointer (-m assumed)")
    return addr, False, f"{addr:#x} does not look like a chunk (a bad address?)"
