"""Every host finds every mmapped chunk, live and on a core, and agrees with glibc.

tests/programs/mmaps.c makes mmapped chunks the ways programs do (malloc, calloc,
posix_memalign, realloc to a larger size, a second thread's malloc, and one whose
mapping the kernel merged with anonymous memory before it), prints their user pointers
and mallinfo2's hblks/hblkhd, and waits.  In the gdb plugin, the CLI's gdb/MI, lldb and
radare2, on the live process and on its gcore: ``ptlist --mmapped --json`` lists exactly
those pointers, ``ptstats``' mmapped count and bytes equal hblks and hblkhd, mp_'s
n_mmaps agrees, and no note says they differ.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from harness import PLUGIN_GDB, VENV, gdb_env, waiting_program

CLI = str(VENV / "bin" / "multiheap")
HOSTS = ["gdb", "gdb-mi", "lldb", "r2"]
COMMANDS = ["ptlist --mmapped --json", "ptstats --json", "ptparam --json"]


@pytest.fixture(scope="module")
def program():
    """The mmaps program waiting after checkpoint(), its gcore and its truth."""
    with waiting_program("mmaps", lambda t: [str(t), "wait"], marker="\n") as running:
        yield running



def _gdb_plugin(exe: Path, target: list[str]) -> dict[str, dict]:
    argv = ["gdb", "-nx", "-batch", "-q", "-ex", "set pagination off", "-ex",
            "set width 0", "-ex", f"source {PLUGIN_GDB}", *target]
    for c in COMMANDS:
        argv += ["-ex", "echo ==MH==\\n", "-ex", c]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=240,
                         env=gdb_env()).stdout
    parts = out.split("==MH==\n")[1:]
    assert len(parts) == len(COMMANDS), out[-2000:]
    return {c: json.loads(p.strip().splitlines()[0]) for c, p in zip(COMMANDS, parts)}


def _cli(backend: str, target: list[str]) -> dict[str, dict]:
    out = {}
    for c in COMMANDS:
        proc = subprocess.run([CLI, "--backend", backend, *target, *c.split()],
                              capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, f"{backend} {c}: {proc.stderr[-2000:]}"
        out[c] = json.loads(proc.stdout)
    return out


def _results(host: str, where: str, program) -> dict[str, dict]:
    exe, pid, core, _truth = program
    if host == "gdb":
        target = [str(exe), "-ex", f"core-file {core}"] if where == "core" else \
            ["-p", str(pid)]
        return _gdb_plugin(exe, target)
    target = ["--core", str(core), "--exe", str(exe)] if where == "core" else \
        ["--pid", str(pid)]
    return _cli(host, target)


def test_program_made_the_hard_cases(program):
    """The program really has a chunk whose mapping follows other anonymous memory."""
    _exe, _pid, _core, truth = program
    assert truth["merged"] == 1
    assert truth["hblks"] == len(truth["mmapped"]) == 7


@pytest.mark.parametrize("where", ["live", "core"])
@pytest.mark.parametrize("host", HOSTS)
def test_every_mmapped_chunk(program, host, where):
    _exe, pid, _core, truth = program
    res = _results(host, where, program)
    listed = res["ptlist --mmapped --json"]
    mems = sorted(c["addr"] + 16 for c in listed["chunks"])
    assert mems == sorted(truth["mmapped"]), (host, where, [hex(m) for m in mems])
    assert listed["count"] == truth["hblks"]
    assert all(c["state"] == "mmapped" and c["flags"] == 2 for c in listed["chunks"])
    assert "notes" not in listed, listed.get("notes")
    stats = res["ptstats --json"]
    assert stats["mmapped"] == {"count": truth["hblks"], "bytes": truth["hblkhd"]}
    assert stats["mallinfo2"]["hblks"] == truth["hblks"]
    assert stats["mallinfo2"]["hblkhd"] == truth["hblkhd"]
    assert not [n for n in stats.get("notes", []) if "mmapped" in n["message"]]
    mp = res["ptparam --json"]["mp"]
    assert (mp["n_mmaps"], mp["mmapped_mem"]) == (truth["hblks"], truth["hblkhd"])
    if where == "live":  # still there after the host detached
        os.kill(pid, 0)


def test_note_when_count_differs(program):
    """A chunk header the search cannot recognise: the count no longer matches mp_, and
    ptlist --mmapped and ptstats say so (a copy of the core with one header zeroed)."""
    exe, _pid, core, truth = program
    from multiheap.elffile import read_elf

    elf = read_elf(str(core))
    victim = truth["mmapped"][0] - 16
    data = bytearray(core.read_bytes())
    for _pt, off, va, fs, _ms in elf.phdrs:
        if va <= victim < va + fs:
            data[off + victim - va + 8:off + victim - va + 16] = bytes(8)
            break
    else:
        raise AssertionError("chunk not in the core")
    bad = core.with_name("damaged.core")
    bad.write_bytes(bytes(data))
    try:
        res = _cli("gdb-mi", ["--core", str(bad), "--exe", str(exe)])
    finally:
        bad.unlink()
    listed = res["ptlist --mmapped --json"]
    assert listed["count"] == truth["hblks"] - 1
    for cmd in ("ptlist --mmapped --json", "ptstats --json"):
        notes = [n["message"] for n in res[cmd].get("notes", [])]
        assert any(f"found {truth['hblks'] - 1} mmapped chunks" in n
                   and f"mp_ counts {truth['hblks']}" in n for n in notes), (cmd, notes)

