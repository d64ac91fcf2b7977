"""Shared checks of the tracing tests: the tracee's own log against a trace file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.harness import BUILD_DIR, ROOT, VENV, build

ALIASES = {"aligned_alloc": "memalign"}  # one entry point in glibc 2.36


def tracee() -> Path:
    return build("tracee")


def log_calls(path: Path) -> dict[int, list[tuple]]:
    """The tracee's log: per thread, (op, size, ptr, result) in call order."""
    out: dict[int, list[tuple]] = {}
    for line in path.read_text().splitlines():
        tid, op, size, ptr, res = line.split()
        out.setdefault(int(tid, 16), []).append(
            (ALIASES.get(op, op), int(size, 16), int(ptr, 16), int(res, 16)))
    return out


def trace_records(path: Path) -> list[dict]:
    """Every line of a trace file, each one JSON (fails on a torn or bad line)."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_log_in_trace(log: Path, trace: Path) -> None:
    """Every call the program logged is in the trace, in order per thread, with the
    same op, size and pointers."""
    calls = log_calls(log)
    assert sum(len(v) for v in calls.values()) >= 400, "the tracee did not run"
    per_tid: dict[int, list[tuple]] = {}
    for r in trace_records(trace):
        if r["op"] in ("summary", "write") or r.get("depth"):
            continue
        per_tid.setdefault(r["tid"], []).append(
            (ALIASES.get(r["op"], r["op"]), r["size"] if r["op"] != "free" else 0,
             r["ptr"] or 0, r["result"] or 0))
    assert len(calls) == 2
    for tid, want in calls.items():
        got = iter(per_tid.get(tid, []))
        for i, call in enumerate(want):
            assert any(call == g for g in got), f"thread {tid}: call {i} {call} missing " \
                "(or out of order) in the trace"


def run_cli(args: list[str], env_extra: dict[str, str], timeout: float = 120,
            **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    return subprocess.run([str(VENV / "bin" / "python"), "-m", "multiheap", "trace", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


def shell_at_error(args: list[str], trace: Path) -> str:
    """``multiheap trace ARGS --break-on-error`` on a terminal (a pty): it must stop at
    the program's error and open multiheap's shell there.  In the shell, ``ptchunk``
    of the erroneous pointer; Ctrl-D ends.  Returns the whole session's text."""
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on the terminal
        try:
            os.chdir(ROOT)
            py = str(VENV / "bin" / "python")
            os.execve(py, [py, "-m", "multiheap", "trace", "--break-on-error", *args],
                      dict(os.environ, TERM="dumb"))
        finally:
            os._exit(127)
    out, seen = "", 0

    def read_until(marker: str, timeout: float = 60) -> None:
        """Until ``marker`` shows in what came since the last marker."""
        nonlocal out, seen
        deadline = time.monotonic() + timeout
        while marker not in out[seen:]:
            assert time.monotonic() < deadline, f"waited for {marker!r}: {out[-1500:]!r}"
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    out += os.read(fd, 65536).decode(errors="replace")
                except OSError:  # the other side closed
                    raise AssertionError(f"the CLI ended: {out[-1500:]!r}") from None
        seen = out.index(marker, seen) + len(marker)

    try:
        read_until("multiheap> ")
        err, = [r for r in trace_records(trace) if r.get("error")]  # on disk already
        os.write(fd, f"ptchunk -m {err['ptr']:#x} --json\n".encode())
        read_until('"command":"ptchunk"')
        read_until("multiheap> ")
        os.write(fd, b"\x04")  # Ctrl-D leaves the shell; the trace and program end
        read_until("trace: ")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1, out[-1500:]
    finally:
        os.close(fd)
        if pid:  # a failed check: the CLI ends its debugger on SIGTERM
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
    return out


def check_cli_watch_and_shell(backend: str, name: str) -> None:
    """The CLI's --watch reports the write after free; --break-on-error on a terminal opens
    multiheap's shell at the error (the chunk is still in the tcache: glibc has not run),
    and without a terminal prints the error and ends."""
    d = workdir(name)
    r = run_cli(["--backend", backend, "--watch", "--run", f"{tracee()} uaf", "-o",
                 str(d / "w.jsonl")], {}, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stderr
    recs = trace_records(d / "w.jsonl")
    w, = [x for x in recs if x["op"] == "write"]
    free, = [x for x in recs if x["op"] == "free"]
    assert w["addr"] == free["ptr"] + 16 and w["freed_by"]["seq"] == free["seq"]
    assert w["backtrace"][0]["function"] == "main"
    assert "write after free" in r.stdout and recs[-1]["end"] == "exited 0", recs[-1]

    out = shell_at_error(["--backend", backend, "--run", f"{tracee()} double", "-o",
                          str(d / "s.jsonl")], d / "s.jsonl")
    assert "stopped at #" in out and "double free" in out
    doc = json.loads(next(x for x in out.splitlines() if x.startswith('{"command"')))
    assert doc["chunks"][0]["state"] == "tcache", doc
    assert trace_records(d / "s.jsonl")[-1]["end"] == "stopped at an error"

    r = run_cli(["--backend", backend, "--break-on-error", "--run", f"{tracee()} double",
                 "-o", str(d / "n.jsonl")], {}, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "stopped at #" in r.stderr, r.stderr
    assert "multiheap> " not in r.stdout + r.stderr
    assert trace_records(d / "n.jsonl")[-1]["end"] == "stopped at an error"
    no_debugger_left(f"{tracee()} double")


def workdir(name: str) -> Path:
    d = BUILD_DIR / f"trace-{name}-{os.getpid()}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def no_debugger_left(marker: str) -> None:
    """No gdb or lldb process whose command line names ``marker`` is still running."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    left = [ln for ln in out.splitlines() if marker in ln and ("gdb" in ln or "lldb" in ln)
            and "ps -eo" not in ln]
    assert not left, left


__all__ = ["sys"]
