"""Corrupted heaps and bad arguments in gdb: a marked stop or one clear line, no
traceback, no hang, and the target left as it was."""

from __future__ import annotations

import re
import subprocess

import pytest
from harness import PLUGIN_GDB, build, gdb_env, run_gdb

ERRORS = {
    "ptchunk 0x10": r"^ptchunk: .*0x10.*",
    "ptchunk no_such_symbol": r"^ptchunk: cannot evaluate 'no_such_symbol'",
    "ptchunk": r"^ptchunk: the following arguments are required: ADDR",
    "ptchunk -c 0 &main_arena": r"^ptchunk: -c must be at least 1$",
    "ptchunk -c x 0x10": r"^ptchunk: argument -c/--count: not a whole number: .x.",
    "ptbin -i 999": r"^ptbin: bin index must be 1\.\.127$",
    "ptarena 0x1234": r"^ptarena: 0x1234 is not an arena \(arenas: 0x[0-9a-f]+\)$",
    "pttcache -t 99": r"^pttcache: no thread 99",
    "ptlist --bogus": r"^ptlist: unrecognized arguments: --bogus",
    "ptmeta add": r"^ptmeta: ",
}


@pytest.fixture(scope="module")
def cycle():
    cmds = ["ptfast --json", "ptfree --json", "ptstats --json", "pttcache --json", "ptfast",
            "ptlist --json"]
    return run_gdb(build("scenario"), "cycle", cmds, timeout=120)


@pytest.fixture(scope="module")
def badsize():
    cmds = ["ptlist", "ptlist --json", "ptstats --json", "ptchunk -c 50 --json &main_arena",
            *ERRORS]
    return run_gdb(build("scenario"), "badsize", cmds, timeout=120)


def test_cyclic_list_is_a_marked_stop(cycle):
    t = cycle.truth
    head = t.mems("fast_or_tcache")[-1]  # the program made this list head point to itself
    ps = t.pointer_size
    for cmd in ("ptfast --json", "ptfree --json", "ptstats --json"):
        notes = cycle.json(cmd).get("notes", [])
        assert any("cycle" in n["reason"] and n["addr"] == head - 2 * ps for n in notes), cmd
    fast = cycle.json("ptfast --json")["arenas"][0]["fastbins"]
    assert [c["addr"] for b in fast for c in b["chunks"]] == [head - 2 * ps]
    assert re.search(r"stopped at 0x[0-9a-f]+: cycle", cycle.out("ptfast"))
    # Everything else still reads: the tcache and the heap walk are intact.
    assert cycle.json("ptlist --json").get("stopped") is None
    assert sum(len(b["chunks"]) for tc in cycle.json("pttcache --json")["tcaches"]
               for b in tc["bins"]) == len(t.mems("tcache"))


def test_corrupted_size_stops_the_walk_where_it_is(badsize):
    t, ps = badsize.truth, badsize.truth.pointer_size
    bad = t.records[5]["mem"] - 2 * ps  # the program overwrote this chunk's size
    lst = badsize.json("ptlist --json")
    assert lst["stopped"]["addr"] == bad
    assert re.search("runs past the heap end|runs into the top chunk", lst["stopped"]["reason"])
    assert lst["chunks"][-1]["addr"] + lst["chunks"][-1]["size"] == bad
    assert re.search(rf"walk stopped at {bad:#x}: size 0x[0-9a-f]+ "
                     r"runs (past the heap end|into the top chunk)", badsize.out("ptlist"))
    stats = badsize.json("ptstats --json")
    assert any(n["addr"] == bad for n in stats["notes"])
    chunks = badsize.json("ptchunk -c 50 --json &main_arena")
    assert chunks["command"] == "ptchunk"


@pytest.mark.parametrize("cmd", list(ERRORS))
def test_bad_arguments_give_one_clear_line(badsize, cmd):
    err = badsize.error(cmd)
    assert err is not None, f"{cmd} did not fail"
    assert "\n" not in err.strip() and "Traceback" not in err and "internal error" not in err
    assert re.search(ERRORS[cmd], err), err


def test_no_process_is_one_line(tmp_path):
    # gdb with only the executable loaded: no memory to read yet.
    exe = build("scenario")
    out = subprocess.run(["gdb", "-nx", "-batch", "-q", "-ex", f"source {PLUGIN_GDB}",
                          "-ex", "ptstats", "-ex", "ptchunk 0x1000", "-ex", "echo done\\n",
                          str(exe)], env=gdb_env(), capture_output=True, text=True,
                         timeout=60)
    assert "Traceback" not in out.stdout + out.stderr
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("pt")]
    assert len(errors) == 2, out.stderr
    assert all("no process" in ln or "no target" in ln for ln in errors), errors


def test_enormous_top_size_is_a_marked_stop_not_a_huge_read():
    run = run_gdb(build("scenario"), "badtop", ["ptstats --json", "ptlist --json", "ptarena",
                                                 "ptfree --json"], timeout=120)
    for cmd in ("ptstats --json", "ptlist --json", "ptfree --json"):
        assert run.error(cmd) is None, run.error(cmd)
    notes = run.json("ptlist --json")["notes"]
    assert any("runs past system_mem" in n["message"] for n in notes), notes
    assert "runs past system_mem" in run.out("ptarena")


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_musl_is_refused_plainly(static):
    exe = build("plain", cc="musl-gcc", cflags=("-static",) if static else ())
    out = subprocess.run(["gdb", "-nx", "-batch", "-q", "-ex", f"source {PLUGIN_GDB}",
                          "-ex", "break checkpoint", "-ex", "run", "-ex", "ptstats",
                          "-ex", "ptchunk 0x1000", "-ex", "ptconfig", str(exe)],
                         env=gdb_env(), capture_output=True, text=True, timeout=60)
    assert "Traceback" not in out.stdout + out.stderr
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("pt")]
    assert len(errors) == 2 and all("glibc not detected" in e for e in errors), out.stderr
    if not static:  # the loader names it
        assert "musl libc" in errors[0]
    assert "glibc: -" in out.stdout  # ptconfig says it found none, and invents nothing
