"""Where the host plugins live and what each debugger needs to load them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent.parent / "plugins"


def plugin_file(host: str) -> Path:
    """The file a debugger loads (``plugins/<host>.py``), from the install or checkout."""
    import multiheap.plugins as plugins

    return Path(plugins.__file__).resolve().parent / f"{host}.py"


def venv_root() -> str:
    """The virtualenv multiheap runs from (for hosts that embed another Python)."""
    return os.environ.get("VIRTUAL_ENV") or sys.prefix


def init_lines(host: str) -> tuple[str, list[str]]:
    """(rc file, lines to put in it) that load multiheap in ``host``."""
    plugin = plugin_file(host)
    venv = venv_root()
    if host == "gdb":
        return "~/.gdbinit", [
            f"python import os; os.environ.setdefault('MULTIHEAP_VENV', {venv!r})",
            f"source {plugin}",
        ]
    if host == "lldb":
        return "~/.lldbinit", [
            f"script import os; os.environ.setdefault('MULTIHEAP_VENV', {venv!r})",
            f"command script import {plugin}",
        ]
    raise ValueError(f"no frontend for {host!r} yet (known: gdb, lldb)")
