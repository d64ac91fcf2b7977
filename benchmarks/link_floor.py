"""What following a fastbin's links costs in CPython: the engine's walk against the
barest loop Python can run, per link (issue 15's first answer).

    .venv/bin/python benchmarks/link_floor.py [--links 333333] [--repeat 5]

One list of N chunks of 0x30 bytes, every third chunk of a heap (as bigheap.c's
fastbins: freed in order, so linked from the highest address down), safe-linked,
in a memory image read in 4 MB windows as a heap is.  ``bare`` follows the links
over the words in place with no check at all (no alignment, size, window or cycle
check; nothing a corrupted heap needs); ``engine`` is FreeLists' walk of a fastbin,
reads included.  Best of --repeat runs.  A fresh stop's first ptstats pays this for
every chunk in a fastbin; a repeat finds the lists cached.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]
from imagebuild import build_image  # noqa: E402

from adapters.image import ImageTarget  # noqa: E402
from multiheap.heaptypes import FreeList, SameSize  # noqa: E402
from multiheap.session import Session  # noqa: E402

SEG = 0x5A0000000000
STRIDE = 0x90  # a free chunk every third chunk of 0x30


def heap(n: int) -> tuple[bytes, int]:
    """The segment's bytes and the list's head (its highest chunk)."""
    buf = bytearray(n * STRIDE + 0x100)
    nxt = 0
    for i in range(n):  # freed lowest first: each links to the one freed before
        c = SEG + 0x10 + i * STRIDE
        o = c - SEG
        buf[o + 8:o + 16] = (0x31).to_bytes(8, "little")
        buf[o + 16:o + 24] = (nxt ^ ((c + 16) >> 12)).to_bytes(8, "little")
        nxt = c
    return bytes(buf), nxt


def bare(buf: bytes, head: int) -> int:
    words = memoryview(buf).cast("Q")
    p, n = head, 0
    while p:
        n += 1
        p = words[((p - SEG) >> 3) + 2] ^ ((p + 16) >> 12)
    return n


def engine(buf: bytes, head: int, image) -> int:
    target = ImageTarget({**image.segs, SEG: buf}, **image.kwargs)
    lists = Session(target).heap().lists
    seg = SimpleNamespace(start=SEG, end=SEG + len(buf))
    inside = lists.model.segment_of
    lists.model.segment_of = lambda a: (None, seg) if SEG <= a < seg.end else inside(a)
    fl = FreeList("fast", 1, sizes=SameSize(0x30))
    lists._walk_list(fl, head, 0, True, exact=0x30)
    assert fl.stop is None
    return len(fl.chunks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links", type=int, default=333_333)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    buf, head = heap(args.links)
    image = build_image((2, 36), 8)
    for name, run in (("bare", lambda: bare(buf, head)),
                      ("engine", lambda: engine(buf, head, image))):
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            assert run() == args.links
            best = min(best, time.perf_counter() - t0)
        print(f"{name:<7}{best:>8.3f} s  {best / args.links * 1e6:.2f} us a link")
    return 0


if __name__ == "__main__":
    sys.exit(main())
