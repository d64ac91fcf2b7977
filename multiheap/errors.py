"""Exceptions the engine raises; every one renders as a single clear line."""

from __future__ import annotations


class MultiheapError(Exception):
    """Base class: a problem the user should read as one line, never a traceback."""


class TargetMemoryError(MultiheapError):
    """Memory at an address could not be read from the target."""

    def __init__(self, address: int, size: int, reason: str = "") -> None:
        self.address = address
        self.size = size
        msg = f"cannot read {size:#x} bytes at {address:#x}"
        if reason:
            msg += f": {reason}"
        super().__init__(msg)


class NotFoundError(MultiheapError):
    """A structure (main_arena, mp_, tcache, ...) could not be located."""


class UsageError(MultiheapError):
    """Bad arguments to a command."""


class NoTargetError(MultiheapError):
    """There is no process or core file to look at."""
