"""How multiheap scales: heap size x host x command, seconds and peak extra memory.

    .venv/bin/python benchmarks/scale.py [--sizes 100000,1000000,10000000]
        [--hosts gdb,gdb-mi,lldb] [--commands ...] [--repeat 1]

benchmarks/bigheap.c with N chunks (every third freed), stopped in checkpoint().  Each
measurement runs cold: a fresh debugger (and multiheap) per command.  ``floor`` is gdb
reading the whole main heap at once and walking its size fields in bare Python.
``peak MB`` is the peak RSS of the process running multiheap (gdb; the CLI's Python for
gdb-mi, whose gdb only serves reads; lldb's Python) over its RSS just before the
command (/proc/self/clear_refs resets the peak).  Output to /dev/null.  Targets
(issue 15): peak extra <= 256 MB at every size; ptstats <= 3x, ptlist <= 8x the floor;
other hosts within 2x gdb's time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import build_bigheap  # noqa: E402
from run import gdb_once  # noqa: E402

COMMANDS = ["ptstats", "ptlist", "ptlist --json", "ptcheck --json"]


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _measure(run) -> dict:
    _reset_peak()
    rss0 = _status("VmRSS")
    t0 = time.perf_counter()
    run()
    return {"seconds": time.perf_counter() - t0, "peak_extra": _status("VmHWM") - rss0}


def cli_inner(what: str, exe: str, chunks: int) -> None:
    """The CLI's engine on the gdb/MI backend, in this process (the venv's Python)."""
    from multiheap.cli import _backend
    from multiheap.commands import run_command
    from multiheap.session import Session
    from multiheap.startup import validate

    target = _backend("gdb-mi").open(request=validate(run=f"{exe} {chunks}",
                                                     brk="checkpoint"))
    session = Session(target, target.evaluate)
    name, *argv = what.split()
    with open(os.devnull, "w") as null:
        box = {}
        r = _measure(lambda: box.setdefault("res", run_command(session, name, argv,
                                                               sink=null.write)))
    if box["res"].error:
        raise SystemExit(box["res"].error)
    target.close()
    print("MH_RESULT " + json.dumps(r), flush=True)


def lldb_inner(what: str, exe: str, chunks: int) -> None:
    """multiheap's command in lldb's interpreter (lldb's Python, /usr/bin/python3)."""
    import lldb  # type: ignore[import-not-found]

    dbg = lldb.SBDebugger.Create(False)
    dbg.SetAsync(False)
    null = open(os.devnull, "w")  # where a long output streams (lldb's output file)
    dbg.SetOutputFile(lldb.SBFile.Create(null, borrow=True))
    ci = dbg.GetCommandInterpreter()
    res = lldb.SBCommandReturnObject()
    plugin = os.environ.get("MH_LLDB_PLUGIN") or ROOT / "plugins" / "lldb.py"
    ci.HandleCommand(f"command script import {plugin}", res)
    t = dbg.CreateTarget(exe)
    t.BreakpointCreateByName("checkpoint")
    p = t.Launch(lldb.SBLaunchInfo([str(chunks)]), lldb.SBError())
    out = lldb.SBCommandReturnObject()
    r = _measure(lambda: ci.HandleCommand(what, out))
    if not out.Succeeded():
        raise SystemExit(out.GetError())
    p.Kill()
    print("MH_RESULT " + json.dumps(r), flush=True)
    os._exit(0)


def host_once(host: str, exe: Path, chunks: int, what: str) -> dict:
    if host == "gdb":
        return gdb_once(exe, chunks, what)
    if host == "gdb-mi":
        argv, env = [sys.executable, __file__, "--inner", "cli", what, str(exe), str(chunks)], \
            dict(os.environ)
    else:
        lldb_py = subprocess.run(["lldb-16", "-P"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        argv = ["/usr/bin/python3", __file__, "--inner", "lldb", what, str(exe), str(chunks)]
        env = dict(os.environ, PYTHONPATH=lldb_py, MULTIHEAP_VENV=sys.prefix,
                   LLDB_DEBUGSERVER_PATH="/usr/lib/llvm-16/bin/lldb-server")
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    for line in p.stdout.splitlines():
        if line.startswith("MH_RESULT "):
            return json.loads(line[len("MH_RESULT "):])
    raise RuntimeError(f"{host} {what}: no result\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        kind, what, exe, n = sys.argv[2:6]
        (cli_inner if kind == "cli" else lldb_inner)(what, exe, int(n))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000,10000000")
    ap.add_argument("--hosts", default="gdb,gdb-mi,lldb")
    ap.add_argument("--commands", default=",".join(COMMANDS))
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    commands = args.commands.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_bigheap(Path(tmp))
        for n in sizes:  # one measurement at a time: never two big heaps at once
            floor = min(gdb_once(exe, n, "floor")["seconds"] for _ in range(args.repeat))
            rows.append(("gdb", n, "floor", floor, floor, None))
            for host in args.hosts.split(","):
                for what in commands:
                    runs = [host_once(host, exe, n, what) for _ in range(args.repeat)]
                    best = min(r["seconds"] for r in runs)
                    peak = max(r["peak_extra"] for r in runs)
                    rows.append((host, n, what, best, floor, peak))
                    print(f"{host:<7}{n:>11,} {what:<16}{best:>9.2f} s{best / floor:>7.2f}x"
                          f"{peak / 1e6:>9.1f} MB", flush=True)
    print("\n| host | chunks | command | seconds | x floor | peak extra MB |")
    print("|---|---:|---|---:|---:|---:|")
    for host, n, what, s, fl, peak in rows:
        pk = "" if peak is None else f"{peak / 1e6:.0f}"
        print(f"| {host} | {n:,} | {what} | {s:.2f} | {s / fl:.2f} | {pk} |")
    ok = all(p is None or p <= 256e6 for *_r, p in rows)
    print("peak extra <= 256 MB everywhere:", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
