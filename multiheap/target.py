"""The protocol every debugger adapter implements, and the plain data it returns.

The engine talks to a debugger only through :class:`Target`.  It is small on purpose:
bulk memory, the machine's word, regions and modules, symbols, optional type layouts
from debug info, threads with their thread pointers, the target's state, the host's
address evaluator and closing.  Adapters keep no discovery fallback of their own:
``multiheap/discovery`` finds what a host does not give.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterable, Optional, Protocol, runtime_checkable


@dataclass(frozen=True)
class Region:
    """One mapping of the target's address space."""

    start: int
    end: int
    perms: str = "rw-"
    name: str = ""

    @property
    def size(self) -> int:
        return self.end - self.start

    def __contains__(self, addr: int) -> bool:
        return self.start <= addr < self.end


@dataclass(frozen=True)
class Module:
    """A loaded object file (executable, shared library)."""

    path: str
    base: int
    build_id: Optional[str] = None


@dataclass(frozen=True)
class Thread:
    """A thread of the target; ``num`` is the host's own thread number."""

    num: int
    tid: int
    name: str = ""


@dataclass
class TypeLayout:
    """Field offsets and sizes of a struct, as the host's debug info describes it."""

    name: str
    size: int
    fields: dict[str, tuple[int, int]] = field(default_factory=dict)


@runtime_checkable
class Target(Protocol):
    """What the engine needs from a debugger.  Adapters implement this."""

    name: str
    """Short adapter name: ``gdb``, ``gdb-mi``, ``lldb``, ``r2``, ``image``."""

    @property
    def pointer_size(self) -> int: ...

    @property
    def endianness(self) -> str:
        """``"little"`` or ``"big"``."""
        ...

    @property
    def arch(self) -> str:
        """``"x86_64"``, ``"i386"``, ..."""
        ...

    @property
    def state(self) -> str:
        """``"live"``, ``"core"``, ``"exited"`` or ``"none"``."""
        ...

    @property
    def pid(self) -> Optional[int]: ...

    def read(self, addr: int, size: int) -> bytes:
        """Read ``size`` bytes; raise :class:`~multiheap.errors.TargetMemoryError`."""
        ...

    def regions(self) -> list[Region]: ...

    def modules(self) -> list[Module]: ...

    def symbol(self, name: str, module: Optional[str] = None) -> Optional[int]:
        """Address of a data or code symbol, or None."""
        ...

    def type_layout(self, name: str) -> Optional[TypeLayout]:
        """Layout of ``struct name`` from debug info, or None without it."""
        ...

    def threads(self) -> list[Thread]: ...

    def thread_pointer(self, thread: Thread) -> Optional[int]:
        """fs_base on x86_64, the gs segment base on i386; None if unknown."""
        ...

    def tls_symbol(self, name: str, thread: Thread) -> Optional[int]:
        """Address of thread-local ``name`` in ``thread`` (debug info), or None."""
        ...

    def generation(self) -> int:
        """A number that changes whenever the target may have run (cache key)."""
        ...

    def evaluate(self, text: str) -> int:
        """An address argument (``ptchunk ARG``) read with the host's own look-ups, never
        running code in or writing to the target; raise on an argument it cannot read."""
        ...

    def close(self) -> None:
        """Release what the adapter opened: detach from an attached process, end a program
        or debugger it started.  A no-op for a host's own target."""
        ...


def covered_until(regions: Iterable[Region], addr: int, end: int,
                  usable: Callable[[Region], bool]) -> int:
    """How far from ``addr`` the ``usable`` regions cover [addr, end) without a gap:
    the first address not covered (``>= end`` when all of it is)."""
    pos = addr
    for r in sorted(regions, key=lambda r: r.start):
        if r.end <= pos or not usable(r):
            continue
        if r.start > pos:
            break
        pos = r.end
        if pos >= end:
            break
    return pos


# -- the one codec of a target's words --------------------------------------------------
def byte_order(endian: str) -> str:
    """struct's byte-order mark for ``"little"`` or ``"big"``."""
    return "<" if endian == "little" else ">"


@lru_cache(maxsize=None)
def word_struct(size: int, endian: str, count: int = 1) -> struct.Struct:
    """``count`` unsigned words of ``size`` bytes (1, 2, 4, 8) in ``endian`` order."""
    return struct.Struct(byte_order(endian) + {1: "B", 2: "H", 4: "I", 8: "Q"}[size] * count)

