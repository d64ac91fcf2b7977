"""Sorting many integers in bounded memory: a huge heap's list entries as one sorted
``array('Q')`` (8 bytes each), never as a Python list of them all."""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable

PIECE = 1 << 18  # values sorted at a time (their temporary list: ~10 MB)


class SortedBuilder:
    """Collects unsigned ints in sorted pieces; :meth:`done` merges them into one
    sorted array('Q')."""

    def __init__(self) -> None:
        self.pieces: list[array] = []
        self._pending: list[int] = []

    def extend(self, values: Iterable[int]) -> None:
        pending = self._pending
        pending.extend(values)
        while len(pending) >= PIECE:
            self.pieces.append(array("Q", sorted(pending[:PIECE])))
            del pending[:PIECE]

    def done(self) -> array:
        if self._pending:
            self.pieces.append(array("Q", sorted(self._pending)))
            self._pending = []
        pieces, self.pieces = self.pieces, []
        if len(pieces) <= 1:
            return pieces[0] if pieces else array("Q")
        return merged(pieces)


def merged(pieces: list[array], block: int = 0) -> array:
    """Sorted arrays merged into one, at C speed in bounded memory: each round takes
    from every piece what is at most the smallest last value of their next blocks
    (so at least one block is used up) and sorts that (runs: timsort merges them)."""
    block = block or max(1024, PIECE // max(len(pieces), 1))  # ~PIECE ints a round
    out = array("Q")
    pos = [0] * len(pieces)
    while True:
        live = [k for k, p in enumerate(pieces) if pos[k] < len(p)]
        if not live:
            return out
        if len(live) == 1:
            k = live[0]
            out.extend(pieces[k][pos[k]:])
            return out
        cut = min(pieces[k][min(pos[k] + block, len(pieces[k])) - 1] for k in live)
        take: list[int] = []
        for k in live:
            j = bisect.bisect_right(pieces[k], cut, pos[k], min(pos[k] + block, len(pieces[k])))
            take += pieces[k][pos[k]:j]
            pos[k] = j
        take.sort()
        out.extend(take)
