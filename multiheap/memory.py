"""Bulk, cached reads of target memory for one stop of the target.

The engine parses fields out of cached buffers with precompiled ``struct.Struct``
objects.  Small reads outside any loaded block fetch one page; walks over heap memory
read aligned windows (:meth:`Memory.window`).  The cache holds at most ``CACHE_BYTES``:
the oldest blocks go first, so a huge heap never sits in memory whole.
"""

from __future__ import annotations

import bisect
import os
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Optional

from multiheap.errors import TargetMemoryError
from multiheap.target import Region, Target, covered_until, word_struct  # noqa: F401  (re-exported)

_PAGE = 0x1000
WINDOW = 4 << 20  # bytes per window read of heap memory (aligned)
CACHE_BYTES = 32 << 20  # what the cache keeps at most
# a window also reads this much past its aligned end: a chunk header or link word that
# crosses the end is in the window (a list walk would otherwise read it alone, later)
_SLOP = 64


class Memory:
    """A read cache over a :class:`~multiheap.target.Target` (valid for one stop)."""

    def __init__(self, target: Target, ptr_size: int, endian: str = "little") -> None:
        self.target = target
        self.ptr_size = ptr_size
        self._ptr = word_struct(ptr_size, endian)
        self._starts: list[int] = []
        self._blocks: list[tuple[int, int, bytes]] = []  # (start, end, data)
        self._last: Optional[tuple[int, int, bytes]] = None
        self._age: deque[tuple[int, int, bytes]] = deque()  # blocks, oldest first
        self._bytes = 0

    # loading -------------------------------------------------------------------
    def _insert(self, start: int, data: bytes) -> tuple[int, int, bytes]:
        """Keep a block, so that no kept block holds another: a block the new one holds
        is dropped, and a new one that a kept block holds is not kept (that block is
        returned).  Ends then rise with starts, and :meth:`_find` looks at one block."""
        block = (start, start + len(data), data)
        i = bisect.bisect_left(self._starts, start)
        blocks = self._blocks
        for k in (i - 1, i):  # the only ones that can hold it: ends rise with starts
            if 0 <= k < len(blocks) and blocks[k][0] <= start and block[1] <= blocks[k][1]:
                return blocks[k]
        j = i
        while j < len(blocks) and blocks[j][1] <= block[1]:
            j += 1
        if j > i:  # held by the new block: dropped
            gone = {id(b) for b in blocks[i:j]}
            self._age = deque(b for b in self._age if id(b) not in gone)
            self._bytes -= sum(b[1] - b[0] for b in blocks[i:j])
        self._starts[i:j] = [start]
        blocks[i:j] = [block]
        self._age.append(block)
        self._bytes += len(data)
        while self._bytes > CACHE_BYTES and len(self._age) > 1:
            self._evict(self._age.popleft())
        return block

    def _evict(self, block: tuple[int, int, bytes]) -> None:
        i = bisect.bisect_left(self._starts, block[0])
        while self._blocks[i] is not block:
            i += 1
        del self._starts[i], self._blocks[i]
        self._bytes -= block[1] - block[0]
        if self._last is block:
            self._last = None

    def _find(self, addr: int, size: int) -> Optional[tuple[int, int, bytes]]:
        last = self._last
        if last is not None and last[0] <= addr and addr + size <= last[1]:
            return last
        # no kept block holds another (:meth:`_insert`), so ends rise with starts: of
        # the blocks starting at or below addr, the last reaches furthest
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr + size <= self._blocks[i][1]:
            self._last = b = self._blocks[i]
            return b
        return None

    def load(self, start: int, end: int) -> tuple[bytes, int]:
        """Read ``[start, end)`` in one request; returns (buffer, base).  Cached when
        it is at most a quarter of the cache (a walk's window of a huge heap is not).

        When the whole range cannot be read, the readable prefix is returned (page by
        page); the caller sees a shorter buffer and stops there.
        """
        b = self._find(start, end - start)
        if b is not None:
            return b[2], b[0]
        data = self.fetch(start, end)
        if end - start <= CACHE_BYTES // 4:
            self._last = self._insert(start, data)
        return data, start

    def fetch(self, start: int, end: int) -> bytes:
        """``[start, end)`` read now, not cached: all of it, else its readable prefix
        (raises TargetMemoryError when not even the first byte is readable).  When
        cached blocks cover it (a list walk read those windows), they are joined."""
        joined = self._joined(start, end)
        if joined is not None:
            return joined
        try:
            data = self.target.read(start, end - start)
        except TargetMemoryError:
            data = self._read_prefix(start, end)
        if not data:
            raise TargetMemoryError(start, end - start)
        return data

    def window(self, addr: int, need: int, lo: int, hi: int,
               size: int = 0) -> Optional[tuple[int, int, bytes]]:
        """The cached block holding ``need`` bytes at ``addr``: on a miss, the aligned
        :data:`WINDOW` (or ``size``, a power of two) around it, cut to ``[lo, hi)``
        (the heap it is in), is read and kept.  None when ``addr`` is unreadable."""
        b = self._find(addr, need)
        if b is not None:
            return b
        size = size or WINDOW
        lo = min(max(addr & ~(size - 1), lo), addr)
        end = max(min((addr & ~(size - 1)) + size + _SLOP, hi), addr + need)
        try:
            data = self.fetch(lo, end)
        except TargetMemoryError:
            return None
        if lo + len(data) < addr + need:
            return None
        self._last = self._insert(lo, data)
        return self._last

    def _read_prefix(self, start: int, end: int) -> bytes:
        parts = []
        addr = start
        while addr < end:
            step = min(end, (addr & ~(_PAGE - 1)) + _PAGE) - addr
            try:
                parts.append(self.target.read(addr, step))
            except TargetMemoryError:
                break
            addr += step
        return b"".join(parts)

    def _joined(self, start: int, end: int) -> Optional[bytes]:
        """``[start, end)`` from cached blocks if they cover all of it, else None."""
        parts = []
        a = start
        while a < end:
            b = self._find(a, 1)
            if b is None:
                return None
            hi = min(b[1], end)
            parts.append(b[2][a - b[0]:hi - b[0]])
            a = hi
        return b"".join(parts)

    def block(self, addr: int) -> Optional[tuple[int, int, bytes]]:
        """The loaded (start, end, data) block holding ``addr``, or None."""
        return self._find(addr, 1)

    def read(self, addr: int, size: int) -> bytes:
        """Bytes at ``addr``; raises TargetMemoryError when unreadable."""
        b = self._find(addr, size)
        if b is None:
            start = addr & ~(_PAGE - 1)
            end = (addr + size + _PAGE - 1) & ~(_PAGE - 1)
            try:
                data = self.target.read(start, end - start)
            except TargetMemoryError:
                data = self.target.read(addr, size)  # raises with the precise address
                start = addr
            b = self._insert(start, data)
            self._last = b
        off = addr - b[0]
        return b[2][off:off + size]

    def ptr(self, addr: int) -> int:
        """One pointer-sized word."""
        b = self._find(addr, self.ptr_size)
        if b is None:
            self.read(addr, self.ptr_size)
            b = self._last
            assert b is not None
        return self._ptr.unpack_from(b[2], addr - b[0])[0]

    def readable(self, addr: int, size: int = 1) -> bool:
        try:
            self.read(addr, size)
        except TargetMemoryError:
            return False
        return True


def region_contents(target: Target, regions: Iterable[Region],
                    max_size: int) -> Iterator[tuple[Region, bytes]]:
    """Each region's bytes, one read each, skipping unreadable ones and any larger than
    ``max_size`` (memory scans must stay bounded)."""
    for r in regions:
        if r.size > max_size:
            continue
        try:
            yield r, target.read(r.start, r.size)
        except TargetMemoryError:
            continue


def same_file(a: str, b: str) -> bool:
    """True when two mapping names (paths) name the same file."""
    if not a or not b:
        return False
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return a == b


def lowest_mapping(regions: Iterable[Region], path: str) -> Optional[int]:
    """Start of the lowest region mapped from the file ``path`` (its load base), or None."""
    starts = [r.start for r in regions if same_file(r.name, path)]
    return min(starts) if starts else None
