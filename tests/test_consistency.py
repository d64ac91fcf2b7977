"""One heap, one story: ptlist, ptstats, ptchunk, ptvis and ptcheck agree, on healthy
heaps, on damaged ones, and across glibc's fenceposts after a foreign sbrk().

tests/programs/sbrk_gap.c "gap" leaves the main heap in two regions with the program's
own page between them; "orphan" clears the PREV_INUSE bit after an in-use chunk (a chunk
marked free in no list).  tests/programs/corrupt.c gives one damaged heap per mode.
Truth: the program's own mallinfo() and malloc_info() at the stop.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from glibcbuilds import other_builds
from harness import BUILD_DIR, PLUGIN_GDB, VENV, build, gdb_env, require
from test_ptcheck import MODES

CLI = str(VENV / "bin" / "multiheap")
HOSTS = ["gdb", "gdb-mi", "lldb", "r2"]
STATES = ("inuse", "free", "fast", "tcache", "orphan")


def run_host(host: str, exe: Path, mode: str, commands: list[str]) -> tuple[list[dict], dict]:
    """Each command's JSON (commands end in --json) with ``exe MODE TRUTH`` stopped in
    checkpoint(), and the program's truth."""
    work = Path(tempfile.mkdtemp(prefix="mh-cons-", dir=BUILD_DIR))
    truth = work / "truth.json"
    docs = []
    if host == "gdb":
        args = ["gdb", "-nx", "-batch", "-q", "-ex", "set pagination off", "-ex",
                "set width 0", "-ex", f"source {PLUGIN_GDB}", "-ex", "break checkpoint",
                "-ex", f"run {mode} {truth}"]
        for c in commands:
            args += ["-ex", "echo ==MH==\\n", "-ex", c]
        proc = subprocess.run([*args, "-ex", "echo ==MH==\\n", "-ex", "kill", str(exe)],
                              capture_output=True, text=True, timeout=240, env=gdb_env())
        parts = proc.stdout.split("==MH==\n")[1:len(commands) + 1]
        for c, part in zip(commands, parts):
            line = next((ln for ln in part.splitlines() if ln.startswith("{")), None)
            assert line is not None, (c, proc.stdout[-3000:], proc.stderr[-3000:])
            docs.append(json.loads(line))
    else:  # one process (ASLR differs between runs): commands on the shell's stdin
        proc = subprocess.run([CLI, "--backend", host, "--run", f"{exe} {mode} {truth}",
                               "--break", "checkpoint"], input="\n".join(commands) + "\n",
                              capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, (host, proc.stderr[-2000:])
        docs = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
        assert len(docs) == len(commands), (host, proc.stdout[-2000:], proc.stderr[-2000:])
    return docs, json.loads(truth.read_text())


def by_state(ptlist: dict) -> dict[str, list[int]]:
    out = {s: [0, 0] for s in STATES}
    for c in ptlist["chunks"]:
        if c["state"] != "top":
            out[c["state"]][0] += 1
            out[c["state"]][1] += c["size"]
    return out


def check_agree(ptlist: dict, stats: dict) -> None:
    """ptstats' per-state counts and bytes are ptlist's; none is negative."""
    row = next(a for a in stats["arenas"] if a["addr"] == ptlist["arena"])
    got = {s: [row[f"{s}_count"], row[f"{s}_bytes"]] for s in STATES}
    assert got == by_state(ptlist), (got, by_state(ptlist))
    for a in stats["arenas"]:
        assert all(v >= 0 for k, v in a.items() if k.endswith(("_count", "_bytes"))), a
    assert all(v >= 0 for v in stats["totals"].values()), stats["totals"]


def check_gap(docs: list[dict], t: dict) -> None:
    ptlist, stats, check, arena = docs
    rows = ptlist["chunks"]
    top = arena["arenas"][0]["top"]
    assert rows[-1]["state"] == "top" and rows[-1]["addr"] == top, rows[-3:]
    assert "stopped" not in ptlist, ptlist.get("notes")
    addrs = {c["addr"] for c in rows}
    assert t["first"] in addrs and t["after"] in addrs
    assert any(c["addr"] > t["foreign"] and c["state"] != "top" for c in rows)
    assert all(not (t["foreign"] <= c["addr"] < t["foreign"] + 4096) for c in rows)
    check_agree(ptlist, stats)
    mi = stats["mallinfo2"]
    for k, v in t["mallinfo"].items():
        assert mi[k] & 0xffffffff == v, (k, mi[k], v)
    xml = Path(t["xml"]).read_text()
    heap0 = xml.split("</heap>")[0]
    fast = re.search(r'<total type="fast" count="(\d+)" size="(\d+)"/>', heap0)
    rest = re.search(r'<total type="rest" count="(\d+)" size="(\d+)"/>', heap0)
    assert rest, heap0[:500]
    row = stats["arenas"][0]
    # 2.43 has no fastbins and says nothing of them
    assert (row["fast_count"], row["fast_bytes"]) == \
        ((int(fast[1]), int(fast[2])) if fast else (0, 0))
    # "rest": every binned chunk and top; its bytes add the binned chunks' size words
    # with their flag bits (glibc sums p->size there)
    assert row["free_count"] + 1 == int(rest[1])
    assert 0 <= int(rest[2]) - (row["free_bytes"] + row["top_size"]) < 8 * row["free_count"]
    assert row["orphan_count"] == 0 and row["free_count"] >= 1  # the old top, freed
    assert check["findings"] == [], check["findings"]


GAP_COMMANDS = ["ptlist --json", "ptstats --json", "ptcheck --json", "ptarena --json"]


@pytest.fixture(scope="module")
def gap() -> Path:
    require("gdb")
    return build("sbrk_gap")


@pytest.mark.parametrize("host", HOSTS)
def test_walks_go_past_a_foreign_sbrk_in_every_host(gap, host):
    """ptlist reaches top across glibc's fenceposts; ptstats counts what ptlist lists
    and its mallinfo2 and free counts are the program's mallinfo and malloc_info;
    ptcheck has nothing to say about a heap glibc made itself."""
    docs, t = run_host(host, gap, "gap", GAP_COMMANDS)
    check_gap(docs, t)


@pytest.mark.parametrize("version", sorted(b.version for b in other_builds()))
def test_walks_go_past_a_foreign_sbrk_on_other_glibcs(version):
    b = next(b for b in other_builds() if b.version == version)
    exe = build("sbrk_gap", glibc=b)
    docs, t = run_host("gdb-mi", exe, "gap", GAP_COMMANDS)
    assert version.startswith(t["glibc"])
    check_gap(docs, t)


def test_ptchunk_follows_past_the_fenceposts(gap):
    """ptchunk -c from the last chunk of the first region goes on in the next one."""
    docs, t = run_host("gdb", gap, "gap", ["ptlist --json"])
    rows = docs[0]["chunks"]
    i = next(k for k, c in enumerate(rows[:-1]) if c["addr"] + c["size"] != rows[k + 1]["addr"])
    last, nxt = rows[i], rows[i + 1]
    assert last["addr"] < t["foreign"] < nxt["addr"]
    docs, _t = run_host("gdb", gap, "gap", [f"ptchunk {last['addr']:#x} -c 3 --json"])
    got = [c["addr"] for c in docs[0]["chunks"]]
    assert got == [r["addr"] for r in rows[i:i + 3]], (got, rows[i:i + 3])
    assert any("fencepost" in n["message"] for n in docs[0].get("notes", [])), docs[0]


def test_orphan_is_one_state_everywhere(gap):
    """A chunk marked free by its successor's PREV_INUSE and in no list is 'orphan' in
    ptlist, ptchunk, ptvis and ptstats ('free' is a chunk in a bin); ptcheck names it."""
    docs, t = run_host("gdb", gap, "orphan", [
        "ptlist --json", "ptstats --json", "ptvis --json", "ptcheck --json"])
    ptlist, stats, vis, check = docs
    v = t["victim"]
    assert {c["addr"]: c["state"] for c in ptlist["chunks"]}[v] == "orphan"
    check_agree(ptlist, stats)
    assert stats["arenas"][0]["orphan_count"] == 1
    vis_states = {c["addr"]: c["state"] for c in vis["chunks"]}
    assert vis_states[v] == "orphan", vis_states
    assert any(f["kind"] == "unlisted-free" and f["addr"] == v for f in check["findings"])
    docs, _t = run_host("gdb", gap, "orphan", [f"ptchunk {v:#x} --json"])
    assert docs[0]["chunks"][0]["state"] == "orphan"


@pytest.fixture(scope="module")
def corrupt() -> Path:
    require("gdb")
    return build("corrupt", cflags=("-O0",))


@pytest.mark.parametrize("mode", ["healthy", *MODES])
def test_ptstats_equals_ptlist_on_damaged_heaps(corrupt, mode):
    """On every damaged heap of corrupt.c, ptstats' counts are ptlist's, never negative."""
    docs, _t = run_host("gdb", corrupt, mode, ["ptlist --json", "ptstats --json"])
    check_agree(*docs)
