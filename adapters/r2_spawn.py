"""The CLI's ``--backend r2``: an r2 of our own on a core, a PID or a program to run,
from a checked :class:`~multiheap.startup.StartRequest`."""

from __future__ import annotations

import os
import re
from typing import Optional

from multiheap.adapters.r2 import R2Error, R2Target
from multiheap.errors import NoTargetError
from multiheap.progio import ProgramStdio
from multiheap.startup import BadInputError, StartRequest, export_debug_dirs, validate


def r2_program() -> str:
    """The radare2 to run: $MULTIHEAP_R2, PATH, or the one beside this Python."""
    import shutil
    import sys

    for cand in (os.environ.get("MULTIHEAP_R2"), shutil.which("r2"),
                 os.path.join(os.path.dirname(sys.executable), "r2"),
                 "/opt/multiheap-r2/bin/r2"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise NoTargetError("radare2 is not installed (run: bash scripts/install/radare2.sh)")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that spawned it dies."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _SpawnLink:
    """An r2 of our own (``-q0``: each answer ends with a NUL), dying with us.

    r2pipe.open would do the same talking, but its r2 outlives a SIGKILLed CLI by many
    seconds; ours gets PR_SET_PDEATHSIG.  (Under ``--pid`` r2 runs with
    ``dbg.exitkills=false``: the kernel detaches the process it debugged, still running.)
    """

    def __init__(self, args: list[str], flags: list[str]) -> None:
        import subprocess

        try:
            self.proc = subprocess.Popen(
                [r2_program(), *flags, "-q0", *args], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
                preexec_fn=_die_with_parent, close_fds=True)
        except OSError as e:
            raise NoTargetError(f"cannot start radare2: {e}") from None
        self._pending = b""
        self._read_answer()  # r2 -q0 says it is ready with a first NUL

    def _read_answer(self) -> str:
        assert self.proc.stdout is not None
        # linear in the answer's size: only each new piece is searched for the NUL, and
        # the pieces are joined once (a ptlist answer is tens of MB)
        parts = [self._pending]
        piece = self._pending
        while b"\0" not in piece:
            piece = self.proc.stdout.read(1 << 16)
            if not piece:
                raise R2Error("radare2 exited")
            parts.append(piece)
        answer, _, self._pending = b"".join(parts).partition(b"\0")
        return answer.decode("utf-8", "replace")

    def cmd(self, command: str) -> str:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((command.strip().replace("\n", ";") + "\n").encode())
        except OSError:
            raise R2Error("radare2 exited") from None
        return self._read_answer()

    def quit(self) -> None:
        """Close r2's input and end it, as r2pipe does (``q!!`` can hang)."""
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait()


class SpawnedR2Target(R2Target):
    """An r2 we started; closing it ends r2 (and, under --run, the program)."""

    stdio: Optional[ProgramStdio] = None

    def close(self) -> None:
        super().close()
        link = self.link
        if isinstance(link, _SpawnLink):
            link.quit()
        if self.stdio is not None:  # what the program wrote to a spool reaches the user
            self.stdio.close()
            self.stdio = None


def open_target(request: Optional[StartRequest] = None, **options) -> R2Target:
    """Start r2 on a core, a PID or a program to run (to ``brk``); the stopped target
    (``request``, else the options checked by multiheap.startup.validate).

    r2 reads no separate debug files: ``debug_dirs`` go to multiheap's own build-id
    reader (``MULTIHEAP_DEBUG_DIRS``, which r2's ``#!pipe`` children inherit too).
    """
    req = validate(request=request, **options)
    export_debug_dirs(req.debug_dirs)
    flags = ["-N", "-e", "scr.color=0", "-e", "log.level=1"]
    if req.core is not None:
        return SpawnedR2Target(_SpawnLink([req.core], flags), core=req.core)
    if req.pid is not None:
        link = _SpawnLink([str(req.pid)], flags + ["-e", "dbg.exitkills=false", "-d"])
        t = SpawnedR2Target(link)
        try:
            live = t.state == "live"
        except BaseException:
            t.close()
            raise
        if not live:
            t.close()
            raise BadInputError(f"r2 cannot attach to process {req.pid}")
        return t
    return _run(req, flags)


def _run(req: StartRequest, flags: list[str]) -> R2Target:
    argv = list(req.argv)
    odd = next((a for a in argv if re.search(r"[\s'\"\\]", a)), None)
    if odd is not None:  # r2 6 hands such an argument on with backslashes added
        raise BadInputError(f"--backend r2 cannot pass {odd[:80]!r} to the program unchanged "
                            "(radare2 escapes blanks, quotes and backslashes in it); "
                            "use --backend gdb-mi or lldb")
    # the program's streams are the user's (r2's own stdout carries its answers to us)
    stdio = ProgramStdio()
    redirect = [x for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr"))
                for x in ("-R", f"{name}={stdio.paths[fd]}")]
    redirect += ["-R", f"envfile={stdio.environment_file()}"]  # r2 -d passes none itself
    try:
        link = _SpawnLink(argv, flags + redirect + ["-d"])  # r2 -d PROG ARGS...
    except BaseException:
        stdio.close()
        raise
    t = SpawnedR2Target(link)
    t.stdio = stdio
    try:  # t.cmd: r2's failures become one R2Error line
        brk = req.brk
        if brk:
            spot = brk if brk.startswith(("0x", "sym.")) or brk.isdigit() else f"sym.{brk}"
            t.cmd(f"db {spot}")
        t.cmd("dc")
        stdio.flush()
        t._cache.clear()
        if t.state != "live":
            raise BadInputError(f"{argv[0]} exited before stopping")
    except BaseException:
        t.close()  # r2 and the program it started must not outlive us
        raise
    return t
