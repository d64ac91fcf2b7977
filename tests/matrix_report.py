"""Print the mallinfo agreement of every matrix cell: host x glibc x debug info.

    .venv/bin/python tests/matrix_report.py

Runs the same sessions as tests/test_glibc_matrix.py (each program built once, one
debugger session per cell) and, for each, compares ptstats' mallinfo2 block with what
the program's own mallinfo2() (mallinfo() on 2.31) returned, field by field.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_glibc_matrix import ALL, HOSTS  # noqa: E402


def main() -> int:
    print(f"{'host':<9}{'glibc':<8}{'arch':<7}{'debug':<7}{'fields':>7}"
          f"{'arena':>10}{'uordblks':>10}{'fordblks':>10}{'ordblks':>8}{'smblks':>7}  result")
    bad = 0
    for host, glibc, debug in ALL:
        run = HOSTS[host](glibc, debug)
        mine, truth = run.json("ptstats --json")["mallinfo2"], run.truth.mallinfo2
        same = sum(mine[k] == v for k, v in truth.items())
        ok = mine == truth
        bad += not ok
        arch = "i386" if run.truth.pointer_size == 4 else "x86_64"
        name = run.truth.glibc + (" st" if glibc == "static" else "")
        print(f"{host:<9}{name:<8}{arch:<7}{'yes' if debug else 'no':<7}"
              f"{same:>4}/{len(truth):<2}{truth['arena']:>10}{truth['uordblks']:>10}"
              f"{truth['fordblks']:>10}{truth['ordblks']:>8}{truth['smblks']:>7}  "
              f"{'equal' if ok else 'DIFFERS: ' + repr(mine)}")
    print(f"{len(ALL)} cells, {len(ALL) - bad} equal to the program's own mallinfo")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
