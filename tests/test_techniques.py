"""ptcheck at the corruption point of well-known heap exploitation techniques.

tests/programs/techniques.c (our own code) gives each technique's heap state, the ones
how2heap demonstrates: it stops in before(), just ahead of the corrupting write (the
heap is one glibc made: ptcheck must be empty), and in checkpoint() right after it
(ptcheck must name the damage).  Built against 2.31, the system's 2.36 and 2.41.
"""

from __future__ import annotations

import json
import subprocess
from typing import Optional

import pytest
from glibcbuilds import other_builds
from harness import BUILD_DIR, PLUGIN_GDB, GlibcBuild, build, gdb_env, require

# mode -> finding kinds, one of which must be reported at the corruption point
TECHNIQUES: dict[str, set[str]] = {
    "fastbin_dup": {"double-free"},
    "tcache_poisoning": {"outside-heap"},
    "house_of_spirit": {"outside-heap"},
    "tcache_house_of_spirit": {"outside-heap"},
    "poison_null_byte": {"unlisted-free"},
    "unsafe_unlink": {"unlisted-free"},
    "house_of_einherjar": {"unlisted-free", "prev-size"},
    "large_bin_attack": {"nextsize-link"},
    "house_of_lore": {"bin-link"},
    "house_of_botcake": {"inside-chunk"},
    "tcache_metadata_poisoning": {"outside-heap", "misaligned-link", "tcache-count"},
    "house_of_water": {"inside-chunk"},
    "overlapping_chunks": {"prev-size"},
    "unsorted_bin_attack": {"bin-link"},
}
VERSIONS = ("2.31", "2.36", "2.41")


def _glibc(version: str) -> Optional[GlibcBuild]:
    if version == "2.36":
        return None  # the system's
    return next(b for b in other_builds() if b.version.startswith(version))


def run_technique(version: str, mode: str) -> tuple[dict, dict]:
    """ptcheck --json in before() and in checkpoint()."""
    require("gdb")
    glibc = _glibc(version)
    exe = build("techniques", cflags=("-O0",), glibc=glibc)
    pre = ["-ex", f"set debug-file-directory {glibc.debug_dir}"] if glibc else []
    proc = subprocess.run(
        ["gdb", "-nx", "-batch", "-q", "-ex", "set pagination off", "-ex", "set width 0",
         *pre, "-ex", f"source {PLUGIN_GDB}", "-ex", "break before", "-ex",
         "break checkpoint", "-ex", f"run {mode}", "-ex", "echo ==MH==\\n",
         "-ex", "ptcheck --json", "-ex", "continue", "-ex", "echo ==MH==\\n",
         "-ex", "ptcheck --json", "-ex", "kill", str(exe)],
        capture_output=True, text=True, timeout=240, env=gdb_env(), cwd=BUILD_DIR)
    parts = proc.stdout.split("==MH==\n")[1:]
    docs = [next((json.loads(ln) for ln in p.splitlines() if ln.startswith("{")), None)
            for p in parts]
    assert len(docs) == 2 and None not in docs, (proc.stdout[-3000:], proc.stderr[-2000:])
    return docs[0], docs[1]


@pytest.mark.parametrize("mode", TECHNIQUES)
@pytest.mark.parametrize("version", VERSIONS)
def test_technique_is_found_at_its_corruption_point(version, mode):
    before, after = run_technique(version, mode)
    assert before["findings"] == [], (mode, version, before["findings"])
    kinds = {f["kind"] for f in after["findings"]}
    assert kinds & TECHNIQUES[mode], (mode, version, after["findings"])
