"""multiheap in lldb on the 1,000,000-chunk heap, beside the gdb figure.

    .venv/bin/python benchmarks/lldb_measure.py [--chunks N] [--repeat R] [--no-gdb]

Each measurement runs cold in a fresh lldb-16 (Python API, /usr/bin/python3): launch
benchmarks/bigheap.c to checkpoint(), ``command script import plugins/lldb.py``, then time

- ``read``: one ``SBProcess.ReadMemory`` of the main heap through lldb-server (reference),
- ``ptstats``: the command through lldb's interpreter (locate, read, walk, render),
- ``ptstats (lldb reads)``: the same with MULTIHEAP_LLDB_NO_PROC_MEM=1, every byte
  through lldb-server instead of /proc/PID/mem.

Target (issue 4): ptstats under 3 s.  gdb's ptstats is measured as benchmarks/run.py does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import build_bigheap, parser  # noqa: E402


def _inner(what: str, exe: str, chunks: int) -> None:
    """Runs in /usr/bin/python3 with lldb importable; prints one MH_RESULT line."""
    import lldb  # type: ignore[import-not-found]

    dbg = lldb.SBDebugger.Create(False)
    dbg.SetAsync(False)
    dbg.SetUseColor(False)
    ci = dbg.GetCommandInterpreter()
    res = lldb.SBCommandReturnObject()
    ci.HandleCommand(f"command script import {ROOT / 'plugins' / 'lldb.py'}", res)
    assert res.Succeeded(), res.GetError()
    t = dbg.CreateTarget(exe)
    t.BreakpointCreateByName("checkpoint")
    p = t.Launch(lldb.SBLaunchInfo([str(chunks)]), lldb.SBError())
    detail = None
    t0 = time.perf_counter()
    if what == "read":
        mp = t.FindGlobalVariables("mp_", 1).GetValueAtIndex(0)
        ma = t.FindGlobalVariables("main_arena", 1).GetValueAtIndex(0)
        base = mp.GetChildMemberWithName("sbrk_base").GetValueAsUnsigned()
        top = ma.GetChildMemberWithName("top").GetValueAsUnsigned()
        err = lldb.SBError()
        data = p.ReadMemory(base, top - base, err)
        assert err.Success(), err
        detail = len(data)
    else:
        res = lldb.SBCommandReturnObject()
        ci.HandleCommand(what, res)
        assert res.Succeeded(), res.GetError()
        detail = len(res.GetOutput() or "")
    elapsed = time.perf_counter() - t0
    p.Kill()
    print("MH_RESULT " + json.dumps({"what": what, "seconds": elapsed, "detail": detail}),
          flush=True)
    os._exit(0)


def lldb_once(exe: Path, chunks: int, what: str, env_extra: dict) -> dict:
    lldb_path = subprocess.run(["lldb-16", "-P"], capture_output=True, text=True,
                               check=True).stdout.strip()
    env = dict(os.environ, PYTHONPATH=lldb_path, MULTIHEAP_VENV=sys.prefix,
               LLDB_DEBUGSERVER_PATH="/usr/lib/llvm-16/bin/lldb-server", **env_extra)
    p = subprocess.run(["/usr/bin/python3", __file__, "--inner", what, str(exe), str(chunks)],
                       capture_output=True, text=True, env=env, timeout=600)
    for line in p.stdout.splitlines():
        if line.startswith("MH_RESULT "):
            return json.loads(line[len("MH_RESULT "):])
    raise RuntimeError(f"no result for {what}:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        _inner(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    ap = parser(__doc__)
    ap.add_argument("--no-gdb", action="store_true", help="skip the gdb figure")
    args = ap.parse_args()
    from run import gdb_once  # benchmarks/run.py

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_bigheap(Path(tmp))
        for label, what, extra in (("read (ReadMemory)", "read", {}),
                                   ("ptstats", "ptstats", {}),
                                   ("ptstats --json", "ptstats --json", {}),
                                   ("ptstats (lldb reads)", "ptstats",
                                    {"MULTIHEAP_LLDB_NO_PROC_MEM": "1"})):
            best = min(lldb_once(exe, args.chunks, what, extra)["seconds"]
                       for _ in range(args.repeat))
            rows.append(("lldb", label, best))
        if not args.no_gdb:
            best = min(gdb_once(exe, args.chunks, "ptstats")["seconds"]
                       for _ in range(args.repeat))
            rows.append(("gdb", "ptstats", best))
    print(f"{args.chunks:,} chunks, best of {args.repeat} cold runs")
    print(f"{'host':<6}{'measure':<24}{'seconds':>9}")
    for host, label, sec in rows:
        print(f"{host:<6}{label:<24}{sec:>9.3f}")
    lldb_ptstats = next(s for h, m, s in rows if h == "lldb" and m == "ptstats")
    ok = lldb_ptstats < 3.0
    print("target (lldb ptstats < 3 s):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
