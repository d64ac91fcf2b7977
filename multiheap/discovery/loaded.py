"""Regions a host does not report, derived from what malloc itself says is its memory.

qemu-user's gdb stub gives no memory map at all (gdb's ``info proc mappings`` is
empty, and gdb/MI's fallback, the object files' sections, has no heap).  The arenas'
heaps are known without one: main_arena's runs from ``mp_.sbrk_base`` to the end of its
top chunk, every other arena's from its ``heap_info`` (the same walk as
:class:`~multiheap.heap.Heap`, used here).  :func:`with_heaps` gives discovery a view
of the target whose regions add those heaps where the host reported none, so the
checks that want a pointer to lie in mapped memory (a tcache entry, an arena's top)
can pass.  Mmapped chunks stay unknown without a map: nothing in malloc points at
them.
"""

from __future__ import annotations

from typing import Any

from multiheap.errors import MultiheapError
from multiheap.target import Region, Target


class _WithRegions:
    """The target, with ``extra`` regions after the host's own (reads go to the host)."""

    def __init__(self, target: Target, extra: list[Region]) -> None:
        self._inner = target
        self._extra = extra

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def regions(self) -> list[Region]:
        return sorted(self._inner.regions() + self._extra, key=lambda r: r.start)


def _covered(regions: list[Region], start: int, end: int) -> bool:
    return any(r.start <= start and end <= r.end for r in regions)


def heap_regions(target: Target, config: Any) -> list[Region]:
    """The arenas' heaps (main first) as writable regions, from a provisional config."""
    from multiheap.heap import Heap  # the one heap walk; heap imports discovery

    try:
        arenas = Heap(target, config).arenas()
    except MultiheapError:
        return []
    out = []
    for a in arenas:
        for s in a.heaps:
            lo = (s.info or s.start) & ~0xFFF
            out.append(Region(lo, (s.end + 0xFFF) & ~0xFFF, "rw-",
                              "[heap]" if a.is_main else ""))
    return out


def with_heaps(target: Target, config: Any) -> Target:
    """``target`` itself when its regions hold every heap, else a view that adds them."""
    own = target.regions()
    missing = [r for r in heap_regions(target, config) if not _covered(own, r.start, r.end)]
    return _WithRegions(target, missing) if missing else target  # type: ignore[return-value]
