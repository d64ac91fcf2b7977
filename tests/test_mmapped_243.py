"""glibc 2.43's mmapped chunks, on programs built against it (gdb, its debug info).

2.43 gave them a normal chunk's layout, and two behaviours follow that a heap tool must
not call corruption.  free() gives a mmapped chunk to the tcache (a large bin, when the
tcache_max tunable lets it) instead of unmapping it: a tcache entry outside every heap
(tests/programs/mm_tcache.c: ptcheck says nothing, ptlist --mmapped and ptfind say which
one the tcache holds, and pttry's prediction for the second free is what glibc then does, seen
at the program's second stop).  And mremap_chunk overcounts ``mp_.mmapped_mem`` by a
chunk header per remap (tests/programs/mm_remap.c reports glibc's own figure): ptstats'
note says so instead of suspecting a damaged header.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from glibcbuilds import other_builds
from harness import BUILD_DIR, PLUGIN_GDB, build, gdb_env

BUILDS = {b.version: b for b in other_builds()}
COMMANDS = ["ptcheck --json", "ptlist --mmapped --json", "pttcache --json", "ptstats --json"]


def _run(program: str, stops: int, extra: str = "", env: dict | None = None):
    """gdb on PROGRAM (2.43) stopped in checkpoint() ``stops`` times: the program's
    truth and, per stop, each command's JSON (``extra``: more Python run at each stop,
    adding to ``r`` with ``t`` the truth)."""
    b = BUILDS["2.43"]
    exe = build(program, glibc=b)
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mh-", dir=BUILD_DIR))
    truth, out = work / "truth.json", work / "out.json"
    script = work / "cmds.py"
    script.write_text(
        "import gdb, json\n"
        f"t = json.load(open({str(truth)!r}))\n"
        "res = []\n"
        f"for stop in range({stops}):\n"
        "    r = {c: json.loads(gdb.execute(c, to_string=True)) for c in "
        f"{COMMANDS!r}}}\n"
        + "".join(f"    {line}\n" for line in extra.splitlines()) +
        "    res.append(r)\n"
        f"    if stop < {stops - 1}:\n"
        "        gdb.execute('continue', to_string=True)\n"
        f"open({str(out)!r}, 'w').write(json.dumps(res))\n")
    argv = ["gdb", "-nx", "-batch", "-q", "-iex", "set debuginfod enabled off",
            "-ex", f"set debug-file-directory {b.debug_dir}", "-ex", "set pagination off",
            "-ex", f"source {PLUGIN_GDB}", "-ex", "break checkpoint",
            "-ex", f"run {truth}", "-ex", f"source {script}", str(exe)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=240,
                       env=dict(gdb_env(), **(env or {})))
    assert out.exists(), p.stdout[-2000:] + p.stderr[-2000:]
    return json.loads(truth.read_text()), json.loads(out.read_text())


@pytest.fixture(scope="module")
def tcached():
    return _run("mm_tcache", 2, "r['try'] = json.loads(gdb.execute("
                "'pttry free %#x --json' % t['b'], to_string=True))\n"
                "r['find'] = json.loads(gdb.execute("
                "'ptfind %#x --json' % (t['a'] + 100), to_string=True))",
                {"GLIBC_TUNABLES": "glibc.malloc.tcache_max=1000000"})


def _states(doc: dict) -> dict[int, str]:
    return {c["addr"] + 16: c["state"] for c in doc["chunks"]}


def test_a_tcached_mmapped_chunk_is_no_finding(tcached):
    truth, (first, second) = tcached
    for stop in (first, second):
        assert stop["ptcheck --json"]["findings"] == [], stop["ptcheck --json"]
    assert _states(first["ptlist --mmapped --json"]) == {truth["a"]: "tcache",
                                                          truth["b"]: "mmapped"}
    tcached = {c["mem"]: b["index"] for t in first["pttcache --json"]["tcaches"]
               for b in t["bins"] for c in b["chunks"]}
    assert tcached.get(truth["a"]) == 71 and truth["b"] not in tcached  # 0x30ff0: large
    found = first["find"]  # ptfind in the freed mapping: the chunk, and its state
    assert (found["addr"] + 16, found["state"], found["offset"]) == (truth["a"], "tcache", 100)


def test_pttry_free_predicts_the_tcache(tcached):
    truth, (first, second) = tcached
    where = first["try"]["where"]
    assert where.startswith("tcache bin 72 "), first["try"]  # 0x49ff0: one bin past a's 71
    # what glibc then did: b is in the tcache, still mapped
    assert _states(second["ptlist --mmapped --json"]) == {truth["a"]: "tcache",
                                                           truth["b"]: "tcache"}
    # and freeing it again is the double free glibc would report
    assert second["try"]["glibc"]["message"].startswith("free(): double free detected")


def test_remap_overcount_is_explained_not_suspected():
    truth, (stop,) = _run("mm_remap", 1)
    # glibc's own figure: one chunk header too many per remap
    assert truth["hblkhd"] - truth["mapped"] == 16 * truth["remaps"] == 48
    stats = stop["ptstats --json"]
    assert stats["mmapped"] == {"count": 1, "bytes": truth["hblkhd"]}
    assert stats["mallinfo2"]["hblkhd"] == truth["hblkhd"]
    notes = [n["message"] for n in stats.get("notes", [])]
    assert any("mremap_chunk" in n and "(3 times here)" in n for n in notes), notes
    assert not any("damaged" in n for n in notes), notes
    assert stop["ptcheck --json"]["findings"] == []
    [chunk] = stop["ptlist --mmapped --json"]["chunks"]
    assert chunk["size"] + 16 == truth["mapped"]
