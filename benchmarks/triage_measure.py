"""Triage benchmark: cores per minute on 1, 2 and all workers, and the cluster's start.

    .venv/bin/python benchmarks/triage_measure.py [--cores 40] [--repeat 1]

Makes N small cores from tests/programs/triage_bugs.c (kernel cores of real crashes,
four bug modes in turn; RLIMIT_CORE raised in the child, core_pattern must name a
file), then for 1, 2 and os.cpu_count() workers: the fixed cost of starting (and
closing) a LocalCluster, and the throughput of analysing all N cores on it (cluster
already up), best of R.  Also prints the summary ``multiheap triage`` prints for them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from multiheap.triage.analyse import analyse_core  # noqa: E402
from multiheap.triage.run import _close, start_cluster  # noqa: E402
from multiheap.triage.table import summary  # noqa: E402

MODES = ("double-free", "overflow-crash", "segv", "double-free")


def make_cores(tmp: Path, n: int) -> list[str]:
    exe = tmp / "triage_bugs"
    subprocess.run(["gcc", "-g", "-O1", "-w", str(ROOT / "tests/programs/triage_bugs.c"),
                    "-o", str(exe)], check=True)
    with open("/proc/sys/kernel/core_pattern") as f:
        if f.read().startswith("|"):
            sys.exit("core_pattern is a pipe: this benchmark needs kernel core files")
    cores = []
    for i in range(n):
        work = tmp / f"w{i}"
        work.mkdir()
        subprocess.run([str(exe), MODES[i % len(MODES)], str(i)], cwd=work,
                       capture_output=True, preexec_fn=lambda: resource.setrlimit(
                           resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2))
        made = next(f for f in work.iterdir() if f.name.startswith("core"))
        dest = tmp / f"c{i:03d}.core"
        made.replace(dest)
        shutil.rmtree(work)
        cores.append(str(dest))
    return cores


def measure(cores: list[str], workers: int, repeat: int) -> tuple[float, float, list[dict]]:
    """(start+close seconds, best analysis seconds, rows) on a LocalCluster."""
    t = time.monotonic()
    client, cluster = start_cluster(workers, None)
    client.wait_for_workers(workers)
    up = time.monotonic() - t
    best, rows = float("inf"), []
    try:
        client.submit(len, [1]).result()  # warm the workers
        for _ in range(repeat):
            t = time.monotonic()
            rows = client.gather(client.map(analyse_core, cores, pure=False))
            best = min(best, time.monotonic() - t)
    finally:
        t = time.monotonic()
        _close(client, cluster)
        up += time.monotonic() - t
    return up, best, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="triage-bench-") as d:
        t = time.monotonic()
        cores = make_cores(Path(d), a.cores)
        size = sum(os.path.getsize(c) for c in cores) / len(cores)
        print(f"{len(cores)} cores of {size / 1024:.0f} KiB made in "
              f"{time.monotonic() - t:.1f} s; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.2f} (the machine's other work shares them)")
        base = None
        rows: list[dict] = []
        for n in sorted({1, 2, os.cpu_count() or 1}):
            up, secs, rows = measure(cores, n, a.repeat)
            rate = len(cores) / secs * 60
            base = base or rate
            print(f"workers {n}: {rate:6.0f} cores/min ({secs:.2f} s for {len(cores)}), "
                  f"speed-up {rate / base:.2f}x; LocalCluster start+close {up:.2f} s")
        print()
        sys.stdout.write(summary(rows, limit=5))
    return 0


if __name__ == "__main__":
    sys.exit(main())
