"""CLI benchmark: ``multiheap --core`` ptstats on the big heap, end to end.

    .venv/bin/python benchmarks/cli_core.py [--chunks N] [--repeat R]

Builds benchmarks/bigheap.c, runs it to checkpoint() in gdb and writes a core with
``gcore``, then times whole ``multiheap --core CORE --exe EXE ...`` processes (wall
clock, best of R): ``ptstats``, ``ptstats --json``, and ``pthelp`` (which opens the same
gdb and core but reads no heap: the start-up share); and the mean MI round trip.
Targets (issue 3): ptstats under 2 s including gdb start-up; a round trip under 1 ms.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import build_bigheap, parser

MULTIHEAP = Path(sys.prefix) / "bin" / "multiheap"


def make_core(tmp: Path, chunks: int) -> tuple[Path, Path]:
    exe = tmp / "bigheap"
    build_bigheap(tmp)
    core = tmp / "bigheap.core"
    subprocess.run(["gdb", "-nx", "-batch", "-q", "-iex", "set debuginfod enabled off",
                    "-ex", "break checkpoint", "-ex", f"run {chunks}",
                    "-ex", f"gcore {core}", "-ex", "kill", str(exe)],
                   check=True, capture_output=True, timeout=600)
    return exe, core


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr[-500:]}")
    return dt


def round_trip(n: int = 1000) -> float:
    """Mean seconds per small MI request (``-data-evaluate-expression``) to a fresh gdb."""
    from multiheap.adapters.gdbmi_process import MiProcess

    mi = MiProcess()
    try:
        mi.request("-data-evaluate-expression 0")
        t0 = time.perf_counter()
        for i in range(n):
            mi.request(f"-data-evaluate-expression {i}")
        return (time.perf_counter() - t0) / n
    finally:
        mi.terminate()


def main() -> int:
    args = parser(__doc__).parse_args()
    with tempfile.TemporaryDirectory() as t:
        exe, core = make_core(Path(t), args.chunks)
        base = [str(MULTIHEAP), "--core", str(core), "--exe", str(exe)]
        rows = {}
        for what in ("pthelp", "ptstats", "ptstats --json"):
            rows[what] = min(timed(base + what.split()) for _ in range(args.repeat))
        python_only = min(timed([str(MULTIHEAP), "--help"]) for _ in range(args.repeat))
    rt = round_trip()
    total = rows["ptstats"]
    print(f"multiheap --core, {args.chunks:,} chunks, core {core.name} (best of {args.repeat})")
    print(f"{'measure':<26}{'seconds':>9}")
    print(f"{'python start (--help)':<26}{python_only:>9.3f}")
    for what, s in rows.items():
        print(f"{what:<26}{s:>9.3f}")
    print(f"{'MI round trip (mean of 1000)':<26}{rt * 1000:>8.3f} ms")
    start = rows["pthelp"]
    print(f"start-up (python + gdb + core, no heap read) = {start:.3f} s, "
          f"{100 * start / total:.0f}% of ptstats")
    ok = total < 2.0 and rt < 1e-3
    print("targets (ptstats < 2 s end to end, round trip < 1 ms):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
