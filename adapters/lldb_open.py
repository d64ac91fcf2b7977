"""An SBDebugger of multiheap's own on a core, an attached PID or a launched program
(the CLI's ``--backend lldb``), from a checked :class:`~multiheap.startup.StartRequest`."""

from __future__ import annotations

import glob
import os
from typing import NoReturn, Optional, Sequence

from multiheap.adapters.lldb import LldbTarget, wait_until_stopped
from multiheap.adapters.lldb_import import lldb
from multiheap.errors import MultiheapError
from multiheap.progio import ProgramStdio
from multiheap.startup import StartRequest, ptrace_hint, validate


def _debugserver() -> None:
    if "LLDB_DEBUGSERVER_PATH" not in os.environ:
        for cand in sorted(glob.glob("/usr/lib/llvm-*/bin/lldb-server"), reverse=True):
            os.environ["LLDB_DEBUGSERVER_PATH"] = cand
            break


def add_debug_dirs(debugger, dirs: Sequence[str]) -> None:
    """Append ``dirs`` to ``target.debug-file-search-paths`` (before targets are made).

    lldb-16 then finds ``DIR/.build-id/xx/rest.debug`` for a module with that build-id
    (checked with another glibc's libc under /opt: main_arena and mp_ resolve).
    """
    _settings(debugger, "target.debug-file-search-paths", dirs)


def library_dirs(root: str) -> list[str]:
    """The folders of a sysroot that hold its libraries (lib, usr/lib, their multiarch
    subfolders such as lib/aarch64-linux-gnu, lib64)."""
    found = []
    for pattern in ("lib", "lib64", "lib/*-linux-*", "usr/lib", "usr/lib64",
                    "usr/lib/*-linux-*"):
        found += sorted(d for d in glob.glob(os.path.join(glob.escape(root), pattern))
                        if os.path.isdir(d))
    return found


def _settings(debugger, name: str, values: Sequence[str]) -> None:
    """Append quoted ``values`` to lldb's setting ``name`` (before targets are made)."""
    ci = debugger.GetCommandInterpreter()
    for v in values:
        ret = lldb.SBCommandReturnObject()
        quoted = '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        ci.HandleCommand(f"settings append {name} {quoted}", ret)


def open_target(request: Optional[StartRequest] = None, **options) -> LldbTarget:
    """An SBDebugger of our own on a core file, an attached PID or a launched program
    (``request``, else the options checked by multiheap.startup.validate)."""
    req = validate(request=request, **options)
    _debugserver()
    dbg = lldb.SBDebugger.Create(False)
    dbg.SetAsync(False)
    add_debug_dirs(dbg, req.debug_dirs)
    if req.sysroot:  # gdb's set sysroot: the target's libraries by name in its folders
        _settings(dbg, "target.exec-search-paths", library_dirs(req.sysroot))
    tgt = LldbTarget(dbg)

    def fail(msg: str) -> NoReturn:
        lldb.SBDebugger.Destroy(dbg)
        raise MultiheapError(msg)

    err = lldb.SBError()
    exe = req.argv[0] if req.argv else req.exe
    t = dbg.CreateTarget(exe or "", None, None, True, err)
    if not t.IsValid():
        fail(f"lldb cannot load {exe!r}: {err.GetCString() or 'invalid target'}")
    if req.core:
        p = t.LoadCore(req.core, err)
        if not p.IsValid() or err.Fail():
            fail(f"lldb cannot load core {req.core}: {err.GetCString() or 'not a core file'}")
        tgt._owned = "core"
    elif req.pid is not None:
        p = t.AttachToProcessWithID(lldb.SBListener(), req.pid, err)
        if err.Fail() or not p.IsValid():
            fail(f"cannot attach to process {req.pid}: {err.GetCString()}" + ptrace_hint())
        tgt._owned = "attach"
    else:
        _launch(dbg, t, tgt, req)
    return tgt


def _launch(dbg, t, tgt: LldbTarget, req: StartRequest) -> None:
    """Run ``req.argv`` under ``t`` until it stops (``req.brk``, a signal) or ends."""
    if req.brk:
        t.BreakpointCreateByName(req.brk)
    info = lldb.SBLaunchInfo(list(req.argv[1:]))
    stdio = ProgramStdio()  # the program's streams are the user's, not a pty of lldb's
    for fd, path in stdio.paths.items():
        info.AddOpenFileAction(fd, path, fd == 0, fd != 0)
    info.SetEnvironmentEntries(stdio.environment(), False)  # lldb passes none itself
    tgt._stdio = stdio
    dbg.SetAsync(True)  # wait in short steps, so Ctrl-C and SIGTERM are heard
    err = lldb.SBError()
    p = t.Launch(info, err)
    if err.Fail() or not p.IsValid():
        dbg.SetAsync(False)
        stdio.close()
        lldb.SBDebugger.Destroy(dbg)
        raise MultiheapError(f"lldb cannot run {req.run!r}: {err.GetCString()}")
    tgt._owned = "launch"
    try:
        wait_until_stopped(dbg, p)
    except BaseException:
        tgt.close()
        raise
    dbg.SetAsync(False)
    stdio.flush()
    if p.GetState() == lldb.eStateExited:
        status = p.GetExitStatus()
        tgt.close()
        raise MultiheapError(f"{req.argv[0]} exited (status {status}) before stopping")
