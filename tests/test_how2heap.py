"""ptcheck at each how2heap technique's corruption point, on the glibc builds we install.

tests/how2heap/ holds programs of shellphish/how2heap (MIT, see its README), unchanged.
Each is compiled here against the glibc whose how2heap folder it comes from (2.31:
bullseye's, 2.36: the system's, 2.41: trixie's) and run in gdb with two breakpoints
found in its source at test time: on the line of the first corrupting statement (the
heap is still one glibc made: ptcheck must be empty) and on the line after the last
one (ptcheck must report the damage).  The patterns below name those statements.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Optional

import pytest
from glibcbuilds import other_builds
from harness import BUILD_DIR, PLUGIN_GDB, ROOT, GlibcBuild, gdb_env, require

VENDORED = ROOT / "tests" / "how2heap"
FOLDERS = ("2.31", "2.36", "2.41")

# technique -> (first corrupting statement, last corrupting statement, finding kinds
# any of which must be reported after it; empty: none can be, and none may be).  A
# pattern's first match counts; one ending in "$" means its last match in the file.
TECHNIQUES: dict[str, tuple[str, str, set[str]]] = {
    "fastbin_dup": (r"^\s*free\(a\);$", r"^\s*free\(a\);$", {"double-free"}),
    "fastbin_dup_into_stack": (r"^\s*free\(a\);$", r"^\s*free\(a\);$", {"double-free"}),
    "tcache_poisoning": (r"^\s*b\[0\] = ", r"^\s*b\[0\] = ", {"outside-heap"}),
    "house_of_spirit": (r"^\s*free\(victim\);", r"^\s*free\(victim\);", {"outside-heap"}),
    "tcache_house_of_spirit": (r"^\s*free\(a\);", r"^\s*free\(a\);", {"outside-heap"}),
    # The enlarged in-use chunk ends exactly where the next one did (here: at top): a
    # heap glibc could have made, so no finding is possible at rest, and none is made.
    "overlapping_chunks": (r"= evil_chunk_size;", r"= evil_chunk_size;", set()),
    "poison_null_byte": (r"\[-8\] = '\\x00';", r"\[-8\] = '\\x00';", {"unlisted-free"}),
    "unsafe_unlink": (r"chunk1_hdr\[1\] &= ~1;", r"chunk1_hdr\[1\] &= ~1;",
                      {"unlisted-free"}),
    "house_of_einherjar": (r"^\s*b\[real_b_size\] = 0;", r"^\s*b\[real_b_size\] = 0;",
                           {"unlisted-free"}),
    "large_bin_attack": (r"^\s*p1\[3\] = ", r"^\s*p1\[3\] = ", {"nextsize-link"}),
    "house_of_lore": (r"^\s*victim\[1\] = ", r"^\s*victim\[1\] = ", {"bin-link"}),
    "house_of_botcake": (r"free\(a\);\s*// a is already freed",
                         r"free\(a\);\s*// a is already freed", {"inside-chunk"}),
    "house_of_water": (r"^\s*\*\(long\*\)\(small_start-0x18\) = 0x331;",
                       r"^\s*free\(small_start-0x10\);", {"inside-chunk"}),
    "tcache_metadata_poisoning": (r"metadata->counts\[1\] = ", r"metadata->entries\[1\] = ",
                                  {"outside-heap", "misaligned-link", "tcache-count"}),
}


def _line(src: list[str], pattern: str) -> int:
    """1-based number of the first line matching ``pattern``, "$"-suffixed: the last."""
    last = pattern.endswith("$")
    hits = [i + 1 for i, ln in enumerate(src) if re.search(pattern, ln)]
    assert hits, f"no line matches {pattern!r}"
    return hits[-1] if last else hits[0]


def _glibc(folder: str) -> Optional[GlibcBuild]:
    """The installed glibc closest to a how2heap folder (None: the system's 2.36)."""
    if folder == "2.36":
        return None
    return next(b for b in other_builds() if b.version.startswith(folder))


def _compile(src: Path, glibc: Optional[GlibcBuild]) -> Path:
    flags = ["gcc", "-std=gnu99", "-g", "-O0", "-w", *(glibc.cflags() if glibc else [])]
    key = hashlib.sha256(src.read_bytes() + repr(flags).encode()).hexdigest()[:12]
    out = BUILD_DIR / f"how2heap-{src.stem}-{key}"
    if not out.exists():
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run([*flags, str(src), "-o", str(tmp), "-ldl"], check=True)
        tmp.replace(out)
    return out


def run_technique(folder: str, name: str) -> tuple[dict, dict]:
    """ptcheck --json (before the first corrupting statement, after the last one)."""
    require("gdb")
    src = VENDORED / f"glibc_{folder}" / f"{name}.c"
    lines = src.read_text().splitlines()
    first, last, _kinds = TECHNIQUES[name]
    before, after = _line(lines, first), _line(lines, last) + 1
    glibc = _glibc(folder)
    exe = _compile(src, glibc)
    pre = ["-ex", f"set debug-file-directory {glibc.debug_dir}"] if glibc else []
    proc = subprocess.run(
        ["gdb", "-nx", "-batch", "-q", "-ex", "set pagination off", "-ex", "set width 0",
         *pre, "-ex", f"source {PLUGIN_GDB}",
         "-ex", f"break {src.name}:{before}", "-ex", f"break {src.name}:{after}",
         "-ex", "run >/dev/null 2>&1 </dev/null", "-ex", "echo ==MH==\\n",
         "-ex", "ptcheck --json", "-ex", "continue", "-ex", "echo ==MH==\\n",
         "-ex", "ptcheck --json", "-ex", "kill", str(exe)],
        capture_output=True, text=True, timeout=240, env=gdb_env(), cwd=BUILD_DIR)
    parts = proc.stdout.split("==MH==\n")[1:]
    docs = [next((json.loads(ln) for ln in p.splitlines() if ln.startswith("{")), None)
            for p in parts]
    assert len(docs) == 2 and None not in docs, (proc.stdout[-3000:], proc.stderr[-2000:])
    return docs[0], docs[1]


CELLS = [(f, t) for f in FOLDERS for t in TECHNIQUES
         if (VENDORED / f"glibc_{f}" / f"{t}.c").exists()]


@pytest.mark.parametrize(("folder", "name"), CELLS)
def test_how2heap_corruption_is_found(folder, name):
    before, after = run_technique(folder, name)
    assert before["findings"] == [], (name, folder, before["findings"])
    kinds = {f["kind"] for f in after["findings"]}
    want = TECHNIQUES[name][2]
    assert kinds & want if want else not kinds, (name, folder, after["findings"])
