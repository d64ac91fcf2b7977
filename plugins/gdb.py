"""gdb frontend: ``source /path/to/plugins/gdb.py`` registers every pt* command.

gdb embeds the system Python; this file puts multiheap's virtualenv on ``sys.path``
first (``MULTIHEAP_VENV``, else the ``.venv`` beside this checkout), so it works even
when ``.venv`` was made by another Python 3 of the same minor version.
"""

from __future__ import annotations

import glob
import os
import site
import sys


def _add_venv() -> None:
    here = os.path.dirname(os.path.abspath(globals().get("__file__", "") or "."))
    candidates = [os.environ.get("MULTIHEAP_VENV", ""), os.path.join(here, "..", ".venv")]
    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for venv in candidates:
        if not venv:
            continue
        for sp in glob.glob(os.path.join(venv, "lib", ver, "site-packages")):
            if sp not in sys.path:
                site.addsitedir(sp)
    repo = os.path.normpath(os.path.join(here, ".."))
    if os.path.isfile(os.path.join(repo, "multiheap", "__init__.py")) and repo not in sys.path:
        sys.path.append(repo)  # a checkout used without installing


try:
    import multiheap  # noqa: F401
except ImportError:
    _add_venv()

import gdb  # type: ignore[import-not-found]  # noqa: E402

from multiheap.adapters.gdb import GdbTarget, connect_events  # noqa: E402
from multiheap.adapters.gdb_trace import GdbTracer  # noqa: E402
from multiheap.commands import COMMANDS, run_command  # noqa: E402
from multiheap.session import Session  # noqa: E402


def _color() -> bool:
    """Colour as gdb's own commands have it: on a terminal with styling on, never with
    NO_COLOR, in batch mode (styling off), under ``set logging`` or through ``pipe``."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        if not gdb.parameter("style enabled") or gdb.parameter("logging enabled"):
            return False
    except (gdb.error, RuntimeError):
        return False
    return os.isatty(1) and not _piped()


def _piped() -> bool:
    """Inside gdb's ``pipe`` command: a child of gdb (the shell) reads a pipe gdb holds.
    (gdb 13's Python cannot ask the current output stream whether it is a terminal.)"""
    try:
        mine = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                mine.add(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                continue
        kids: list[str] = []
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                kids += f.read().split()
        for kid in kids:
            try:
                stdin = os.readlink(f"/proc/{kid}/fd/0")
            except OSError:
                continue
            if stdin.startswith("pipe:") and stdin in mine:
                return True
    except OSError:
        return False
    return False


_TARGET = GdbTarget()
SESSION = Session(_TARGET, _TARGET.evaluate)
SESSION.tracer = GdbTracer()  # type: ignore[attr-defined]  # pttrace, pthistory


def _make(name: str):
    cmd = COMMANDS[name]

    def invoke(self, arg: str, from_tty: bool) -> None:
        res = run_command(SESSION, name, arg, color=_color(), sink=gdb.write)
        if res.output:  # with --json, an error's one JSON document too
            gdb.write(res.output)
        if res.error:
            raise gdb.GdbError(res.error)

    def complete(self, text: str, word: str):
        """Options from the command's parser (``--js`` -> ``--json``); anything else
        completes as gdb's own expressions do (``kee`` -> ``keep``)."""
        token = "" if not text or text[-1].isspace() else text.split()[-1]
        if token.startswith("-"):  # gdb's word may start after the dashes: "--j" -> "j"
            cut = len(token) - len(word or "")
            return sorted(o[cut:] for a in cmd.parser._actions for o in a.option_strings
                          if o.startswith(token))
        return gdb.COMPLETE_EXPRESSION

    doc = cmd.summary + "\n\n" + cmd.parser.format_help()
    cls = type(f"Gdb_{name}", (gdb.Command,), {"__doc__": doc, "invoke": invoke,
                                               "complete": complete})
    return cls(name, gdb.COMMAND_DATA)


def register() -> None:
    for name in COMMANDS:
        _make(name)
    connect_events()


if not getattr(sys.modules.get("multiheap"), "_gdb_registered", False):
    register()
    sys.modules["multiheap"]._gdb_registered = True  # type: ignore[attr-defined]
