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
from multiheap.commands import COMMANDS, run_command  # noqa: E402
from multiheap.session import Session  # noqa: E402


def _evaluate(expr: str) -> int:
    """An address argument, as gdb evaluates it, without ever calling target code."""
    before = gdb.parameter("may-call-functions")
    gdb.execute("set may-call-functions off", to_string=True)
    try:
        v = gdb.parse_and_eval(expr)
    finally:
        gdb.execute(f"set may-call-functions {'on' if before else 'off'}", to_string=True)
    if v.type.strip_typedefs().code == gdb.TYPE_CODE_ARRAY:
        v = v.address
    return int(v) & ((1 << (8 * v.type.sizeof)) - 1) if v.type.sizeof in (4, 8) else int(v)


def _color() -> bool:
    try:
        return bool(gdb.parameter("style enabled"))
    except (gdb.error, RuntimeError):
        return False


SESSION = Session(GdbTarget(), _evaluate)


def _make(name: str):
    cmd = COMMANDS[name]

    def invoke(self, arg: str, from_tty: bool) -> None:
        res = run_command(SESSION, name, arg, color=_color(), sink=gdb.write)
        if res.error:
            raise gdb.GdbError(res.error)
        if res.output:
            gdb.write(res.output)

    doc = cmd.summary + "\n\n" + cmd.parser.format_help()
    cls = type(f"Gdb_{name}", (gdb.Command,), {"__doc__": doc, "invoke": invoke})
    return cls(name, gdb.COMMAND_DATA)


def register() -> None:
    for name in COMMANDS:
        _make(name)
    connect_events()


if not getattr(sys.modules.get("multiheap"), "_gdb_registered", False):
    register()
    sys.modules["multiheap"]._gdb_registered = True  # type: ignore[attr-defined]
