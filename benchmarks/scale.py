"""How multiheap scales: heap size x host x command, seconds and peak extra memory.

    .venv/bin/python benchmarks/scale.py [--sizes 100000,1000000,10000000]
        [--hosts gdb,gdb-mi,lldb,r2] [--commands ...] [--repeat 1] [--binned]

benchmarks/bigheap.c with N chunks (every third freed; ``--binned``: every 40th a
bigger chunk freed into the unsorted bin too, marked free all over the heap, which
ptcheck looks up in the index of the fastbins' chunks), stopped in checkpoint().  Each
measurement runs cold: a fresh debugger (and multiheap) per command.  ``floor`` is gdb
reading the whole main heap at once and walking its size fields in bare Python.
``peak MB`` is the peak RSS of the process running multiheap (gdb; the CLI's Python for
gdb-mi, whose gdb only serves reads; lldb's Python; for r2 the Python that r2's
``#!pipe`` starts for the one command, measured by benchmarks/r2_child.py) over its RSS
just before the command (/proc/PID/clear_refs resets the peak).  r2's seconds are the
whole ``$alias`` round trip (Python's start-up and imports included); its notes give
the child's whole peak (ru_maxrss) and r2's own growth (r2 holds the command's output).
Output to /dev/null (lldb: its output file; r2: read and dropped by this process).
``MH_LLDB_PLUGIN=FILE`` measures another lldb plugin file (a before/after).  Targets
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
from rss import reset_peak, status  # noqa: E402
from run import gdb_once  # noqa: E402

COMMANDS = ["ptstats", "ptlist", "ptlist --json", "ptcheck --json"]


def _measure(run) -> dict:
    reset_peak()
    rss0 = status("VmRSS")
    t0 = time.perf_counter()
    run()
    return {"seconds": time.perf_counter() - t0, "peak_extra": status("VmHWM") - rss0}


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


def _r2_answer(link, command: str) -> str:
    """r2's answer read in linear time and dropped (the first 300 bytes returned):
    the link's own reader joins and rescans it, quadratic on ptlist's 45 MB, and the
    child's writes would wait for it."""
    assert link.proc.stdin is not None and link.proc.stdout is not None
    link.proc.stdin.write((command + "\n").encode())
    head = b""
    while True:
        chunk = link.proc.stdout.read(1 << 16)
        if not chunk:
            raise RuntimeError("radare2 exited")
        end = chunk.find(b"\0")
        if len(head) < 300:
            head += chunk[:300] if end < 0 else chunk[:min(end, 300)]
        if end >= 0:
            link._pending = chunk[end + 1:]
            return head.decode("utf-8", "replace")


def r2_once(exe: Path, chunks: int, what: str) -> dict:
    """``$WHAT`` in ``r2 -d`` at checkpoint(), through the aliases of ``multiheap init
    r2`` with benchmarks/r2_child.py in place of ``-m multiheap.plugins.r2``."""
    from multiheap.adapters.r2_spawn import _SpawnLink
    from multiheap.hosts import init_lines

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "measure.jsonl"
        os.environ["MH_R2_MEASURE"] = str(log)  # r2, its shell and the child inherit it
        s = _SpawnLink([str(exe), str(chunks)],
                       ["-N", "-e", "scr.color=0", "-e", "log.level=1", "-d"])
        try:
            for line in init_lines("r2")[1]:
                s.cmd(line.replace("-m multiheap.plugins.r2", str(HERE / "r2_child.py")))
            s.cmd("db sym.checkpoint")
            s.cmd("dc")
            r2pid = str(s.proc.pid)
            reset_peak(r2pid)
            r2rss = status("VmRSS", r2pid)
            t0 = time.perf_counter()
            out = _r2_answer(s, "$" + what)
            seconds = time.perf_counter() - t0
            r2peak = status("VmHWM", r2pid) - r2rss
        finally:
            s.quit()
        lines = log.read_text().splitlines() if log.exists() else []
    child = json.loads(lines[-1]) if lines else {}
    if "peak_extra" not in child or not out.strip():
        raise RuntimeError(f"r2 {what}: no result ({child}): {out[:300]!r}")
    return {"seconds": seconds, "peak_extra": child["peak_extra"],
            "note": f"child: command {child['seconds']:.2f} s, max RSS "
                    f"{child['maxrss'] / 1e6:.0f} MB; r2 +{r2peak / 1e6:.0f} MB"}


def host_once(host: str, exe: Path, chunks: int, what: str) -> dict:
    if host == "gdb":
        return gdb_once(exe, chunks, what)
    if host == "r2":
        return r2_once(exe, chunks, what)
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
    ap.add_argument("--binned", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    commands = args.commands.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_bigheap(Path(tmp), args.binned)
        for n in sizes:  # one measurement at a time: never two big heaps at once
            floor = min(gdb_once(exe, n, "floor")["seconds"] for _ in range(args.repeat))
            rows.append(("gdb", n, "floor", floor, floor, None, ""))
            for host in args.hosts.split(","):
                for what in commands:
                    runs = [host_once(host, exe, n, what) for _ in range(args.repeat)]
                    best = min(r["seconds"] for r in runs)
                    peak = max(r["peak_extra"] for r in runs)
                    note = min(runs, key=lambda r: r["seconds"]).get("note", "")
                    rows.append((host, n, what, best, floor, peak, note))
                    print(f"{host:<7}{n:>11,} {what:<16}{best:>9.2f} s{best / floor:>7.2f}x"
                          f"{peak / 1e6:>9.1f} MB  {note}", flush=True)
    print("\n| host | chunks | command | seconds | x floor | peak extra MB | notes |")
    print("|---|---:|---|---:|---:|---:|---|")
    for host, n, what, s, fl, peak, note in rows:
        pk = "" if peak is None else f"{peak / 1e6:.0f}"
        print(f"| {host} | {n:,} | {what} | {s:.2f} | {s / fl:.2f} | {pk} | {note} |")
    ok = all(p is None or p <= 256e6 for *_r, p, _note in rows)
    print("peak extra <= 256 MB everywhere:", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
