"""The demo: build the bundled sample, stop it where its heap is interesting, look."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from multiheap.errors import MultiheapError
from multiheap.hosts import plugin_file

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


def gdb_command(prog: Path) -> list[str]:
    cmd = ["gdb", "-nx", "-batch", "-q", "-iex", "set debuginfod enabled off",
           "-iex", "set style enabled " + ("on" if sys.stdout.isatty() else "off"),
           "-ex", f"source {plugin_file('gdb')}", "-ex", "break checkpoint",
           "-ex", "run", "-ex", "up"]
    for cmd_line, what in STEPS:
        cmd += ["-ex", f"echo \\n### {cmd_line}    ({what})\\n", "-ex", cmd_line]
    return cmd + [str(prog)]


def run_demo() -> int:
    """Run the demo in gdb; returns the exit status."""
    if shutil.which("gdb") is None:
        raise MultiheapError("gdb is not installed (run scripts/setup.sh)")
    prog = build_sample()
    print(f"multiheap demo: {prog.name} stopped in checkpoint(), inside gdb\n", flush=True)
    env = dict(os.environ, MULTIHEAP_VENV=sys.prefix)
    return subprocess.run(gdb_command(prog), env=env).returncode
