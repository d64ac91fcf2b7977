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
    if host == "r2":
        return "~/.radare2rc", r2_aliases()
    raise ValueError(f"no frontend for {host!r} yet (known: gdb, lldb, r2)")


def r2_aliases() -> list[str]:
    """One r2 ``$alias`` per command, each running the r2 frontend through ``#!pipe``.

    r2 appends the user's text to the alias and ``#!pipe`` gives the line to
    ``/bin/sh -c``.  The leading ``'`` makes r2 run the expanded alias raw (no second
    parse of ``;``, ``|``, backticks...); ``; exit #`` makes the user's text a shell
    comment, which the frontend reads back as data (plugins/r2.py alias_arguments).
    """
    import shlex

    from multiheap.commands import COMMANDS

    py = os.path.join(venv_root(), "bin", "python")
    if not os.access(py, os.X_OK):
        py = sys.executable
    exe = shlex.quote(py)
    if exe != py:  # r2 finds the program's text by its first word: keep that word plain
        exe = f"env {exe}"
    line = "\"${name}='#!pipe {exe} -m multiheap.plugins.r2 --alias {name}; exit #\""
    return [line.format(name=name, exe=exe) for name in COMMANDS]
