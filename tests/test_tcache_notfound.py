"""The tcache is found in r2 as in the other hosts, and when it is not, every command
that depends on it says so instead of counting its chunks as in use.

tests/programs/tls_tcache.c has thread-local variables of its own (as perl has): its
TLS block comes before libc's and holds 0 where libc's ``tcache`` would be, which is
what radare2's search took for the tcache pointer before.  The notes are checked with
``ptconfig --tcache-offset`` sending the search to an unreadable slot and to a pointer
whose struct is unreadable.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from harness import VENV, waiting_program

CLI = str(VENV / "bin" / "multiheap")


@pytest.fixture(scope="module")
def program():
    """tls_tcache waiting after checkpoint(), its gcore, and its truth."""
    with waiting_program("tls_tcache", lambda t: ["wait", str(t)], marker="\n") as running:
        yield running



def _cli(backend: str, target: list[str], cmd: str) -> dict:
    proc = subprocess.run([CLI, "--backend", backend, *target, *cmd.split()],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _shell(backend: str, target: list[str], cmds: list[str]) -> list[dict]:
    """Commands in one CLI session (the shell, fed on stdin): each JSON document."""
    proc = subprocess.run([CLI, "--backend", backend, *target], input="\n".join(cmds) + "\n",
                          capture_output=True, text=True, timeout=240)
    docs = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(docs) == len(cmds), proc.stdout[-2000:] + proc.stderr[-2000:]
    return docs


def _tcache_mems(doc: dict) -> set[int]:
    return {c["mem"] for tc in doc["tcaches"] for b in tc["bins"] for c in b["chunks"]}


@pytest.mark.parametrize("where", ["live", "core"])
def test_r2_finds_the_tcache(program, where):
    exe, pid, core, truth = program
    target = ["--core", str(core), "--exe", str(exe)] if where == "core" else \
        ["--pid", str(pid)]
    mine = _cli("r2", target, "pttcache --json")
    theirs = _cli("gdb-mi", target, "pttcache --json")
    assert set(truth["tcache"]) <= _tcache_mems(mine)
    assert _tcache_mems(mine) == _tcache_mems(theirs)
    assert [tc["addr"] for tc in mine["tcaches"]] == [tc["addr"] for tc in theirs["tcaches"]]
    assert "notes" not in mine, mine.get("notes")
    stats = _cli("r2", target, "ptstats --json")
    assert stats["totals"]["tcache_count"] == len(_tcache_mems(theirs))


# 0x7000000000 past the thread pointer: nothing mapped (the slot is unreadable);
# 0x28: the stack guard, a random word (the struct it points to is unreadable)
@pytest.mark.parametrize("offset", ["0x7000000000", "0x28"])
@pytest.mark.parametrize("backend", ["gdb-mi", "r2"])
def test_notes_when_the_tcache_is_not_found(program, backend, offset):
    _exe, pid, _core, truth = program
    freed = truth["tcache"][0]
    cmds = [f"ptconfig --tcache-offset {offset} --json", "pttcache --json",
            "ptfree --json", "ptstats --json", "ptlist --json",
            f"ptchunk -m {freed:#x} --json", "ptbin --json"]
    docs = dict(zip(cmds, _shell(backend, ["--pid", str(pid)], cmds)))
    for cmd in cmds[1:6]:
        notes = [n for n in docs[cmd].get("notes", []) if n.get("tcache") == "not found"]
        assert len(notes) == 1, (cmd, docs[cmd].get("notes"))
        assert notes[0]["tid"] == pid and "tcache not found" in notes[0]["message"]
    assert not docs["ptbin --json"].get("notes")  # bins do not depend on the tcache
    tc = docs["pttcache --json"]["tcaches"][0]
    assert tc["bins"] == [] and (tc["addr"] is None) == (offset != "0x28")
    assert docs["ptstats --json"]["totals"]["tcache_count"] == 0
    assert docs[f"ptchunk -m {freed:#x} --json"]["chunks"][0]["state"] == "inuse"
