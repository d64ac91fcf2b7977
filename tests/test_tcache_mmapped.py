"""glibc 2.43 gives mmapped chunks to the tcache (a large bin, when the tcache_max
tunable lets it) instead of unmapping them: such a chunk is a tcache entry outside every
heap, not corruption.  gdb on tests/programs/mm_tcache.c built against 2.43: ptcheck
says nothing, ptlist --mmapped says which one the tcache holds, and pttry's prediction
for the second free is what glibc then does (the program's second stop)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from glibcbuilds import other_builds
from harness import BUILD_DIR, PLUGIN_GDB, build, gdb_env

BUILDS = {b.version: b for b in other_builds()}
COMMANDS = ["ptcheck --json", "ptlist --mmapped --json", "pttcache --json"]


@pytest.fixture(scope="module")
def stops():
    b = BUILDS["2.43"]
    exe = build("mm_tcache", glibc=b)
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mh-", dir=BUILD_DIR))
    truth = work / "truth.json"
    argv = ["gdb", "-nx", "-batch", "-q", "-iex", "set debuginfod enabled off",
            "-ex", f"set debug-file-directory {b.debug_dir}", "-ex", "set pagination off",
            "-ex", f"source {PLUGIN_GDB}", "-ex", "break checkpoint",
            "-ex", f"run {truth}"]
    script = work / "cmds.py"
    script.write_text(
        "import gdb, json\n"
        f"t = json.load(open({str(truth)!r}))\n"
        "out = []\n"
        "for stop in range(2):\n"
        "    r = {c: json.loads(gdb.execute(c, to_string=True)) for c in "
        f"{COMMANDS!r}}}\n"
        "    r['try'] = json.loads(gdb.execute('pttry free %#x --json' % t['b'], "
        "to_string=True))\n"
        "    out.append(r)\n"
        "    if stop == 0:\n"
        "        gdb.execute('continue', to_string=True)\n"
        f"open({str(work / 'out.json')!r}, 'w').write(json.dumps(out))\n")
    env = dict(gdb_env(), GLIBC_TUNABLES="glibc.malloc.tcache_max=1000000")
    p = subprocess.run(argv + ["-ex", f"source {script}", str(exe)], capture_output=True,
                       text=True, timeout=240, env=env)
    assert (work / "out.json").exists(), p.stdout[-2000:] + p.stderr[-2000:]
    return json.loads(truth.read_text()), json.loads((work / "out.json").read_text())


def _states(doc: dict) -> dict[int, str]:
    return {c["addr"] + 16: c["state"] for c in doc["chunks"]}


def test_a_tcached_mmapped_chunk_is_no_finding(stops):
    truth, (first, second) = stops
    for stop in (first, second):
        assert stop["ptcheck --json"]["findings"] == [], stop["ptcheck --json"]
    assert _states(first["ptlist --mmapped --json"]) == {truth["a"]: "tcache",
                                                          truth["b"]: "mmapped"}
    tcached = {c["mem"]: b["index"] for t in first["pttcache --json"]["tcaches"]
               for b in t["bins"] for c in b["chunks"]}
    assert tcached.get(truth["a"]) == 71 and truth["b"] not in tcached  # 0x30ff0: large


def test_pttry_free_predicts_the_tcache(stops):
    truth, (first, second) = stops
    where = first["try"]["where"]
    assert where.startswith("tcache bin 72 "), first["try"]  # 0x49ff0: one bin past a's 71
    # what glibc then did: b is in the tcache, still mapped
    assert _states(second["ptlist --mmapped --json"]) == {truth["a"]: "tcache",
                                                           truth["b"]: "tcache"}
    # and freeing it again is the double free glibc would report
    assert second["try"]["glibc"]["message"].startswith("free(): double free detected")
