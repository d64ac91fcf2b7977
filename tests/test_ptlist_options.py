"""ptlist's filters, preview and summary on a real process, checked against the
program's own account of its chunks (tests/programs/listopts.c: sizes no other
allocation has, known states, known contents), in gdb and across the hosts."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from harness import PLUGIN_GDB, build, gdb_env
from test_consistency import run_host

HDR = 16  # x86_64: two size_t


@pytest.fixture(scope="module")
def exe():
    return build("listopts")


def chunks(truth: dict, group: str, freed=None) -> set[int]:
    return {r["chunk"] for r in truth["records"]
            if r["group"] == group and (freed is None or r["freed"] == freed)}


def printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)


# each filter, and what the program says it must give
CASES = [
    ("--state inuse --min-size 0x1f0 --max-size 496", lambda t: chunks(t, "A")),
    ("--state tcache --min-size 736 --max-size 0x2e0", lambda t: chunks(t, "B", 1)),
    ("--state inuse --min-size 0x2e0 --max-size 0x2e0", lambda t: chunks(t, "B", 0)),
    ("--state free --min-size 0x600 --max-size 1536", lambda t: chunks(t, "D", 1)),
    ("--state inuse --min-size 0x600 --max-size 0x600", lambda t: chunks(t, "D", 0)),
    ("--state fast,tcache,free --min-size 0x60 --max-size 0x60", lambda t: chunks(t, "C")),
]
PREVIEW = "ptlist --state inuse --min-size 0x1f0 --max-size 0x1f0 --preview 16 --json"


def test_filters_give_exactly_the_programs_chunks(exe):
    cmds = [f"ptlist {f} --json" for f, _ in CASES] + ["ptlist --json", PREVIEW,
                                                        "ptlist --summary --json"]
    docs, truth = run_host("gdb", exe, "x", cmds)
    full = docs[len(CASES)]["chunks"]
    for (flt, want), doc in zip(CASES, docs):
        got = [c["addr"] for c in doc["chunks"]]
        assert set(got) == want(truth), flt
        assert doc["count"] == len(got) and got == sorted(got), flt
        # the same rows as the whole list, filtered here
        states = re.search(r"--state (\S+)", flt).group(1).split(",")
        lo, hi = (int(x, 0) for x in re.findall(r"--m..-size (\S+)", flt))
        assert doc["chunks"] == [c for c in full if c["state"] in states
                                 and lo <= c["size"] <= hi], flt
    # preview: the first 16 bytes the program wrote, printable or '.'
    prev = docs[len(CASES) + 1]["chunks"]
    want = {c: printable((b"chunk-A-%02d\x01\x02tail" % i).ljust(16, b"\0"))
            for i, c in enumerate(sorted(chunks(truth, "A")))}
    assert {c["addr"]: c["preview"] for c in prev} == want
    # summary: count and bytes per (size, state), adding up to the whole list
    summ = docs[len(CASES) + 2]
    by = {(s["size"], s["state"]): (s["count"], s["bytes"]) for s in summ["sizes"]}
    assert by[(0x1f0, "inuse")] == (12, 12 * 0x1f0)
    assert by[(0x2e0, "tcache")] == (7, 7 * 0x2e0) and by[(0x2e0, "inuse")] == (3, 3 * 0x2e0)
    assert by[(0x600, "free")] == (3, 3 * 0x600) and by[(0x600, "inuse")] == (5, 5 * 0x600)
    assert summ["count"] == len(full) and summ["bytes"] == sum(c["size"] for c in full)
    assert sum(c for c, _b in by.values()) == len(full)


def test_text_output_matches_json_and_bad_input_is_one_line(exe):
    flt = "--state tcache --min-size 0x2e0 --max-size 0x2e0 --preview 8"
    args = ["gdb", "-nx", "-batch", "-q", "-ex", "set pagination off", "-ex", "set width 0",
            "-ex", f"source {PLUGIN_GDB}", "-ex", "break checkpoint", "-ex", "run x /dev/null"]
    for c in (f"ptlist {flt}", f"ptlist {flt} --json", "ptlist --state nope",
              "ptlist --min-size 12q", "ptlist --preview 99999", "ptlist --summary"):
        args += ["-ex", "echo ==MH==\\n", "-ex", c]
    proc = subprocess.run([*args, "-ex", "echo ==MH==\\n", "-ex", "kill", str(exe)],
                          capture_output=True, text=True, timeout=240, env=gdb_env())
    parts = proc.stdout.split("==MH==\n")[1:7]
    text, doc = parts[0], json.loads(parts[1])
    rows = [ln.split() for ln in text.splitlines() if ln.strip().startswith("0x")]
    assert [int(r[0], 16) for r in rows] == [c["addr"] for c in doc["chunks"]]
    assert [r[4] for r in rows] == [c["preview"] for c in doc["chunks"]]
    assert len(rows) == 7 and all(r[3] == "tcache" and int(r[1], 16) == 0x2e0 for r in rows)
    assert f"count: {len(rows)}" in text
    err = proc.stderr
    for bad in ("unknown state 'nope'", "not a size: '12q'", "more than 4096 bytes"):
        line = next(ln for ln in err.splitlines() if bad in ln)
        assert line.startswith("ptlist: ") and "Traceback" not in err
    summary = parts[5]
    assert re.search(r"0x1f0\s+inuse\s+12\s+0x1740", summary), summary


@pytest.mark.parametrize("host", ["gdb-mi", "lldb", "r2"])
def test_every_host_gives_the_same_filtered_json(exe, host):
    # previews of in-use chunks only: free ones hold pointers, which ASLR changes
    cmds = ["ptlist --state inuse,tcache,free --min-size 0x1f0 --max-size 0x600 --json",
            "ptlist --state inuse --min-size 0x1f0 --max-size 0x600 --preview 12 --json"]
    ref, ref_truth = run_host("gdb", exe, "x", cmds)
    docs, truth = run_host(host, exe, "x", cmds)

    def relative(doc: dict, t: dict) -> list[tuple]:
        base = min(r["chunk"] for r in t["records"])  # ASLR: each run has its own heap
        return [(c["addr"] - base, c["size"], c["flags"], c["state"], c.get("preview"))
                for c in doc["chunks"]]

    for doc, want in zip(docs, ref):
        assert relative(doc, truth) == relative(want, ref_truth)
    assert {c["addr"] for c in docs[0]["chunks"]} >= \
        {r["chunk"] for r in truth["records"] if r["group"] != "C"}
    assert any(c["preview"] == "chunk-A-00.." for c in docs[1]["chunks"])
