"""Sorting many integers in bounded memory: a huge heap's list entries as one sorted
``array('Q')`` (8 bytes each), never as a Python list of them all."""

from __future__ import annotations

import heapq
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
        out = array("Q")
        out.extend(heapq.merge(*pieces))
        return out
