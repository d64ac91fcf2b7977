"""The command set, each command defined once (parser + run function)."""

from __future__ import annotations

from multiheap.commands import (  # noqa: F401  (each module registers its commands)
    arena,
    bins,
    check,
    chunk,
    config,
    help,
    list,
    map,
    meta,
    stats,
    trace,
    vis,
)
from multiheap.commands.base import COMMANDS, Command, Result, run_command

__all__ = ["COMMANDS", "Command", "Result", "run_command"]
