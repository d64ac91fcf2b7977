"""Which free list holds a chunk, for every listed chunk at once: the index a census
looks states up in, compact enough for tens of millions of entries."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import Optional

from multiheap.compact import PIECE, Run, SortedBuilder, find, rounds, window
from multiheap.spill import SpillArray, SpillFile

_CODES = (None, "free", "fast", "tcache")  # a listed chunk's state by its code


class Listed:
    """Every listed free chunk and its state, compact: sorted runs of ``addr | code``
    keys in arrays (8 bytes a chunk; a list entry is MALLOC_ALIGNMENT-aligned, so the
    two low bits are free), left unmerged (a merge would hold a second copy).  A chunk
    in several lists has the state of the highest code (tcache over fast over free),
    as ``dict.update`` in that order would."""

    def __init__(self, lists: list[tuple[str, Sequence[int], int]],
                 spill: Optional[SpillFile] = None) -> None:
        """``lists``: (state, chunks, the one size of them all or 0) of each list;
        a list has no chunk twice (a walk stops at a cycle).  Given a ``spill`` file,
        full runs are kept there, not in memory."""
        keys = SortedBuilder(spill)
        for state, chunks, _size in lists:
            code = _CODES.index(state)
            for lo in range(0, len(chunks), PIECE):
                keys.extend(map(code.__or__, chunks[lo:lo + PIECE]))
        self.runs: list[Run] = keys.runs()
        self.entries = sum(map(len, self.runs))  # with repeats
        self.unique = self._unique(lists)  # no chunk in two lists

    def _unique(self, lists: list[tuple[str, Sequence[int], int]]) -> bool:
        """Whether no address is in two lists.  Lists of one size share a chunk only
        with lists of that size (a chunk has one size word): of each such group only
        the lists but the longest are looked up; lists of mixed sizes are looked up
        whole, unless that would cost more than one pass over every key in order (a
        look-up in a run in the spill file costs about 200 keys of that pass)."""
        per = 200 if any(isinstance(r, SpillArray) for r in self.runs) else 3
        groups: dict[int, list[Sequence[int]]] = {}
        for _state, chunks, size in lists:
            groups.setdefault(size, []).append(chunks)
        mixed = groups.pop(0, [])
        look = [c for c in mixed] + [c for g in groups.values()
                                     for c in sorted(g, key=len)[:-1]]
        if per * sum(map(len, look)) * len(self.runs) > self.entries:
            return not self.repeated(first=True)
        for chunks in look:
            for a in chunks:
                if self.count(a, a | 4) > 1:  # its keys: codes 0-3, below a | 4
                    return False
        return True

    def repeated(self, first: bool = False) -> set[int]:
        """The addresses listed more than once (all, or the ``first`` one found): one
        pass over the keys in order (:func:`~multiheap.compact.rounds`)."""
        out: set[int] = set()
        addr = (2).__rrshift__  # key >> 2, at C speed
        prev = -1
        for vals in rounds(self.runs):
            if not vals:
                continue
            if vals[0] >> 2 == prev >> 2 and prev >= 0:
                out.add(vals[0] & ~3)
            same = list(map(operator.eq, map(addr, vals),
                            map(addr, itertools.islice(vals, 1, None))))
            if any(same):
                out.update(vals[i + 1] & ~3 for i in itertools.compress(range(len(same)), same))
            if out and first:
                return out
            prev = vals[-1]
        return out

    def get(self, addr: int) -> Optional[str]:
        best = 0
        for r in self.runs:
            i = find(r, addr | 3, right=True) - 1
            if i >= 0 and r[i] & ~3 == addr and r[i] & 3 > best:
                best = r[i] & 3
        return _CODES[best]

    def __contains__(self, addr: int) -> bool:
        return self.get(addr) is not None

    def __len__(self) -> int:
        return len(self.between(0, 1 << 64))

    def count(self, lo: int, hi: int) -> int:
        """How many keys lie in [lo, hi) (a chunk in two lists counts twice)."""
        return sum(find(r, hi) - find(r, lo) for r in self.runs)

    def keys(self, lo: int, hi: int) -> Iterable[int]:
        """The ``addr | code`` keys of the chunks in [lo, hi), sorted."""
        return window(self.runs, lo, hi)

    def between(self, lo: int, hi: int) -> dict[int, str]:
        """{addr: state} of the listed chunks in [lo, hi)."""
        return self.states(self.keys(lo, hi))

    @staticmethod
    def states(keys: Iterable[int]) -> dict[int, str]:
        """{addr: state} of sorted keys (the highest code of an address comes last)."""
        codes = _CODES
        return {k & ~3: codes[k & 3] for k in keys}

    def items(self) -> Iterator[tuple[int, str]]:
        return iter(self.between(0, 1 << 64).items())
