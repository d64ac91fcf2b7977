"""Shared checks of the tracing tests: the tracee's own log against a trace file."""

from __future__ import annotations

import json
import os
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
