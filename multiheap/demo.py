"""The demo: build the bundled sample, stop it where its heap is interesting, look.

It runs on the CLI's default backend (gdb-mi): one Session, the same commands.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from multiheap.errors import MultiheapError

SAMPLE = Path(__file__).resolve().parent / "samples" / "demo.c"
STEPS = [
    ("ptconfig", "what multiheap found, and how"),
    ("ptarena -l", "every arena"),
    ("ptstats", "totals, and mallinfo2 computed from memory"),
    ("pttcache", "each thread's tcache"),
    ("ptfast", "fastbins"),
    ("ptbin", "unsorted, small and large bins"),
    ("ptchunk -m demo_ptrs[0] -c 4 -x", "a freed chunk and its neighbours"),
    ("ptlist -c 12", "the first chunks of the main heap"),
]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "multiheap"


def build_sample() -> Path:
    """Compile the sample once (keyed by its source's hash)."""
    if shutil.which("gcc") is None:
        raise MultiheapError("gcc is not installed (run scripts/setup.sh)")
    src = SAMPLE.read_bytes()
    out = cache_dir() / f"demo-{hashlib.sha256(src).hexdigest()[:12]}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run(["gcc", "-g", "-O0", "-pthread", str(SAMPLE), "-o", str(tmp)],
                       check=True)
        tmp.replace(out)
    return out


def run_demo(backend: str = "gdb-mi") -> int:
    """Run the sample to checkpoint() under ``backend`` and run STEPS; exit status."""
    from multiheap import registry
    from multiheap.commands import run_command
    from multiheap.session import Session

    prog = build_sample()
    info = registry.adapter(backend)
    print(f"multiheap demo: {prog.name} stopped in checkpoint(), through {backend} "
          f"({info.description})", flush=True)
    target = info.open(run=str(prog), brk="checkpoint")
    status = 0
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    try:
        session = Session(target, target.evaluate)
        for line, what in STEPS:
            print(f"\n### {line}    ({what})", flush=True)
            name, *argv = shlex.split(line)
            res = run_command(session, name, argv, color=color, sink=sys.stdout.write)
            if res.error:
                print(f"multiheap: {res.error}", file=sys.stderr)
                status = res.status or 1
            elif res.output:
                sys.stdout.write(str(res.output))
            sys.stdout.flush()
    finally:
        target.close()
    return status
