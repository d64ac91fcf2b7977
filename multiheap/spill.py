"""Integers past a memory budget kept in a temporary file, so that the debugger's
memory stays flat whatever a heap holds: a huge heap's free-list entries, its sorted
list index and ptcheck's marked chunks are read back a block at a time.

The file is one unlinked temporary file per stop (``tempfile``: ``$TMPDIR`` or
/tmp); when it cannot be written, arrays simply stay in memory."""

from __future__ import annotations

import bisect
import os
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from typing import Optional, Union

# entries an array holds in memory before it moves them to the file (512 KB);
# MULTIHEAP_SPILL_BLOCK makes it smaller so that tests take the spilled path
BLOCK = max(16, int(os.environ.get("MULTIHEAP_SPILL_BLOCK", 1 << 16)))
ITEM = array("Q").itemsize
PAGE = 4096  # entries a sorted array's look-up reads at a time (32 KB)


class SpillFile:
    """Where arrays put their blocks: opened on first use, unlinked from the start."""

    def __init__(self) -> None:
        self._fd: Optional[int] = None
        self._broken = False
        self.end = 0

    def write(self, data: bytes) -> Optional[int]:
        """Append ``data``; its offset, or None when the file cannot be written."""
        if self._broken:
            return None
        try:
            if self._fd is None:
                f = tempfile.TemporaryFile(prefix="multiheap-")
                self._fd = os.dup(f.fileno())
                f.close()
            off = self.end
            done = 0
            while done < len(data):
                done += os.pwrite(self._fd, data[done:], off + done)
        except OSError:
            self._broken = True
            return None
        self.end += len(data)
        return off

    def read(self, off: int, n: int) -> bytes:
        out = os.pread(self._fd, n, off) if self._fd is not None else b""
        while len(out) < n:  # a short read: go on where it stopped
            more = os.pread(self._fd, n - len(out), off + len(out))
            if not more:
                raise OSError(f"spill file ends at {off + len(out)}")
            out += more
        return out

    def __del__(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except (OSError, TypeError):  # TypeError: os is gone at interpreter exit
                pass


class SpillArray:
    """An ``array('Q')`` that can be appended to without bound: once its memory part
    (``tail``) reaches :data:`BLOCK` entries they go to the file, so it keeps at most
    that many in memory.  Reads (index, slice, iteration, ``in``) behave as the
    array's; a cut (``del a[i:]``) is the one change besides appending."""

    def __init__(self, spill: SpillFile, values: Iterable[int] = ()) -> None:
        self.file = spill
        self.tail = array("Q")  # appended to in place: its bound append stays valid
        self._parts: list[tuple[int, int]] = []  # (file offset, entries), in order
        self._starts: list[int] = []  # the index of each part's first entry
        self.spilled = 0  # entries in the file
        self._fences: Optional[list[int]] = None  # a sorted array's first value of each page
        self._pages: dict[int, array] = {}  # pages read for bisect
        self.extend(values)

    def settle(self) -> None:
        """Move the memory part to the file when it has reached :data:`BLOCK`."""
        if len(self.tail) >= BLOCK:
            self._spill()

    def _spill(self) -> None:
        off = self.file.write(self.tail.tobytes())
        if off is None:
            return  # no file: the entries stay in memory
        self._starts.append(self.spilled)
        self._parts.append((off, len(self.tail)))
        self.spilled += len(self.tail)
        del self.tail[:]

    def append(self, value: int) -> None:
        self._fences = None
        self.tail.append(value)
        if len(self.tail) >= BLOCK:
            self._spill()

    def extend(self, values: Iterable[int]) -> None:
        self._fences = None
        if not isinstance(values, (array, list, tuple, range)):
            values = array("Q", values)
        for i in range(0, len(values), BLOCK):
            self.tail.extend(values[i:i + BLOCK])
            self.settle()

    def compact(self) -> Union[array, SpillArray]:
        """The plain array when nothing went to the file (the common, small case)."""
        return self.tail if not self._parts else self

    def _part(self, k: int, lo: int = 0, hi: Optional[int] = None) -> array:
        off, n = self._parts[k]
        hi = n if hi is None else hi
        out = array("Q")
        if hi > lo:
            out.frombytes(self.file.read(off + lo * ITEM, (hi - lo) * ITEM))
        return out

    def blocks(self) -> Iterator[array]:
        """The entries in order, a block (an array) at a time."""
        for k in range(len(self._parts)):
            yield self._part(k)
        if self.tail:
            yield self.tail

    def __len__(self) -> int:
        return self.spilled + len(self.tail)

    def __bool__(self) -> bool:
        return bool(self.spilled or self.tail)

    def __iter__(self) -> Iterator[int]:
        for blk in self.blocks():
            yield from blk

    def __contains__(self, value: object) -> bool:
        return any(value in blk for blk in self.blocks())

    def __getitem__(self, i: Union[int, slice]) -> Union[int, array]:
        n = len(self)
        if isinstance(i, slice):
            lo, hi, step = i.indices(n)
            if step != 1:
                return self._range(0, n)[i]
            return self._range(lo, hi)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("array index out of range")
        if i >= self.spilled:
            return self.tail[i - self.spilled]
        page = self._pages.get(i // PAGE) if self._fences is not None else None
        if page is not None:  # read by a look-up (bisect) just before
            return page[i % PAGE]
        k = bisect.bisect_right(self._starts, i) - 1
        j = i - self._starts[k]
        return self._part(k, j, j + 1)[0]

    def _range(self, lo: int, hi: int) -> array:
        out = array("Q")
        if hi <= lo:
            return out
        k = max(bisect.bisect_right(self._starts, lo) - 1, 0)
        while lo < min(hi, self.spilled):
            start, (_off, n) = self._starts[k], self._parts[k]
            stop = min(hi, start + n)
            out += self._part(k, lo - start, stop - start)
            lo, k = stop, k + 1
        if hi > self.spilled:
            out += self.tail[max(lo - self.spilled, 0):hi - self.spilled]
        return out

    def bisect(self, x: int, right: bool = False) -> int:
        """For a sorted array: ``bisect_left`` (``bisect_right`` if ``right``) of ``x``,
        reading one page of :data:`PAGE` entries (the last few kept: look-ups in
        address order, as walks make them, read each page once)."""
        find = bisect.bisect_right if right else bisect.bisect_left
        if self._fences is None or len(self._fences) != -(-len(self) // PAGE):
            self._fences = [self[i] for i in range(0, len(self), PAGE)]
            self._pages = {}
        p = max(find(self._fences, x) - 1, 0)
        page = self._pages.get(p)
        if page is None:
            if len(self._pages) >= 4:
                self._pages.clear()
            page = self._pages[p] = self[p * PAGE:(p + 1) * PAGE]
        return p * PAGE + find(page, x)

    def __delitem__(self, cut: slice) -> None:
        """``del a[i:]``: keep the first ``i`` entries."""
        if not isinstance(cut, slice) or cut.stop is not None or cut.step is not None:
            raise TypeError("a SpillArray only drops its end: del a[i:]")
        i = range(len(self))[cut].start if len(self) else 0
        self._fences = None
        if i >= self.spilled:
            del self.tail[i - self.spilled:]
            return
        k = bisect.bisect_right(self._starts, i) - 1
        keep = self._part(k, 0, i - self._starts[k])
        del self._parts[k:], self._starts[k:]
        self.spilled = self._starts[-1] + self._parts[-1][1] if self._parts else 0
        self.tail[:] = keep  # the file keeps the dropped bytes; nothing reads them

    def __repr__(self) -> str:
        return f"SpillArray({len(self)} entries, {self.spilled} in the file)"


class SpillBytes:
    """Bytes appended without bound (a page's packed column): past 1 MB they go to
    the spill file; read back as pieces of a chosen size (:meth:`pieces`)."""

    HELD = 2 * BLOCK * ITEM  # 1 MB (MULTIHEAP_SPILL_BLOCK makes it smaller too)

    def __init__(self, spill: SpillFile) -> None:
        self.file = spill
        self.buf = bytearray()
        self._parts: list[tuple[int, int]] = []  # (file offset, bytes), in order
        self._spilled = 0

    def append(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= self.HELD:
            off = self.file.write(bytes(self.buf))
            if off is not None:  # no file: the bytes stay in memory
                self._parts.append((off, len(self.buf)))
                self._spilled += len(self.buf)
                self.buf = bytearray()

    def __len__(self) -> int:
        return self._spilled + len(self.buf)

    def pieces(self, n: int) -> Iterator[bytes]:
        """The bytes in order, ``n`` at a time (the last piece may be shorter)."""
        carry = bytearray()
        for off, size in self._parts:
            for at in range(0, size, n):
                carry += self.file.read(off + at, min(n, size - at))
                while len(carry) >= n:
                    yield bytes(carry[:n])
                    del carry[:n]
        carry += self.buf
        for at in range(0, len(carry), n):
            yield bytes(carry[at:at + n])
