"""multiheap benchmarks: the issue targets, measured in real debuggers.

    .venv/bin/python benchmarks/run.py [--chunks N] [--repeat R]

gdb: on an N-chunk main heap (default 1,000,000), the floor (one bulk read of the heap
plus a bare walk of its headers in gdb's Python) against ptstats and a full ptlist
(output to /dev/null), each cold in a fresh gdb, best of R runs.
Targets (issue 2): ptstats <= 3x floor, ptlist <= 8x floor, peak extra memory < 300 MB.
Then ptstats and ptlist twice in one gdb session (the first on a fresh stop, then
repeated with the stop's free lists cached): issue 15 wants first <= 1.3x repeated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import HERE, ROOT, build_bigheap, parser


def gdb_once(exe: Path, chunks: int, what: str) -> dict:
    cmd = ["gdb", "-nx", "-batch", "-q", "-iex", "set debuginfod enabled off",
           "-ex", f"source {ROOT / 'plugins' / 'gdb.py'}", "-ex", "break checkpoint",
           "-ex", f"run {chunks}", "-ex", f"source {HERE / 'gdb_measure.py'}", str(exe)]
    again = what.startswith("repeated ")  # first vs repeated in one session
    what = what.removeprefix("repeated ")
    if what.startswith(("ptlist", "ptcheck", "pttry", "ptfind")):
        what = f"pipe {what} | cat > /dev/null"
    if again:
        what = "repeated " + what
    env = dict(os.environ, MH_BENCH=what, MULTIHEAP_VENV=sys.prefix)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    for line in p.stdout.splitlines():
        if line.startswith("MH_RESULT "):
            return json.loads(line[len("MH_RESULT "):])
    raise RuntimeError(f"no result for {what}:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")


def main() -> int:
    args = parser(__doc__).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_bigheap(Path(tmp))
        results = {}
        for what in ("floor", "ptstats", "ptstats --json", "ptlist", "ptcheck --json",
                     "pttry malloc 0x18", "pttry free ((char*)main_arena.top)-0x10",
                     "ptfind ((char*)main_arena.top)-8"):
            runs = [gdb_once(exe, args.chunks, what) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            best["peak_extra"] = max(r["peak_extra"] for r in runs)
            results[what] = best
        again = {}  # first vs repeated: (first s, repeated s, peak extra of the repeat)
        for what in ("ptstats", "ptlist"):
            runs = [gdb_once(exe, args.chunks, "repeated " + what) for _ in range(args.repeat)]
            again[what] = (min(r["first"] for r in runs), min(r["seconds"] for r in runs),
                           max(r["peak_extra"] for r in runs))
    fl = results["floor"]["seconds"]
    print(f"gdb, {args.chunks:,} chunks (floor walked {results['floor']['detail']:,} chunks)")
    print(f"{'measure':<16}{'seconds':>9}{'x floor':>9}{'peak extra MB':>15}")
    for what, r in results.items():
        print(f"{what:<16}{r['seconds']:>9.3f}{r['seconds'] / fl:>9.2f}"
              f"{r['peak_extra'] / 1e6:>15.1f}")
    print("first vs repeated (one gdb session, the same command twice on one stop)")
    print(f"{'command':<16}{'first':>9}{'again':>9}{'ratio':>9}")
    for what, (first, rep, _peak) in again.items():
        print(f"{what:<16}{first:>9.3f}{rep:>9.3f}{first / rep:>8.2f}x")
    quick = [r["seconds"] for w, r in results.items() if w.startswith(("pttry", "ptfind"))]
    ok = (results["ptstats"]["seconds"] <= 3 * fl and results["ptlist"]["seconds"] <= 8 * fl
          and results["ptcheck --json"]["seconds"] <= 5 * fl and max(quick) < 0.3
          and all(r["peak_extra"] < 300e6 for r in results.values()))
    print("targets (ptstats <= 3x, ptlist <= 8x, ptcheck <= 5x, pttry/ptfind < 0.3 s, "
          "peak < 300 MB):", "met" if ok else "MISSED")
    first_ok = all(first <= 1.3 * rep for first, rep, _p in again.values())
    print("first <= 1.3x repeated (issue 15):", "met" if first_ok else "MISSED")
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
