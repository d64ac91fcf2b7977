"""A host's session: one target, the user's overrides and tags, and the heap cache."""

from __future__ import annotations

from typing import Callable, Optional

from multiheap.discovery import Overrides, discover
from multiheap.heap import Heap
from multiheap.meta import MetaStore
from multiheap.target import Target


def parse_int(text: str) -> int:
    """Default address parser: Python integer literals (0x..., decimal)."""
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"not an address: {text!r}") from None


class Session:
    """Lives as long as the host's plugin; rebuilds the Heap when the target moved."""

    def __init__(self, target: Target,
                 evaluate: Optional[Callable[[str], int]] = None) -> None:
        self.target = target
        self.evaluate = evaluate or parse_int
        self.overrides = Overrides()
        self.meta = MetaStore()
        self._heap: Optional[Heap] = None
        self._gen: Optional[int] = None

    def heap(self) -> Heap:
        gen = self.target.generation()
        if self._heap is None or gen != self._gen:
            cfg = discover(self.target, self.overrides)  # every fact, before the Heap
            self._heap = Heap(self.target, cfg, self.overrides)
            self._gen = gen
        return self._heap

    def invalidate(self) -> None:
        """Drop cached memory and structures (the target ran or was written)."""
        self._heap = None
