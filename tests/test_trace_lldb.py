"""Tracing in lldb (the plugin inside lldb-16) and from the CLI with --backend lldb, on
tests/programs/tracee.c: every logged call in the trace with the same pointers, a double
free caught before glibc aborts with its backtrace, leaks by site, and a crash leaving a
valid trace and no debugger."""

from __future__ import annotations

import os
import subprocess

from tests.harness import ROOT, require
from tests.trace_common import (
    check_cli_watch_and_shell,
    check_log_in_trace,
    no_debugger_left,
    run_cli,
    trace_records,
    tracee,
    workdir,
)

SERVER = "/usr/lib/llvm-16/bin/lldb-server"


def _lldb(args: str, cmds: list[str], env: dict) -> subprocess.CompletedProcess:
    require("lldb-16")
    argv = ["lldb-16", "-b", "-o", f"command script import {ROOT / 'plugins' / 'lldb.py'}",
            "-o", "b main", "-o", "run"]
    for c in cmds:
        argv += ["-o", c]
    return subprocess.run([*argv, str(tracee()), "--", *args.split()], capture_output=True,
                          text=True, timeout=120,
                          env=dict(os.environ, LLDB_DEBUGSERVER_PATH=SERVER, **env))


def _functions(bt: list[dict]) -> list[str]:
    return [f["function"] for f in bt if f.get("function")]


def test_lldb_plugin_holds_every_call():
    d = workdir("lldb")
    r = _lldb("normal", [f"pttrace start -o {d / 't.jsonl'}", "continue", "pttrace status"],
              {"TRACEE_LOG": str(d / "log")})
    check_log_in_trace(d / "log", d / "t.jsonl")
    assert "trace ended (exited 0)" in r.stdout, r.stdout[-2000:]
    assert trace_records(d / "t.jsonl")[-1]["end"] == "exited 0"


def test_lldb_break_on_error_stops_before_glibc():
    d = workdir("lldb-double")
    r = _lldb("double", [f"pttrace start --break-on-error -o {d / 't.jsonl'}", "continue",
                         "bt 3", "pttrace show --errors"], {})
    assert "double free" in r.stdout
    assert "SIGABRT" not in r.stdout
    bt = r.stdout[r.stdout.index("bt 3"):]
    assert "free" in bt.splitlines()[2] and "double_free_here" in bt, bt[:800]


def test_cli_lldb_every_call_errors_and_leaks():
    d = workdir("cli-lldb")
    r = run_cli(["--backend", "lldb", "--run", f"{tracee()} normal", "-o",
                 str(d / "t.jsonl")], {"TRACEE_LOG": str(d / "log")})
    assert r.returncode == 0, r.stderr
    check_log_in_trace(d / "log", d / "t.jsonl")
    r = run_cli(["--backend", "lldb", "--run", f"{tracee()} double", "-o",
                 str(d / "d.jsonl")], {})
    assert r.returncode == 1, r.stderr
    recs = trace_records(d / "d.jsonl")
    err, = [x for x in recs if x.get("error")]
    assert err["error"] == "double free" and recs.index(err) == len(recs) - 2
    assert _functions(err["backtrace"])[:2] == ["double_free_here", "main"]
    assert _functions(err["freed_by"]["backtrace"])[0] == "do_free"
    assert recs[-1]["end"] == "killed by SIGABRT", recs[-1]
    r = run_cli(["--backend", "lldb", "--run", f"{tracee()} leak", "-o",
                 str(d / "l.jsonl")], {})
    leaks = trace_records(d / "l.jsonl")[-1]["leaks"]
    ours = [(g["count"], g["bytes"], _functions(g["backtrace"])[0]) for g in leaks
            if _functions(g["backtrace"])[:1] in (["leak_site_one"], ["leak_site_two"])]
    assert ours == [(1, 1000, "leak_site_two"), (3, 300, "leak_site_one")], leaks
    r = run_cli(["--backend", "lldb", "--run", f"{tracee()} crash", "-o",
                 str(d / "c.jsonl")], {})
    recs = trace_records(d / "c.jsonl")
    assert recs[-1]["op"] == "summary" and "SIGSEGV" in recs[-1]["end"], recs[-1]
    no_debugger_left(f"{tracee()} crash")


def test_lldb_watch_catches_write_after_free():
    d = workdir("lldb-uaf")
    out = d / "t.jsonl"
    r = _lldb("uaf", [f"pttrace start --watch -o {out}", "continue", "pttrace status"], {})
    assert "watching 4 freed chunks" in r.stdout, r.stdout[-2000:]
    recs = trace_records(out)
    w, = [x for x in recs if x["op"] == "write"]
    free, = [x for x in recs if x["op"] == "free"]
    assert w["error"] == "write after free" and w["ptr"] == free["ptr"]
    assert w["addr"] == free["ptr"] + 16 and w["freed_by"]["seq"] == free["seq"]
    assert _functions(w["backtrace"])[0] == "main", r.stdout[-2000:]
    assert "write after free at" in r.stdout
    assert recs[-1]["end"] == "exited 0", recs[-1]  # the program went on to its end
    assert "watched: []" in r.stdout  # none left once the trace ended


def test_cli_lldb_watch_and_shell_at_error():
    check_cli_watch_and_shell("lldb", "cli-lldb-watch")
