"""radare2 benchmark: the issue-5 targets, measured inside a real ``r2 -d``.

    .venv/bin/python benchmarks/r2_measure.py [--chunks N] [--repeat R]

Builds benchmarks/bigheap.c, runs it under ``r2 -d`` to checkpoint() with the aliases
``multiheap init r2`` prints, and times whole ``$pt*`` commands as r2 runs them
(``#!pipe`` start-up of Python included), best of R:
``$ptstats`` on the N-chunk heap (target < 3 s) and ``$ptchunk ADDR`` (target < 0.5 s).
Also: bare Python start-up, the plugin's imports, and r2's own reads for scale.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import build_bigheap, parser

PY = str(Path(sys.prefix) / "bin" / "python")


def best(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def session(exe: Path, chunks: int, repeat: int, big: bool):
    """One r2 -d session on ``exe CHUNKS`` at checkpoint(): {command: best seconds}."""
    from multiheap.adapters.r2_spawn import _SpawnLink
    from multiheap.hosts import init_lines

    s = _SpawnLink([str(exe), str(chunks)], ["-N", "-e", "scr.color=0", "-d"])
    try:
        for line in init_lines("r2")[1]:  # r2 -i hangs under r2pipe's -q0
            s.cmd(line)
        s.cmd("db sym.checkpoint")
        s.cmd("dc")
        heap = next(m for m in json.loads(s.cmd("dmj")) if "[heap]" in str(m.get("name", "")))
        h0, h1 = int(heap["addr"]), int(heap["addr_end"])
        results = {}
        cmds = ["$ptstats", "$ptstats --json"] if big else []
        cmds += [f"$ptchunk {h0:#x}", f"$ptchunk {h0:#x} -c 3"]
        for what in cmds:
            outs: list[str] = []
            results[what] = best(lambda w=what, o=outs: o.append(s.cmd(w)), repeat)
            if not outs[-1].strip() or "error" in outs[-1].split("\n")[0]:
                raise RuntimeError(f"{what}: {outs[-1][:300]}")
        n = min(h1 - h0, 4 << 20)
        p8 = best(lambda: s.cmd(f"p8 {n} @ {h0:#x}"), 1) if big else 0.0
    finally:
        s.quit()
    return results, (h0, h1, n, p8)


def main() -> int:
    args = parser(__doc__).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_bigheap(Path(tmp))
        startup = best(lambda: subprocess.run([PY, "-c", "pass"], check=True), args.repeat)
        imports = best(lambda: subprocess.run(
            [PY, "-c", "import multiheap.plugins.r2 as p, multiheap.adapters.r2, "
             "multiheap.commands, multiheap.session"], check=True), args.repeat)
        results, info = session(exe, args.chunks, args.repeat, big=True)
        small, _ = session(exe, 1000, args.repeat, big=False)
    h0, h1, n, p8 = info
    mb = (h1 - h0) / 1e6
    print(f"radare2 -d, {args.chunks:,} chunks, heap {mb:.1f} MB, best of {args.repeat}")
    print(f"  python start-up (bare)        {startup:8.3f} s")
    print(f"  python + plugin imports       {imports:8.3f} s")
    for what, sec in results.items():
        print(f"  {what.replace(f'{h0:#x}', 'HEAP'):<30}{sec:8.3f} s")
    print("  on a 1,000-chunk heap:")
    for what, sec in small.items():
        print(f"  {re.sub('0x[0-9a-f]+', 'HEAP', what):<30}{sec:8.3f} s")
    print(f"  r2 p8 hex of {n / 1e6:.1f} MB (for scale) {p8:8.3f} s "
          f"= {n / p8 / 1e6:.1f} MB/s")
    stats = results["$ptstats"]
    chunk = next(v for k, v in small.items() if not k.endswith("-c 3"))
    big_chunk = results[f"$ptchunk {h0:#x}"]
    ok = stats < 3.0 and chunk < 0.5
    print(f"targets ($ptstats < 3 s: {stats:.2f}; $ptchunk < 0.5 s: {chunk:.2f}, "
          f"{big_chunk:.2f} on the big heap):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
