"""One gdb in MI mode (``--interpreter=mi3``) and a token-matched request loop over its
pipes: requests return as soon as the matching ``^done``/``^error`` record arrives
(pygdbmi's ``GdbController.write()`` waits out its timeout instead).  gdb runs in its
own session (the terminal's Ctrl-C reaches only us) and dies with us."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from typing import Optional

from pygdbmi.gdbmiparser import parse_response

from multiheap.errors import MultiheapError
from multiheap.startup import BadInputError

TIMEOUT = 120.0


class GdbMiError(MultiheapError):
    """gdb answered a request with ``^error``."""


class GdbDied(MultiheapError):
    """The gdb subprocess exited or stopped answering."""


def mi_quote(text: str) -> str:
    """A C string literal, as MI wants for arguments with spaces or quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class MiProcess:
    """One gdb in MI mode and a token-matched request loop over its pipes."""

    def __init__(self, gdb: str = "gdb", init: tuple[str, ...] = (),
                 pass_fds: tuple[int, ...] = ()) -> None:
        path = shutil.which(gdb)
        if path is None:
            raise BadInputError(f"{gdb} is not installed (run scripts/setup.sh, or "
                                "apt-get install gdb)")
        args = [path, "--interpreter=mi3", "-nx", "-q"]
        for c in ("set debuginfod enabled off", "set pagination off", "set width 0",
                  "set may-call-functions off",  # expressions never run target code
                  "set confirm off", "set style enabled off", *init):
            args += ["-iex", c]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent, pass_fds=pass_fds)
        self._fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self._buf = bytearray()
        self._token = 0
        self._pending: list[int] = []  # tokens whose answer an interrupt left unread
        self.stopped: Optional[dict] = None  # the last *stopped record
        self.exited: Optional[dict] = None  # =thread-group-exited, when the program ended

    # raw lines --------------------------------------------------------------------
    def _line(self, deadline: Optional[float]) -> str:
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[:i + 1]
                return line.decode("utf-8", "replace").rstrip("\r")
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], wait)
            if not ready:
                raise GdbDied("gdb did not answer in time")
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                raise GdbDied("gdb exited unexpectedly")
            self._buf += chunk

    def _note(self, line: str) -> None:
        """Remember the asynchronous records the adapter cares about."""
        if line.startswith("*stopped"):
            self.stopped = parse_response(line).get("payload") or {}
        elif line.startswith("=thread-group-exited"):
            self.exited = parse_response(line).get("payload") or {}

    # requests ---------------------------------------------------------------------
    def send(self, command: str) -> int:
        self._token += 1
        try:
            self.proc.stdin.write(f"{self._token}{command}\n".encode())  # type: ignore
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            raise GdbDied("gdb exited unexpectedly") from None
        return self._token

    def _finish_pending(self, timeout: float) -> None:
        """Read the answers of requests an interrupt abandoned (their errors too)."""
        while self._pending:
            try:
                self.wait_result(self._pending[0], timeout)
            except GdbMiError:
                pass

    def wait_result(self, token: int, timeout: Optional[float] = TIMEOUT,
                    raw: bool = False) -> tuple[dict, list[str]]:
        """Read until the result record of ``token``: (payload, console lines).

        With ``raw``, the payload is ``{"line": the unparsed record}``.
        """
        prefix = f"{token}^"
        deadline = None if timeout is None else time.monotonic() + timeout
        console: list[str] = []
        if token not in self._pending:
            self._pending.append(token)
        while True:
            line = self._line(deadline)
            if line.startswith(prefix):
                self._pending.remove(token)
                if line.startswith("error", len(prefix)):
                    msg = (parse_response(line).get("payload") or {}).get("msg", "error")
                    raise GdbMiError(msg.strip())
                if raw:
                    return {"line": line}, console
                return parse_response(line).get("payload") or {}, console
            if line.startswith('~"'):
                console.append(parse_response(line)["payload"] or "")
            elif line.startswith(("*", "=")):
                self._note(line)

    def request(self, command: str, timeout: Optional[float] = TIMEOUT
                ) -> tuple[dict, list[str]]:
        """Send one MI command and return (payload, console lines) of its answer."""
        self._finish_pending(timeout or TIMEOUT)
        return self.wait_result(self.send(command), timeout)

    def console(self, command: str, timeout: Optional[float] = TIMEOUT) -> str:
        """Run a CLI command and return what it printed."""
        _, lines = self.request(f"-interpreter-exec console {mi_quote(command)}", timeout)
        return "".join(lines)

    def wait_stopped(self, timeout: Optional[float] = None) -> dict:
        """Block until the program stops (``*stopped``) or exits."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.stopped = None
        while self.stopped is None and self.exited is None:
            line = self._line(deadline)
            if line.startswith(("*", "=")):
                self._note(line)
        return self.stopped or {}

    # ending -----------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, grace: float = 3.0) -> None:
        """End gdb: ask politely, then SIGTERM (gdb detaches or kills), then SIGKILL."""
        if self.alive():
            try:
                self.send("-gdb-exit")
                self.proc.wait(grace)
            except (GdbDied, subprocess.TimeoutExpired):
                pass
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if not self.alive():
                break
            try:
                self.proc.send_signal(sig)
                self.proc.wait(wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass
