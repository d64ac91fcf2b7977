"""The plain data of the heap model: chunk flags, limits, and what walks return."""

from __future__ import annotations

import itertools
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Optional, Protocol, Union

from multiheap.spill import SpillArray
from multiheap.target import Thread

PREV_INUSE, IS_MMAPPED, NON_MAIN_ARENA = 1, 2, 4
SIZE_BITS = 7
MAX_ARENAS = 4096
MAX_LIST = 10_000_000  # free-list steps before we call a list runaway


@dataclass(frozen=True)
class Stop:
    """Where a walk stopped early, and why."""

    addr: int
    reason: str

    def message(self, what: str) -> str:
        return f"{what} stopped at {self.addr:#x}: {self.reason}"

    def as_dict(self) -> dict:
        return {"addr": self.addr, "reason": self.reason}


@dataclass
class Chunk:
    """One chunk header (and its free-list links)."""

    addr: int
    prev_size: int
    size_field: int
    fd: int
    bk: int
    fd_nextsize: int
    bk_nextsize: int
    ptr_size: int

    @property
    def size(self) -> int:
        return self.size_field & ~SIZE_BITS

    @property
    def flags(self) -> int:
        return self.size_field & SIZE_BITS

    @property
    def mem(self) -> int:
        return self.addr + 2 * self.ptr_size


@dataclass
class HeapSegment:
    """A contiguous run of chunks: the main heap, or one heap_info heap of an arena."""

    info: Optional[int]  # heap_info address (None for the main arena's heap)
    start: int  # first chunk
    end: int  # one past the last byte that may hold chunks
    fields: dict = field(default_factory=dict)


@dataclass
class Arena:
    """A malloc_state and the heaps it owns."""

    addr: int
    index: int
    is_main: bool
    f: dict
    heaps: list[HeapSegment] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)

    @property
    def top(self) -> int:
        return self.f["top"]

    @property
    def next(self) -> int:
        return self.f["next"]


class SameSize:
    """The sizes of a list whose chunks all have one size (a fastbin, a tcache bin):
    that size and a count, not 8 bytes a chunk.  Behaves as the array it replaces."""

    def __init__(self, size: int, n: int = 0) -> None:
        self.size, self.n = size, n

    def append(self, size: int) -> None:
        if size != self.size:
            raise ValueError(f"size {size:#x} in a list of size {self.size:#x}")
        self.n += 1

    def extend(self, sizes: Iterable[int]) -> None:
        counts = Counter(sizes)  # C speed, one entry a distinct size
        if set(counts) - {self.size}:
            raise ValueError(f"sizes {sorted(counts)} in a list of size {self.size:#x}")
        self.n += counts[self.size]

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return itertools.repeat(self.size, self.n)

    def __getitem__(self, i: int) -> int:
        if not -self.n <= i < self.n:
            raise IndexError("size index out of range")
        return self.size

    def __delitem__(self, cut: slice) -> None:
        self.n -= len(range(self.n)[cut])

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (SameSize, array, list)) \
            else NotImplemented

    def __repr__(self) -> str:
        return f"SameSize({self.size:#x}, {self.n})"


@dataclass
class FreeList:
    """One free list (bin, fastbin, tcache bin) as walked: chunk addresses in order."""

    kind: str  # unsorted / small / large / fast / tcache
    index: int
    # chunk addresses and sizes, compact (a long list's in the spill file)
    chunks: Union[array, SpillArray] = field(default_factory=lambda: array("Q"))
    sizes: Union[array, SpillArray, SameSize] = field(default_factory=lambda: array("Q"))
    stop: Optional[Stop] = None
    count_field: Optional[int] = None  # tcache counts/num_slots as stored


@dataclass
class Tcache:
    """One thread's tcache_perthread_struct."""

    thread: Thread
    addr: Optional[int]
    how: str
    bins: list[FreeList] = field(default_factory=list)


class ArenaView(Protocol):
    """What free lists and chunk walks are given of the arenas (the Heap provides it)."""

    def arenas(self) -> list[Arena]: ...

    def arena_of(self, addr: int) -> Optional[Arena]: ...

    def segment_of(self, addr: int) -> Optional[tuple[Arena, HeapSegment]]: ...
