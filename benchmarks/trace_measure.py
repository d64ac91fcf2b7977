"""Tracing cost: the floors (bare counting Python breakpoints on the allocator entry
points, in gdb and in lldb) against a full trace (entry, result, 8-frame backtrace) in
gdb and lldb, on tests/programs/tracee.c ``many N`` (N calls: malloc+free pairs in two
threads).  ``--memory``: the debugger's peak resident size over a full trace of N
calls, for each N given (records are streamed to the file: it must stay flat).

    .venv/bin/python benchmarks/trace_measure.py [N]     (default 20000)
    .venv/bin/python benchmarks/trace_measure.py --memory 100000 200000 500000 [--lldb]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import PLUGIN_GDB, build, gdb_env  # noqa: E402

FLOOR = r'''
import gdb
n = [0]
class B(gdb.Breakpoint):
    def stop(self):
        n[0] += 1
        return False
gdb.execute("break main"); gdb.execute("run")
for name in ("malloc", "free"):
    B(name, internal=True)
gdb.execute("continue")
print("FLOOR_HITS", n[0])
'''


LLDB_FLOOR = r'''
hits = [0]
def count(frame, bp_loc, internal_dict):
    hits[0] += 1
    return False
def __lldb_init_module(debugger, internal_dict):
    t = debugger.GetSelectedTarget()
    for name in ("malloc", "free"):
        t.BreakpointCreateByName(name, "libc.so.6").SetScriptCallbackFunction(
            __name__ + ".count")
'''
LLDB_ENV = dict(os.environ, LLDB_DEBUGSERVER_PATH="/usr/lib/llvm-16/bin/lldb-server")


def timed(argv: list[str], env: dict) -> float:
    t = time.monotonic()
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=3600)
    return time.monotonic() - t


def peak_rss(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak resident MB of the debugger) of one run."""
    t = time.monotonic()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"{argv[0]} failed ({p.returncode})")
    return time.monotonic() - t, usage.ru_maxrss / 1024


def gdb_full(exe: str, n: int, out: Path) -> list[str]:
    return ["gdb", "-nx", "-batch", "-q", "-ex", f"source {PLUGIN_GDB}", "-ex",
            "break main", "-ex", "run", "-ex", f"pttrace start --backtrace 8 -o {out}",
            "-ex", "continue", "--args", exe, "many", str(n)]


def lldb_full(exe: str, n: int, out: Path) -> list[str]:
    return ["lldb-16", "-b", "-o", f"command script import {ROOT / 'plugins/lldb.py'}",
            "-o", "b main", "-o", "run", "-o", f"pttrace start --backtrace 8 -o {out}",
            "-o", "continue", "-o", "pttrace status", exe, "--", "many", str(n)]


def memory(sizes: list[int], use_lldb: bool) -> None:
    exe = str(build("tracee"))
    tmp = Path(tempfile.mkdtemp(prefix="mh-trace-mem-"))
    name, make, env = ("lldb", lldb_full, LLDB_ENV) if use_lldb else ("gdb", gdb_full,
                                                                      gdb_env())
    for n in sizes:
        out = tmp / f"{n}.jsonl"
        wall, mb = peak_rss(make(exe, n, out), env)
        recs = sum(1 for _ in open(out))
        print(f"{name}: {n:8d} calls  {recs:8d} records  {os.path.getsize(out) / 1e6:7.1f} MB "
              f"file  peak RSS {mb:6.1f} MB  {wall:7.1f} s", flush=True)
        out.unlink()


def main() -> None:
    if sys.argv[1:2] == ["--memory"]:
        args = sys.argv[2:]
        memory([int(a) for a in args if a != "--lldb"] or [100000], "--lldb" in args)
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    exe = str(build("tracee"))
    tmp = Path(tempfile.mkdtemp(prefix="mh-trace-bench-"))
    env = gdb_env()
    calls = n  # tracee many N: N/4 malloc+free pairs in each of two threads
    base = timed(["gdb", "-nx", "-batch", "-q", "-ex", "run", "--args", exe, "many", str(n)],
                 env)
    (tmp / "floor.py").write_text(FLOOR)
    floor = timed(["gdb", "-nx", "-batch", "-q", "-x", str(tmp / "floor.py"), "--args", exe,
                   "many", str(n)], env)
    full = timed(gdb_full(exe, n, tmp / "gdb.jsonl"), env)
    lbase = timed(["lldb-16", "-b", "-o", "run", exe, "--", "many", str(n)], LLDB_ENV)
    (tmp / "lldb_floor.py").write_text(LLDB_FLOOR)
    lfloor = timed(["lldb-16", "-b", "-o", "b main", "-o", "run", "-o",
                    f"command script import {tmp / 'lldb_floor.py'}", "-o", "continue",
                    exe, "--", "many", str(n)], LLDB_ENV)
    lldb = timed(lldb_full(exe, n, tmp / "lldb.jsonl"), LLDB_ENV)
    recs = sum(1 for _ in open(tmp / "gdb.jsonl")) - 1

    def cost(t: float, b: float) -> float:
        return 1e6 * (t - b) / calls

    g, lf = cost(floor, base), cost(lfloor, lbase)
    print(f"calls: {calls} (trace records: {recs}), two threads")
    print(f"gdb, no breakpoints:          {base:7.2f} s")
    print(f"floor (gdb, counting bps):    {floor:7.2f} s  {g:6.0f} us/call")
    print(f"full trace, gdb:              {full:7.2f} s  {cost(full, base):6.0f} us/call"
          f"  = {cost(full, base) / g:.2f}x gdb floor")
    print(f"lldb, no breakpoints:         {lbase:7.2f} s")
    print(f"floor (lldb, counting bps):   {lfloor:7.2f} s  {lf:6.0f} us/call"
          f"  = {lf / g:.2f}x gdb floor")
    print(f"full trace, lldb:             {lldb:7.2f} s  {cost(lldb, lbase):6.0f} us/call"
          f"  = {cost(lldb, lbase) / g:.2f}x gdb floor, "
          f"{cost(lldb, lbase) / lf:.2f}x lldb floor")
    print(f"trace file: {os.path.getsize(tmp / 'gdb.jsonl') / recs:.0f} bytes/record")


if __name__ == "__main__":
    main()
