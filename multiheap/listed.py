"""Which free list holds a chunk, for every listed chunk at once: the index a census
looks states up in, compact enough for tens of millions of entries."""

from __future__ import annotations

import bisect
import itertools
import operator
from array import array
from collections.abc import Iterator
from typing import Optional

from multiheap.compact import PIECE, SortedBuilder

_CODES = (None, "free", "fast", "tcache")  # a listed chunk's state by its code


class Listed:
    """Every listed free chunk and its state, compact: sorted runs of ``addr | code``
    keys in arrays (8 bytes a chunk; a list entry is MALLOC_ALIGNMENT-aligned, so the
    two low bits are free).  A chunk in several lists has the state of the last kind
    added (tcache over fast over free), as ``dict.update`` in that order would."""

    def __init__(self, lists: list[tuple[str, array, int]]) -> None:
        """``lists``: (state, chunks, the one size of them all or 0) of each list;
        a list has no chunk twice (a walk stops at a cycle)."""
        keys = SortedBuilder()
        for state, chunks, _size in lists:
            code = _CODES.index(state)
            for lo in range(0, len(chunks), PIECE):
                keys.extend(map(code.__or__, chunks[lo:lo + PIECE]))
        r = keys.done()
        self.runs: list[array] = [r] if r else []
        self.entries = len(r)  # with repeats
        self.unique = self._unique(r, lists)  # no chunk in two lists

    @staticmethod
    def _unique(r: array, lists: list[tuple[str, array, int]]) -> bool:
        """Whether no address is in two lists.  Lists of one size share a chunk only
        with lists of that size (a chunk has one size word): of each such group only
        the lists but the longest are looked up in ``r``; lists of mixed sizes are
        looked up whole, unless they are long (then every key is compared)."""
        groups: dict[int, list[array]] = {}
        for _state, chunks, size in lists:
            groups.setdefault(size, []).append(chunks)
        mixed = groups.pop(0, [])
        look = [c for c in mixed] + [c for g in groups.values()
                                     for c in sorted(g, key=len)[:-1]]
        if sum(map(len, look)) > len(r) // 8:
            addr = (2).__rrshift__  # key >> 2, at C speed
            return not any(map(operator.eq, map(addr, r),
                               map(addr, itertools.islice(r, 1, None))))
        for chunks in look:
            for a in chunks:
                i = bisect.bisect_left(r, a)
                if i + 1 < len(r) and r[i + 1] >> 2 == a >> 2:
                    return False
        return True

    def get(self, addr: int) -> Optional[str]:
        found = None
        for r in self.runs:
            i = bisect.bisect_right(r, addr | 3) - 1
            if i >= 0 and r[i] & ~3 == addr:
                found = _CODES[r[i] & 3]
        return found

    def __contains__(self, addr: int) -> bool:
        return self.get(addr) is not None

    def __len__(self) -> int:
        return len(self.between(0, 1 << 64))

    def between(self, lo: int, hi: int) -> dict[int, str]:
        """{addr: state} of the listed chunks in [lo, hi)."""
        out: dict[int, str] = {}
        codes = _CODES
        for r in self.runs:
            i, j = bisect.bisect_left(r, lo), bisect.bisect_left(r, hi)
            if i < j:
                out.update({k & ~3: codes[k & 3] for k in r[i:j]})
        return out

    def items(self) -> Iterator[tuple[int, str]]:
        return iter(self.between(0, 1 << 64).items())
