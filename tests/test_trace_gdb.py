"""Tracing in gdb (the plugin) and from the CLI over gdb/MI, on tests/programs/tracee.c:
every call the program logs is in the trace with the same pointers, errors are caught
before glibc aborts, leaks are listed with their sites, pthistory, --pid detaches, and a
program that crashes or is killed leaves a valid trace and no debugger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.harness import PLUGIN_GDB, gdb_env, require
from tests.trace_common import (
    check_cli_watch_and_shell,
    check_log_in_trace,
    log_calls,
    no_debugger_left,
    run_cli,
    trace_records,
    tracee,
    workdir,
)


def _gdb(exe, args: str, cmds: list[str], env: dict) -> subprocess.CompletedProcess:
    require("gdb")
    argv = ["gdb", "-nx", "-batch", "-q", "-ex", f"source {PLUGIN_GDB}",
            "-ex", "break main", "-ex", "run"]
    for c in cmds:
        argv += ["-ex", c]
    return subprocess.run([*argv, "--args", str(exe), *args.split()], capture_output=True,
                          text=True, timeout=120, env=dict(gdb_env(), **env))


def _functions(bt: list[dict]) -> list[str]:
    return [f["function"] for f in bt if f.get("function")]


def test_cli_gdbmi_holds_every_call():
    d = workdir("mi")
    r = run_cli(["--run", f"{tracee()} normal", "-o", str(d / "t.jsonl")],
                {"TRACEE_LOG": str(d / "log")})
    assert r.returncode == 0, r.stderr
    check_log_in_trace(d / "log", d / "t.jsonl")
    recs = trace_records(d / "t.jsonl")
    assert recs[-1]["op"] == "summary" and recs[-1]["end"] == "exited 0"
    assert recs[-1]["errors"] == 0 and "518 calls" not in r.stderr
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    assert all(len(x["backtrace"]) <= 8 for x in recs[:-1])
    assert "0 errors" in r.stdout


@pytest.mark.parametrize("name, argv", [
    ("perl", "/usr/bin/perl -e 'my %h; $h{$_} = \"x\" x $_ for 1..300; delete $h{$_} for 1..100'"),
    ("python3", "/usr/bin/python3 -c 'd = {i: str(i) * i for i in range(300)}; del d'"),
])
def test_no_false_alarm_on_real_programs(name, argv):
    """Healthy real programs (thousands of calls, glibc's and the interpreter's own):
    the trace holds every call and catches no error."""
    d = workdir(f"real-{name}")
    r = run_cli(["--run", argv, "-o", str(d / "t.jsonl")], {})
    assert r.returncode == 0, r.stderr
    recs = trace_records(d / "t.jsonl")
    assert recs[-1]["op"] == "summary" and recs[-1]["end"] == "exited 0"
    assert len(recs) > 1000, len(recs)
    assert [x for x in recs if x.get("error")] == [] and recs[-1]["errors"] == 0


def test_gdb_plugin_holds_every_call_and_history():
    d = workdir("gdb")
    out = d / "t.jsonl"
    r = _gdb(tracee(), "normal", [f"pttrace start -o {out}", "continue",
                                  "pttrace status --json"], {"TRACEE_LOG": str(d / "log")})
    check_log_in_trace(d / "log", out)
    st = json.loads(r.stdout[r.stdout.index('{"command":"pttrace"'):].splitlines()[0])
    assert st["running"] is False and st["end"] == "exited 0" and st["calls"] >= 428


def test_gdb_pthistory_freed_and_reused():
    d = workdir("reuse")
    out = d / "t.jsonl"
    r = _gdb(tracee(), "reuse", [f"pttrace start -o {out}", "break do_free", "continue",
                                 "continue", "ptchunk -m p", "pthistory p --json",
                                 "delete", "continue"], {"TRACEE_LOG": str(d / "log")})
    (tid, calls), = log_calls(d / "log").items()
    a = calls[0][3]
    assert calls[2][3] == a  # the program got the same chunk back
    doc = json.loads(r.stdout[r.stdout.index('{"command":"pthistory"'):].splitlines()[0])
    events = [(e["op"], e["ptr"], e["result"]) for e in doc["records"]]
    assert events == [("malloc", None, a), ("free", a, None), ("malloc", None, a)], events
    assert "do_malloc" in _functions(doc["records"][0]["backtrace"])
    assert "traced: #" in r.stdout and "in do_malloc, still allocated" in r.stdout, r.stdout


def test_double_free_caught_before_glibc_in_gdb():
    d = workdir("double")
    out = d / "t.jsonl"
    r = _gdb(tracee(), "double", [f"pttrace start --break-on-error -o {out}", "continue",
                                  "info symbol $pc", "pttrace show --errors --json"], {})
    assert "double free" in r.stdout
    assert "SIGABRT" not in r.stdout + r.stderr  # glibc never ran: no abort
    assert "free in section .text" in r.stdout  # stopped at free's first instruction
    doc = json.loads(r.stdout[r.stdout.index('{"command":"pttrace"'):].splitlines()[0])
    err, = doc["records"]
    assert err["error"] == "double free"
    assert _functions(err["backtrace"])[:2] == ["double_free_here", "main"]
    assert _functions(err["freed_by"]["backtrace"])[0] == "do_free"


def test_cli_errors_caught_with_backtraces():
    for mode, kind, where in (("double", "double free", "double_free_here"),
                              ("invalid", "invalid free", "invalid_free_here"),
                              ("inside", "free inside a chunk", "invalid_free_here")):
        d = workdir(mode)
        r = run_cli(["--run", f"{tracee()} {mode}", "-o", str(d / "t.jsonl")], {})
        assert r.returncode == 1, (mode, r.stderr)
        recs = trace_records(d / "t.jsonl")
        errs = [x for x in recs if x.get("error")]
        assert [e["error"] for e in errs] == [kind], (mode, errs)
        assert _functions(errs[0]["backtrace"])[0] == where
        s = recs[-1]
        assert s["op"] == "summary" and s["end"] == "killed by SIGABRT", s
        # the error was written before glibc ran: it is the last call of the program
        assert recs.index(errs[0]) == len(recs) - 2
        assert kind in r.stdout
    assert errs[0]["chunk"] + 32 == errs[0]["ptr"] and errs[0]["offset"] == 32


def test_cli_leaks_grouped_by_site():
    d = workdir("leak")
    r = run_cli(["--run", f"{tracee()} leak", "-o", str(d / "t.jsonl")], {})
    assert r.returncode == 0, r.stderr
    s = trace_records(d / "t.jsonl")[-1]
    ours = [g for g in s["leaks"] if any(f in ("leak_site_one", "leak_site_two")
                                         for f in _functions(g["backtrace"]))]
    assert [(g["count"], g["bytes"], _functions(g["backtrace"])[0]) for g in ours] == [
        (1, 1000, "leak_site_two"), (3, 300, "leak_site_one")]
    assert "1000 bytes in 1 chunks from leak_site_two" in r.stdout


def test_cli_pid_detaches_and_process_keeps_running():
    d = workdir("pid")
    prog = subprocess.Popen([str(tracee()), "forever"], env=dict(
        os.environ, TRACEE_LOG=str(d / "log")))
    try:
        time.sleep(0.3)
        cli = subprocess.Popen([os.environ.get("PYTHON", ".venv/bin/python"), "-m",
                                "multiheap", "trace", "--pid", str(prog.pid), "-o",
                                str(d / "t.jsonl")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while time.time() < deadline and (not (d / "t.jsonl").exists()
                                          or (d / "t.jsonl").stat().st_size == 0):
            time.sleep(0.2)
        time.sleep(1.0)
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 0, err
        assert prog.poll() is None, "the process did not survive the trace"
        with open(f"/proc/{prog.pid}/status") as f:
            assert "TracerPid:\t0" in f.read()
        recs = trace_records(d / "t.jsonl")
        assert recs[-1]["op"] == "summary" and recs[-1]["end"] == "detached"
        assert recs[-1]["complete"] is False and "live" in recs[-1]
        assert {"malloc", "free"} <= {r["op"] for r in recs}
        n = len((d / "log").read_text().splitlines())
        time.sleep(0.3)
        assert len((d / "log").read_text().splitlines()) > n  # still running freely
    finally:
        prog.kill()
        prog.wait()
    no_debugger_left(str(prog.pid))


def test_cli_crash_and_kill_leave_valid_trace():
    for mode, end in (("crash", "killed by SIGSEGV"), ("selfkill", "killed")):
        d = workdir(mode)
        r = run_cli(["--run", f"{tracee()} {mode}", "-o", str(d / "t.jsonl")], {})
        recs = trace_records(d / "t.jsonl")  # every line is JSON
        assert recs[-1]["op"] == "summary" and recs[-1]["end"].startswith(end), recs[-1]
        assert recs[-1]["leaked_chunks"] >= 1, r.stderr
        no_debugger_left(f"{tracee()} {mode}")


def test_gdb_watch_catches_write_after_free():
    d = workdir("uaf")
    out = d / "t.jsonl"
    r = _gdb(tracee(), "uaf", [f"pttrace start --watch -o {out}", "continue"], {})
    recs = trace_records(out)
    w, = [x for x in recs if x["op"] == "write"]
    free, = [x for x in recs if x["op"] == "free"]
    assert w["error"] == "write after free" and w["ptr"] == free["ptr"]
    assert w["addr"] == free["ptr"] + 16 and w["freed_by"]["seq"] == free["seq"]
    assert _functions(w["backtrace"])[0] == "main", r.stdout


def test_cli_gdbmi_watch_and_shell_at_error():
    check_cli_watch_and_shell("gdb-mi", "cli-watch")
