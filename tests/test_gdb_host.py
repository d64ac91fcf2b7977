"""gdb as a host: native commands with help, gdb expressions as addresses, tags kept
for the session, and `multiheap init gdb`."""

from __future__ import annotations

import subprocess

import pytest
from harness import VENV, build, run_gdb

CMDS = ["help ptchunk", "help user-defined", "ptchunk -m recs[0].mem --json",
        "ptchunk -m (char*)recs[1].mem+0 -c 2 --json", "ptmeta add recs[0].mem victim",
        "ptchunk -m recs[0].mem", "ptlist -c 8", "ptchunk -m recs[0].mem -x -v",
        "ptchunk -m $rdi"]


@pytest.fixture(scope="module")
def host():
    return run_gdb(build("scenario"), "basic", CMDS)


def test_help_is_the_parser_help(host):
    text = host.out("help ptchunk")
    assert "usage: ptchunk" in text and "-c COUNT, --count COUNT" in text and "--json" in text


def test_gdb_expressions_as_addresses(host):
    t, ps = host.truth, host.truth.pointer_size
    first, second = t.records[0], t.records[1]
    c = host.json("ptchunk -m recs[0].mem --json")["chunks"][0]
    assert c["mem"] == first["mem"] and c["addr"] == first["mem"] - 2 * ps
    assert c["state"] == "inuse" and c["size"] >= first["req"] + ps
    two = host.json("ptchunk -m (char*)recs[1].mem+0 -c 2 --json")["chunks"]
    assert two[0]["mem"] == second["mem"]
    assert two[1]["addr"] == two[0]["addr"] + two[0]["size"]


def test_tags_show_in_other_commands(host):
    assert "victim" in host.out("ptchunk -m recs[0].mem")
    assert "victim" in host.out("ptlist -c 8")


def test_hexdump_shows_the_programs_bytes(host):
    # live() fills each allocation with 'A'.
    assert "41 41 41 41" in host.out("ptchunk -m recs[0].mem -x -v").lower()


def test_address_outside_every_heap_says_so(host):
    text = host.out("ptchunk -m $rdi")  # $rdi is checkpoint()'s string argument
    assert "is in no arena's heap" in text and "try -m" not in text


def test_init_gdb_prints_a_source_line(tmp_path):
    out = subprocess.run([str(VENV / "bin" / "multiheap"), "init", "gdb"], capture_output=True,
                         text=True, check=True).stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("source ")]
    assert len(lines) == 1 and lines[0].endswith("plugins/gdb.py")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    for _ in range(2):  # idempotent
        subprocess.run([str(VENV / "bin" / "multiheap"), "init", "gdb", "--install"],
                       capture_output=True, text=True, check=True, env=env)
    assert (home / ".gdbinit").read_text().count(lines[0]) == 1
    # A gdb that reads that ~/.gdbinit knows the commands.
    res = subprocess.run(["gdb", "-batch", "-ex", "pthelp"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert "ptchunk" in res.stdout, res.stderr


N_RECS = 110


@pytest.fixture(scope="module", params=[False, True], ids=["x86_64", "i386"])
def one_by_one(request):
    """A session that only ever asks ptchunk: each state comes from the lists the
    chunk's size can be in, not from a full index of every free list."""
    cmds = [f"ptchunk -m recs[{i}].mem --json" for i in range(N_RECS)]
    return run_gdb(build("scenario", m32=request.param), "basic", cmds)


def test_ptchunk_state_of_every_record(one_by_one):
    t = one_by_one.truth
    fast = t.version < (2, 43)
    assert len(t.records) < N_RECS
    for i, r in enumerate(t.records):
        doc = one_by_one.json(f"ptchunk -m recs[{i}].mem --json")
        assert not doc.get("notes"), doc["notes"]  # every record is a real chunk
        c = doc["chunks"][0]
        assert c["mem"] == r["mem"]
        want = {"live": ("mmapped",) if r["req"] >= 128 * 1024 else ("inuse",),
                "tcache": ("tcache",), "binned": ("free", "tcache"),
                "fast_or_tcache": ("fast",) if fast else ("tcache",)}[r["kind"]]
        assert c["state"] in want, (i, r, c)


def test_expressions_never_call_target_functions():
    run = run_gdb(build("scenario"), "basic",
                  ["ptchunk (long)malloc(16)", "ptstats --json", "show may-call-functions"])
    err = run.error("ptchunk (long)malloc(16)")
    assert err and err.startswith("ptchunk: cannot evaluate") and "\n" not in err
    assert run.json("ptstats --json")["mallinfo2"] == run.truth.mallinfo2  # heap unchanged
    assert "on" in run.out("show may-call-functions")  # the user's setting is restored


def test_ptconfig_overrides(tmp_path, monkeypatch):
    exe = build("scenario")
    found = run_gdb(exe, "basic", ["ptconfig --json"]).json("ptconfig --json")["structures"]
    ma, mp = found["main_arena"]["addr"], found["mp_"]["addr"]
    # No debug info at all: neither gdb's nor multiheap's own debug-file reader.
    monkeypatch.setenv("MULTIHEAP_NO_DEBUG_FILES", "1")
    empty = tmp_path / "no-debug"
    empty.mkdir()
    set_cmd = f"ptconfig --main-arena {ma:#x} --mp {mp:#x} --json"
    run = run_gdb(exe, "basic", ["ptconfig --main-arena 0x1000 --json", set_cmd,
                                 "ptstats --json", "ptconfig --glibc 9.99"],
                  pre=(f"set debug-file-directory {empty}",))
    bad = run.error("ptconfig --main-arena 0x1000 --json")
    assert bad and bad.startswith("ptconfig: ") and "\n" not in bad
    s = run.json(set_cmd)["structures"]
    assert (s["main_arena"]["addr"], s["mp_"]["addr"]) == (ma, mp)
    assert s["main_arena"]["how"] == s["mp_"]["how"] == "set with ptconfig"
    assert run.json("ptstats --json")["mallinfo2"] == run.truth.mallinfo2
    assert run.error("ptconfig --glibc 9.99").startswith("ptconfig: ")
