"""Heap totals, including glibc's own mallinfo2 figures computed from memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from multiheap.heap import Heap
from multiheap.heaptypes import Arena, Stop

MALLINFO2_FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "uordblks",
                    "fordblks", "fsmblks", "keepcost")


@dataclass
class ArenaStats:
    """Counts and bytes per chunk state for one arena."""

    addr: int
    system_mem: int
    top_size: int
    inuse_count: int = 0
    inuse_bytes: int = 0
    free_count: int = 0
    free_bytes: int = 0
    fast_count: int = 0
    fast_bytes: int = 0
    tcache_count: int = 0
    tcache_bytes: int = 0
    orphan_count: int = 0  # marked free by the next chunk's PREV_INUSE, in no list
    orphan_bytes: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def mallinfo2(heap: Heap) -> dict[str, int]:
    """What glibc's mallinfo2() returns, computed as glibc's int_mallinfo does."""
    m = dict.fromkeys(MALLINFO2_FIELDS, 0)
    for a in heap.arenas():
        top = heap.top_size(a)
        fast = heap.lists.fastbins(a)  # counts and sums per list: no list of sizes
        binned = heap.lists.bins(a)
        fast_bytes = sum(sum(fl.sizes) for fl in fast)
        avail = top + fast_bytes + sum(sum(fl.sizes) for fl in binned)
        m["smblks"] += sum(len(fl.sizes) for fl in fast)
        m["fsmblks"] += fast_bytes
        m["ordblks"] += 1 + sum(len(fl.sizes) for fl in binned)
        m["fordblks"] += avail
        m["uordblks"] += a.f["system_mem"] - avail
        m["arena"] += a.f["system_mem"]
        if a.is_main:
            m["hblks"] = heap.mp["n_mmaps"]
            m["hblkhd"] = heap.mp["mmapped_mem"]
            m["keepcost"] = top
    # size_t arithmetic, as in glibc: a corrupted top size wraps rather than going negative.
    mask = (1 << (8 * heap.sz)) - 1
    return {k: v & mask for k, v in m.items()}


def arena_stats(heap: Heap, arena: Arena, stops: list[Stop]) -> ArenaStats:
    """Walk the arena's heaps and count chunks by state."""
    st = ArenaStats(arena.addr, arena.f["system_mem"], heap.top_size(arena))
    for state, (count, size) in heap.walks.census(arena, stops).items():
        setattr(st, f"{state}_count", count)
        setattr(st, f"{state}_bytes", size)
    return st
