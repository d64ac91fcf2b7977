"""The CLI's ``--backend gdb-mi``: a gdb of our own on a core, a PID or a program to
run, from a checked :class:`~multiheap.startup.StartRequest`."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from typing import Optional, Sequence

from multiheap.adapters.gdbmi import GdbMiTarget
from multiheap.adapters.gdbmi_process import TIMEOUT, GdbMiError, MiProcess, mi_quote
from multiheap.progio import dup_stdio
from multiheap.startup import (
    BadInputError,
    StartRequest,
    foreign_machine,
    ptrace_hint,
    validate,
)


def _first_line(e: Exception) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def open_target(request: Optional[StartRequest] = None, gdb: str = "gdb",
                **options) -> GdbMiTarget:
    """Start gdb on a core, a PID or a program to run; return the stopped target.

    ``request`` (else the options, checked by multiheap.startup.validate) says which;
    its ``debug_dirs`` are searched for separate debug files before gdb's own default.
    """
    req = validate(request=request, **options)
    core, pid, brk, debug_dirs = req.core, req.pid, req.brk, req.debug_dirs
    exe, run_args = (req.argv[0], list(req.argv[1:])) if req.argv else (req.exe, [])
    run = req.run if req.argv else None

    if gdb == "gdb" and exe and foreign_machine(exe) and shutil.which("gdb-multiarch"):
        gdb = "gdb-multiarch"  # Debian's gdb reads no other machine's registers
    stdio = dup_stdio() if run is not None else ()
    try:
        mi = MiProcess(gdb, pass_fds=stdio)
    finally:
        for fd in stdio:  # gdb holds its own copies, for the program
            os.close(fd)
    target = GdbMiTarget(mi, "core" if core else "attach" if pid is not None else "run")
    try:
        mi.request("-gdb-set mi-async on")
        if debug_dirs:
            _add_debug_dirs(mi, debug_dirs)
        if req.sysroot:
            mi.console(f"set sysroot {req.sysroot}")  # (-gdb-set would keep the quotes)
        if core is not None:
            assert exe is not None
            _load(mi, exe)
            try:
                mi.request(f"-target-select core {_path_arg(core)}")
            except GdbMiError as e:
                raise BadInputError(f"gdb cannot open core {core}: {_first_line(e)}") from None
            target.use_core_file(core)
        elif pid is not None:
            try:
                mi.request(f"-target-attach {pid}")
            except GdbMiError as e:
                raise BadInputError(f"cannot attach to process {pid}: {_first_line(e)}"
                                    + ptrace_hint()) from None
            mi.wait_stopped(TIMEOUT)
        else:
            _load(mi, exe)  # type: ignore[arg-type]
            if brk:
                try:
                    mi.request(f"-break-insert {mi_quote(brk)}")
                except GdbMiError as e:
                    raise BadInputError(f"--break {brk}: {_first_line(e)}") from None
            # the program's stdin, stdout and stderr are ours (gdb's own are the MI pipes):
            # gdb's shell starts it with the copies gdb inherited, then closes them
            i, o, e = stdio
            args = f"<&{i} >&{o} 2>&{e} {i}<&- {o}>&- {e}>&- " \
                + " ".join(shlex.quote(a) for a in run_args)
            mi.request(f"-exec-arguments {args}")
            mi.request("-exec-run")
            stop = mi.wait_stopped(None)
            if mi.exited is not None or stop.get("reason", "").startswith("exited"):
                code = stop.get("exit-code") or (mi.exited or {}).get("exit-code") or "0"
                raise BadInputError(f"{run} exited (status {int(code, 8)}) before it "
                                    "stopped" + (f" at {brk}" if brk else ""))
        target.forbid_writes()
        return target
    except BaseException:
        target.close()
        raise




def _add_debug_dirs(mi: MiProcess, dirs: Sequence[str]) -> None:
    """Put ``dirs`` before gdb's default ``debug-file-directory`` (kept, e.g. /usr/lib/debug)."""
    shown = mi.console("show debug-file-directory")
    m = re.search(r'"(.*)"', shown)
    default = [d for d in (m.group(1) if m else "/usr/lib/debug").split(":") if d]
    path = ":".join(dict.fromkeys([*dirs, *default]))
    mi.console(f"set debug-file-directory {path}")  # (-gdb-set would keep the quotes)


def _load(mi: MiProcess, exe: str) -> None:
    try:
        mi.request(f"-file-exec-and-symbols {_path_arg(exe)}")
    except GdbMiError as e:
        raise BadInputError(f"gdb cannot load {exe}: {_first_line(e)}") from None


def _path_arg(path: str) -> str:
    path = os.path.abspath(path)
    return mi_quote(path) if any(c.isspace() or c in "\"'\\" for c in path) else path
