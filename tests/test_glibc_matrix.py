"""Every glibc we can run, with and without its debug info, against its own truth.

Cells: {2.31, 2.41, 2.43 (Debian's, unpacked by scripts/install/glibcs.sh), 2.36 (the
system's)} x {debug info, none}, plus i386 on the system glibc.  "none" points gdb's
debug-file-directory at an empty folder, so neither that build's nor the system's
libc6-dbg is found and multiheap must use its heuristics.  Each cell is one gdb
session on the threaded scenario (several arenas, a tcache per thread); its program
is built once per glibc.  One more cell: a static executable (system glibc) with
every symbol but the breakpoint's stripped.

The command line (``multiheap --run``, gdb/MI), lldb-16 (the plugin) and radare2 (the
``$pt*`` aliases in ``r2 -d``, on the single-threaded scenario) run the same cells.
Debian's other builds get their debug directory the way a user gives it: the CLI's
``--debug-dir`` (gdb's debug-file-directory; multiheap's own build-id reader stays
off, so "debug info" is gdb's), ``MULTIHEAP_DEBUG_DIRS`` for the lldb plugin (lldb's
debug-file-search-paths; the cell also checks that lldb itself loaded the file) and
for r2's ``#!pipe`` (multiheap's reader).  ``--backend lldb`` and ``--backend r2``
with ``--debug-dir`` run those builds' debug cells too.  Each is checked against its
own run's truth, like gdb (two runs of a threaded program need not give their
threads the same arenas, so the hosts' JSON is not compared).  Not on a core: gcore
of a 2.43 threaded program holds zeros for the thread stacks and TCBs (2.43 installs
its stack guard pages with madvise, and gdb then drops the whole mapping's contents).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Optional

import pytest
from glibcbuilds import other_builds
from harness import (
    BUILD_DIR,
    VENV,
    GlibcBuild,
    Run,
    Truth,
    build,
    expected_tcache,
    gdb_env,
    run_gdb,
)
from test_lldb import run_lldb
from test_r2 import run_r2

COMMANDS = ["ptconfig --json", "ptstats --json", "ptfree --json", "ptbin --json",
            "ptfast --json", "pttcache --json", "ptarena -l --json", "ptparam --json",
            "ptcheck --json", "ptlist --mmapped --json"]
BUILDS = {b.version: b for b in other_builds()}
CELLS = [(v, dbg) for v in sorted(BUILDS) + ["system", "i386"] for dbg in (True, False)]
CELLS.append(("static", False))
CLI_CELLS = [(v, d) for v in sorted(BUILDS) for d in (True, False)] + \
    [("system", True), ("i386", True), ("static", False)]
# lldb's check that it loaded libc's separate debug file itself
LLDB_SYMFILE = ("script print('SYMFILE', [m.GetSymbolFileSpec().fullpath for m in "
                "lldb.target.modules if m.GetFileSpec().basename == 'libc.so.6'])")


def _empty_dir() -> Path:
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    d = BUILD_DIR / "no-debug-info"
    d.mkdir(exist_ok=True)
    return d


_RUNS: dict[tuple[str, bool], Run] = {}
_EXES: dict[tuple[str, bool], Path] = {}  # the program of each gdb cell


def cell_run(glibc: str, debug: bool) -> Run:
    key = (glibc, debug)
    if key not in _RUNS:
        b: Optional[GlibcBuild] = BUILDS.get(glibc)
        exe = build("scenario", m32=glibc == "i386", glibc=b,
                    cflags=("-static",) if glibc == "static" else ())
        if glibc == "static":  # no symbol left but the breakpoint's
            stripped = exe.with_name(exe.name + "-stripped")
            subprocess.run(["objcopy", "--strip-all", "--keep-symbol=checkpoint",
                            str(exe), str(stripped)], check=True)
            exe = stripped
        ddir = (b.debug_dir if b else Path("/usr/lib/debug")) if debug else _empty_dir()
        # safe-path: let gdb load that glibc's own libthread_db (TLS through debug info);
        # no debug info also means multiheap's own build-id reader finds none
        if not debug:
            os.environ["MULTIHEAP_NO_DEBUG_FILES"] = "1"
        try:
            _RUNS[key] = run_gdb(exe, "threads", COMMANDS,
                                 pre=(f"set debug-file-directory {ddir}",
                                      "set auto-load safe-path /"))
        finally:
            os.environ.pop("MULTIHEAP_NO_DEBUG_FILES", None)
        _EXES[key] = exe
    return _RUNS[key]


def cli_run(glibc: str, debug: bool, backend: str = "gdb-mi") -> Run:
    """The same commands through ``multiheap --run`` (one CLI process; gdb/MI unless
    ``backend``), with ``--debug-dir`` for Debian's other builds' debug cells.  r2 runs
    the single-threaded scenario (r2 6.1.8 deadlocks on the threaded one)."""
    key = (f"cli-{backend}-{glibc}", debug)
    if key not in _RUNS:
        cell_run(glibc, debug)
        exe = _EXES[(glibc, debug)]
        mode = "basic" if backend == "r2" else "threads"
        truth = BUILD_DIR / f"{exe.name}-cli-{backend}-{'debug' if debug else 'nodebug'}.json"
        b = BUILDS.get(glibc)
        # a sysroot stands for its usr/lib/debug: give one form to gdb, the other to the rest
        dirs = ["--debug-dir", str(b.root if backend == "gdb-mi" else b.debug_dir)] \
            if debug and b else []
        # multiheap's own build-id reader: off without debug info, and for gdb/MI (so that
        # "debug info" is gdb's own); r2 has nothing else
        env = dict(gdb_env(), MULTIHEAP_NO_DEBUG_FILES="" if debug else "1")
        env.pop("MULTIHEAP_DEBUG_DIRS", None)
        proc = subprocess.run([str(VENV / "bin" / "multiheap"), "--backend", backend, *dirs,
                               "--run", f"{exe} {mode} {truth}", "--break", "checkpoint"],
                              input="\n".join(COMMANDS) + "\n",
                              capture_output=True, text=True, env=env, timeout=240)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        assert len(lines) == len(COMMANDS), proc.stdout[-2000:] + proc.stderr[-2000:]
        _RUNS[key] = Run(Truth.load(truth), {c: {"out": ln, "error": None}
                                             for c, ln in zip(COMMANDS, lines)})
    return _RUNS[key]


def _debug_env(glibc: str, debug: bool) -> dict[str, str]:
    """What a plugin user sets: no debug files at all, or the build's debug directory."""
    b = BUILDS.get(glibc)
    if not debug:
        return {"MULTIHEAP_NO_DEBUG_FILES": "1"}
    return {"MULTIHEAP_DEBUG_DIRS": str(b.debug_dir)} if b else {}


def _with_env(extra: dict[str, str], fn, *args, **kwargs):
    """``fn(...)`` with ``extra`` in os.environ (the drivers pass os.environ on)."""
    os.environ.update(extra)
    try:
        return fn(*args, **kwargs)
    finally:
        for k in extra:
            os.environ.pop(k, None)


def lldb_run(glibc: str, debug: bool) -> Run:
    """The same commands in lldb-16 with the plugin (one lldb process)."""
    key = ("lldb-" + glibc, debug)
    if key not in _RUNS:
        cell_run(glibc, debug)
        _RUNS[key] = _with_env(_debug_env(glibc, debug), run_lldb, _EXES[(glibc, debug)],
                               "threads", COMMANDS + [LLDB_SYMFILE])
    return _RUNS[key]


def r2_run(glibc: str, debug: bool) -> Run:
    """The aliases of ``multiheap init r2`` inside ``r2 -d``, on the single-threaded
    scenario (r2 6.1.8 deadlocks on the threaded one).  r2 reads no debug files: "debug
    info" is multiheap's own reader of libc's build-id debug file."""
    key = ("r2-" + glibc, debug)
    if key not in _RUNS:
        cell_run(glibc, debug)
        exe = _EXES[(glibc, debug)]
        truth = BUILD_DIR / f"{exe.name}-r2-{'debug' if debug else 'nodebug'}.json"
        out = _with_env(_debug_env(glibc, debug), run_r2, [str(exe), "basic", str(truth)],
                        COMMANDS, debug=True, pre=("db sym.checkpoint", "dc"))
        results = {}
        for c in COMMANDS:
            lines = [ln for ln in out[c].splitlines() if ln.strip()]
            ok = len(lines) == 1 and lines[0].startswith("{")
            results[c] = {"out": lines[0] if ok else "", "error": None if ok else out[c]}
        _RUNS[key] = Run(Truth.load(truth), results)
    return _RUNS[key]


R2_CELLS = [(v, d) for v in sorted(BUILDS) for d in (True, False)] + \
    [("system", True), ("system", False), ("static", False)]
HOSTS = {"gdb": cell_run, "cli": cli_run, "lldb": lldb_run, "r2": r2_run,
         "cli-lldb": lambda v, d: cli_run(v, d, "lldb"),
         "cli-r2": lambda v, d: cli_run(v, d, "r2")}
ALL = [("gdb", v, d) for v, d in CELLS] + [(h, v, d) for h in ("cli", "lldb")
                                           for v, d in CLI_CELLS] + \
    [("r2", v, d) for v, d in R2_CELLS] + \
    [(h, v, True) for h in ("cli-lldb", "cli-r2") for v in sorted(BUILDS)]


@pytest.fixture(params=ALL, ids=[f"{h}-{v}-{'debug' if d else 'nodebug'}" for h, v, d in ALL])
def cell(request) -> tuple[Run, bool]:
    host, glibc, debug = request.param
    return HOSTS[host](glibc, debug), debug


def test_config_says_how(cell):
    run, debug = cell
    cfg = run.json("ptconfig --json")
    assert cfg["glibc"] == run.truth.glibc
    st = cfg["structures"]
    for name in ("main_arena", "mp_"):
        want = "debug info" if debug else "heuristic"
        assert st[name]["how"].startswith(want), st
    # The tcache is a TLS variable: gdb reads it through libthread_db, which it cannot
    # load for a glibc newer than its own (2.43 here); heuristics step in there.
    tc = st["tcache"]
    assert tc["how"].startswith(("debug info", "heuristic") if debug else "heuristic"), st
    assert tc["threads_found"] == tc["threads"] == run.truth.threads + 1


@pytest.mark.parametrize("glibc", sorted(BUILDS))
def test_lldb_loads_the_builds_debug_file(glibc):
    # MULTIHEAP_DEBUG_DIRS reached lldb's own search paths (not only multiheap's reader)
    out = lldb_run(glibc, True).results[LLDB_SYMFILE]["out"]
    assert "SYMFILE" in out and str(BUILDS[glibc].debug_dir / ".build-id") in out, out


def test_ptcheck_finds_nothing_on_a_healthy_heap(cell):
    """No false alarm: the scenario's healthy heap gives no findings in this cell."""
    run, _debug = cell
    doc = run.json("ptcheck --json")
    assert doc["findings"] == [] and doc["count"] == 0, doc["findings"][:5]


def test_every_mmapped_chunk_is_found(cell):
    """The program's big allocations are the mmapped chunks listed, and nothing is
    left over for a note (2.43 changed their layout: prev_size + size + a header)."""
    run, _ = cell
    t, ps = run.truth, run.truth.pointer_size
    big = sorted(r["mem"] for r in t.records if r["kind"] == "live" and r["req"] >= 128 << 10)
    assert len(big) == t.mallinfo2["hblks"] == 2
    listed = run.json("ptlist --mmapped --json")["chunks"]
    assert sorted(c["addr"] + 2 * ps for c in listed) == big
    notes = run.json("ptstats --json").get("notes", [])
    assert not [n for n in notes if "mmapped" in n["message"]], notes


def test_mallinfo_equals_the_targets_own(cell):
    run, _ = cell
    assert run.json("ptstats --json")["mallinfo2"] == run.truth.mallinfo2


def test_bins_and_fastbins_match_malloc_info(cell):
    run, _ = cell
    arenas = run.json("ptarena -l --json")["arenas"]
    bins = run.json("ptbin --json")["arenas"]
    fast = run.json("ptfast --json")
    assert len(arenas) == len(bins) == len(run.truth.arenas) == run.truth.threads + 1
    has_fast = run.truth.version < (2, 43)
    for i, (a, b, theirs) in enumerate(zip(arenas, bins, run.truth.arenas)):
        count = sum(x["count"] for x in b["bins"])
        size = sum(c["size"] for x in b["bins"] for c in x["chunks"])
        assert count == theirs.rest_count - 1, f"arena {i}"  # malloc_info counts top
        assert size + count + a["top_size"] == theirs.rest_size, f"arena {i}"
        assert a["system_mem"] == theirs.system_current
        if has_fast:
            fb = fast["arenas"][i]["fastbins"]
            assert sum(x["count"] for x in fb) == theirs.fast_count, f"arena {i}"
            assert sum(c["size"] for x in fb for c in x["chunks"]) == theirs.fast_size
    if not has_fast:
        assert theirs.fast_count == 0
        assert "no fastbins" in repr(fast)


def test_tcache_holds_the_truths_records(cell):
    run, _ = cell
    t = run.truth
    tcaches = run.json("pttcache --json")["tcaches"]
    assert len(tcaches) == t.threads + 1
    by_tid = {tc["tid"]: {c["mem"] for b in tc["bins"] for c in b["chunks"]} for tc in tcaches}
    expected = expected_tcache(t)
    assert len(expected) == t.threads + 1
    for tid, mems in expected.items():
        assert mems <= by_tid[tid], f"thread {tid}"


def test_pttcache_lists_only_bins_with_chunks(cell):
    # On 2.42+ an empty bin's num_slots holds its limit, not 0: still not listed.
    run, _ = cell
    for tc in run.json("pttcache --json")["tcaches"]:
        for b in tc["bins"]:
            assert b["chunks"], (tc["tid"], b)
