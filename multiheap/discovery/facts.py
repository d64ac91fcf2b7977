"""What discovery found: one :class:`Fact` per question, and the frozen :class:`Config`.

A fact records its value, the route that found it and every route tried before it
with the reason it was rejected, so ``ptconfig`` can show how each fact was known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from multiheap.discovery.evidence import ElfFacts
from multiheap.layouts import Params, Version
from multiheap.target import Thread

NO_TCACHE_YET = "no tcache yet (this thread has not allocated)"
NOT_INITIALISED = "the heap is not initialised yet (no malloc has run)"


@dataclass
class Overrides:
    """What the user told ``ptconfig`` (kept for the session)."""

    version: Optional[Version] = None
    main_arena: Optional[int] = None
    mp: Optional[int] = None
    tcache_offset: Optional[int] = None  # tcache pointer = thread pointer + offset


@dataclass(frozen=True)
class Fact:
    """One discovered value: ``how`` names the route that found it (or why none did);
    ``rejected`` holds each earlier route with the reason it gave nothing."""

    value: Optional[int]
    how: str
    rejected: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.value is not None


class Chain:
    """Routes tried in order for one fact: :meth:`reject` notes a route that gave nothing,
    :meth:`found` closes the chain with the route that answered."""

    def __init__(self) -> None:
        self.rejected: list[str] = []

    def reject(self, route: str, why: str) -> None:
        self.rejected.append(f"{route}: {why}")

    def found(self, value: Optional[int], how: str) -> Fact:
        return Fact(value, how, tuple(self.rejected))

    def failed(self, why: str) -> Fact:
        return Fact(None, why, tuple(self.rejected))


@dataclass(frozen=True)
class LibcFile:
    """The file that holds malloc (libc.so.6, or a static executable) and its bias."""

    path: str
    facts: Optional[ElfFacts]
    bias: Optional[int]
    bias_how: str
    static: bool = False


@dataclass(frozen=True)
class ThreadFacts:
    """One thread's pointer and tcache.  ``tcache.value`` is the struct's address, 0 when
    the thread has none yet (:data:`NO_TCACHE_YET`), None when it was not found."""

    thread: Thread
    pointer: Fact
    tcache: Fact


@dataclass(frozen=True)
class Config:
    """Every fact the engine needs about this target's malloc, found before any Heap."""

    version: Version
    ptr_size: int
    arch: str
    endian: str
    main_arena: int
    mp: int
    global_max_fast: Optional[int]
    facts: dict[str, Fact] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    libc: Optional[LibcFile] = None
    threads: tuple[ThreadFacts, ...] = ()
    initialised: bool = True

    @property
    def params(self) -> Params:
        return Params(self.version, self.ptr_size, self.arch)

    @property
    def how(self) -> dict[str, str]:
        """Route name per fact (``version``, ``main_arena``, ``mp_``, ...)."""
        return {k: f.how for k, f in self.facts.items()}

    def thread(self, num: int) -> Optional[ThreadFacts]:
        return next((t for t in self.threads if t.thread.num == num), None)
