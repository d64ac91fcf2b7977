"""Many integers in bounded memory: a huge heap's list entries as sorted ``array('Q')``
runs (8 bytes each), never as a Python list of them all, and never merged into a copy."""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections.abc import Iterable, Iterator
from typing import Optional, Union

from multiheap.spill import SpillArray, SpillFile

Run = Union[array, SpillArray]  # a sorted run, in memory or in the spill file
PIECE = 1 << 18  # values sorted at a time (their temporary list: ~10 MB)


class SortedBuilder:
    """Collects unsigned ints in sorted pieces of at most :data:`PIECE` values; given
    a spill file, the pieces are kept there (:class:`~multiheap.spill.SpillArray`)."""

    def __init__(self, spill: Optional[SpillFile] = None) -> None:
        self.pieces: list[Run] = []
        self._pending: list[int] = []
        self.spill = spill

    def _piece(self, values: list[int]) -> Run:
        run = array("Q", values)
        return SpillArray(self.spill, run).compact() if self.spill is not None else run

    def extend(self, values: Iterable[int]) -> None:
        pending = self._pending
        pending.extend(values)
        while len(pending) >= PIECE:
            self.pieces.append(self._piece(sorted(pending[:PIECE])))
            del pending[:PIECE]

    def runs(self) -> list[Run]:
        """The sorted runs (their value ranges may overlap); the builder is emptied."""
        if self._pending:
            self.pieces.append(self._piece(sorted(self._pending)))
            self._pending = []
        pieces, self.pieces = self.pieces, []
        return pieces


def rounds(runs: list[Run], block: int = 0) -> Iterator[list[int]]:
    """The runs' values in ascending order, a sorted list at a time, at C speed with
    about :data:`PIECE` values held at once: each round takes from every run what is
    at most the smallest last value of their next blocks (so at least one block is used
    up) and sorts that (runs: timsort merges them).  Equal values may fall in two
    rounds when one run holds them across a block's end."""
    block = block or max(1024, PIECE // max(len(runs), 1))
    pos = [0] * len(runs)
    live = [k for k, r in enumerate(runs) if r]
    while live:
        if len(live) == 1:
            k = live[0]
            r = runs[k]
            for i in range(pos[k], len(r), PIECE):
                yield list(r[i:i + PIECE])
            return
        cut = min(runs[k][min(pos[k] + block, len(runs[k])) - 1] for k in live)
        take: list[int] = []
        for k in live:
            r = runs[k]
            j = bisect.bisect_right(r, cut, pos[k], min(pos[k] + block, len(r)))
            take += r[pos[k]:j]
            pos[k] = j
        take.sort()
        yield take
        live = [k for k in live if pos[k] < len(runs[k])]


def find(run: Run, x: int, right: bool = False) -> int:
    """``bisect_left`` (``bisect_right`` if ``right``) of ``x`` in a sorted run, one
    page read when the run is in the spill file."""
    if isinstance(run, SpillArray):
        return run.bisect(x, right)
    return bisect.bisect_right(run, x) if right else bisect.bisect_left(run, x)


def window(runs: list[Run], lo: int, hi: int) -> Iterable[int]:
    """The runs' values in ``[lo, hi)``, sorted (a slice when one run holds them)."""
    parts = [r[find(r, lo):find(r, hi)] for r in runs]
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return parts[0] if parts else array("Q")
    return sorted(itertools.chain.from_iterable(parts))
