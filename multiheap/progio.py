"""The standard streams and environment of a program the CLI starts (``--run``): the
user's own.

A debugger that launches the program through a server of its own (lldb-server,
radare2's rarun2 directives) opens each stream by path, so this module names ours:
``/proc/OURPID/fd/N`` for a terminal, a pipe or a device (opened again, it is the same
terminal or pipe).  A regular file or a socket cannot be shared that way (a second
open has its own offset, a socket cannot be opened), so the program writes to a
private spool file instead, copied to our stream when the program stops and at the end.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import tempfile
from typing import Optional

from multiheap.elffile import BadInputError


def program_argv(run: str) -> list[str]:
    """``--run 'PROG ARGS'`` split as a shell would quote it (nothing is run by a shell),
    PROG found on PATH when it has no slash, as [absolute path, args...]."""
    try:
        argv = shlex.split(run)
    except ValueError as e:
        raise BadInputError(f"--run: {e}") from None
    if not argv:
        raise BadInputError("--run needs a program")
    prog = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
    if not prog or not os.path.isfile(prog):
        raise BadInputError(f"program {argv[0][:80]!r} not found")
    return [os.path.abspath(prog), *argv[1:]]


def dup_stdio() -> tuple[int, int, int]:
    """Copies of our stdin, stdout and stderr (/dev/null for one that is closed), for a
    debugger that inherits them to hand to the program it starts (gdb)."""
    out = []
    for fd in (0, 1, 2):
        try:
            out.append(os.dup(fd))
        except OSError:
            out.append(os.open(os.devnull, os.O_RDWR))
    return out[0], out[1], out[2]


class ProgramStdio:
    """Paths for the program's fds 0, 1 and 2, and the spools to copy back."""

    def __init__(self) -> None:
        self.paths: dict[int, str] = {}
        self._spools: dict[int, str] = {}
        self._copied: dict[int, int] = {}
        self._dir: Optional[str] = None
        for fd in (0, 1, 2):
            self.paths[fd] = self._path_for(fd)

    def _path_for(self, fd: int) -> str:
        try:
            mode = os.fstat(fd).st_mode
        except OSError:  # closed: as a shell would, nothing there
            return os.devnull
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or (fd == 0 and stat.S_ISREG(mode)):
            return f"/proc/{os.getpid()}/fd/{fd}"
        if fd == 0:
            return os.devnull
        path = os.path.join(self._private_dir(), f"fd{fd}")
        open(path, "wb").close()
        self._spools[fd] = path
        self._copied[fd] = 0
        return path

    def _private_dir(self) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="multiheap-run-")  # 0700
        return self._dir

    @staticmethod
    def environment() -> list[str]:
        """Our environment as ``KEY=VALUE`` entries (what a shell would pass on)."""
        return [f"{k}={v}" for k, v in os.environ.items()]

    def environment_file(self) -> str:
        """Our environment as a ``KEY=VALUE`` file (radare2's ``envfile=``), in a private
        directory; a value holding a newline cannot be written so and is left out."""
        path = os.path.join(self._private_dir(), "environ")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(e + "\n" for e in self.environment() if "\n" not in e)
        return path

    def flush(self) -> None:
        """Copy what the program wrote to a spool since the last flush to our stream."""
        for fd, path in self._spools.items():
            try:
                with open(path, "rb") as f:
                    f.seek(self._copied[fd])
                    data = f.read()
            except OSError:
                continue
            self._copied[fd] += len(data)
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(fd, view):]
                except OSError:
                    break

    def close(self) -> None:
        """Flush and remove the spools."""
        self.flush()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._spools.clear()
