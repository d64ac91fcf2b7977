"""Extension points (pluggy hookspecs): how adapters join multiheap.

Built-in adapters are plugins like any other; third parties add theirs through the
``multiheap.adapters`` entry-point group, with no change to the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import pluggy

PROJECT = "multiheap"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class AdapterInfo:
    """An adapter: its name, what it talks to, and how to make a Target with it.

    ``open`` takes keyword options (``core=``, ``exe=``, ``pid=``, ``run=``...) for
    adapters that start their debugger; in-host adapters (gdb's Python API) take none.
    """

    name: str
    description: str
    open: Callable[..., object]
    host: Optional[str] = None  # the debugger it runs inside; "python": a script's image


@hookspec
def multiheap_adapters() -> list[AdapterInfo]:  # type: ignore[empty-body]
    """Return the adapters this plugin provides."""
