"""What every benchmark shares: the big-heap program and the common options."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def build_bigheap(tmp: Path, binned: bool = False) -> Path:
    """Compile benchmarks/bigheap.c (N chunks of 16..112 bytes, every third freed;
    ``binned``: every 40th a 0x1f0-byte chunk freed into the unsorted bin too)."""
    exe = tmp / ("bigheap-binned" if binned else "bigheap")
    subprocess.run(["gcc", "-O1", "-g", *(["-DBINNED"] if binned else []),
                    str(HERE / "bigheap.c"), "-o", str(exe)], check=True)
    return exe


def parser(doc: str) -> argparse.ArgumentParser:
    """--chunks N (default 1,000,000) and --repeat R (best of R runs, default 3)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    return ap
