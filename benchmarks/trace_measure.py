"""Tracing cost: the floor (bare counting Python breakpoints on the allocator entry
points in gdb) against a full trace (entry, result, 8-frame backtrace) in gdb and lldb,
on tests/programs/tracee.c ``many N`` (N calls: malloc+free pairs in two threads).

    .venv/bin/python benchmarks/trace_measure.py [N]     (default 20000)
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


def timed(argv: list[str], env: dict) -> float:
    t = time.monotonic()
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=3600)
    return time.monotonic() - t


def main() -> None:
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
    full = timed(["gdb", "-nx", "-batch", "-q", "-ex", f"source {PLUGIN_GDB}", "-ex",
                  "break main", "-ex", "run", "-ex",
                  f"pttrace start --backtrace 8 -o {tmp / 'gdb.jsonl'}", "-ex", "continue",
                  "--args", exe, "many", str(n)], env)
    lenv = dict(os.environ, LLDB_DEBUGSERVER_PATH="/usr/lib/llvm-16/bin/lldb-server")
    lldb = timed(["lldb-16", "-b", "-o", f"command script import {ROOT / 'plugins/lldb.py'}",
                  "-o", "b main", "-o", "run", "-o",
                  f"pttrace start --backtrace 8 -o {tmp / 'lldb.jsonl'}", "-o", "continue",
                  exe, "--", "many", str(n)], lenv)
    recs = sum(1 for _ in open(tmp / "gdb.jsonl")) - 1
    print(f"calls: {calls} (trace records: {recs}), two threads")
    print(f"gdb, no breakpoints:          {base:7.2f} s")
    print(f"floor (gdb, counting bps):    {floor:7.2f} s  "
          f"{1e6 * (floor - base) / calls:6.0f} us/call")
    print(f"full trace, gdb:              {full:7.2f} s  {1e6 * (full - base) / calls:6.0f} us/call"
          f"  = {(full - base) / max(floor - base, 1e-9):.2f}x floor")
    print(f"full trace, lldb:             {lldb:7.2f} s  {1e6 * (lldb - base) / calls:6.0f} us/call"
          f"  = {(lldb - base) / max(floor - base, 1e-9):.2f}x floor")
    print(f"trace file: {os.path.getsize(tmp / 'gdb.jsonl') / recs:.0f} bytes/record")


if __name__ == "__main__":
    main()
