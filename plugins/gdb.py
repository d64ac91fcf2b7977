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
from contextlib import contextmanager
from typing import Iterator


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
from multiheap.adapters.gdbtext import guard_refusal, write_operator, write_refusal  # noqa: E402
from multiheap.commands import COMMANDS, run_command  # noqa: E402
from multiheap.errors import UsageError  # noqa: E402
from multiheap.session import Session  # noqa: E402

# gdb's own guards, off while an address argument is evaluated.  gdb 13 will not change
# may-write-registers while a process is live ("Cannot change this setting while the
# inferior is running"): there, assignments are refused before gdb sees them
# (gdbtext.write_operator), which covers registers and register-held locals too.
_GUARDS = ("may-call-functions", "may-write-memory", "may-write-registers")


@contextmanager
def _read_only() -> Iterator[None]:
    """gdb refuses calls and writes inside; each setting is restored afterwards, also on
    an error or Ctrl-C (a setting the user already turned off is left alone, so observer
    mode stays as it was)."""
    turned_off: list[str] = []
    try:
        for name in _GUARDS:
            if gdb.parameter(name):
                turned_off.append(name)
                try:
                    gdb.execute(f"set {name} off", to_string=True)
                except gdb.error:  # may-write-registers on a live process (gdb 13)
                    turned_off.pop()
        yield
    finally:
        for name in reversed(turned_off):
            gdb.execute(f"set {name} on", to_string=True)


def _evaluate(expr: str) -> int:
    """An address argument, as gdb evaluates it, never writing to the target nor calling
    its code.  The value keeps its sign: the engine reads a negative one as two's
    complement at the pointer size, as in every host (``ptchunk -1`` is all ones), where
    masking to the C type's size would make it 0xffffffff."""
    op = write_operator(expr)
    if op is not None:
        raise UsageError(write_refusal(expr))
    with _read_only():
        try:
            v = gdb.parse_and_eval(expr)
            if v.type.strip_typedefs().code in (gdb.TYPE_CODE_ARRAY, gdb.TYPE_CODE_FUNC):
                v = v.address
            return int(v)
        except gdb.error as e:
            refusal = guard_refusal(expr, str(e))
            if refusal:
                raise UsageError(refusal) from None
            raise


def _color() -> bool:
    try:
        return bool(gdb.parameter("style enabled"))
    except (gdb.error, RuntimeError):
        return False


SESSION = Session(GdbTarget(), _evaluate)
SESSION.tracer = GdbTracer()  # type: ignore[attr-defined]  # pttrace, pthistory


def _make(name: str):
    cmd = COMMANDS[name]

    def invoke(self, arg: str, from_tty: bool) -> None:
        res = run_command(SESSION, name, arg, color=_color(), sink=gdb.write)
        if res.output:  # with --json, an error's one JSON document too
            gdb.write(res.output)
        if res.error:
            raise gdb.GdbError(res.error)

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
