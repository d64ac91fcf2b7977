"""The gdb host against the scenario's own truth: live processes and core files.

Each check compares a command's JSON with what glibc itself reported inside the
program (mallinfo2, malloc_info) or with the addresses the program allocated and freed.
"""

from __future__ import annotations

import pytest
from conftest import JSON_COMMANDS, TEXT_COMMANDS
from harness import check_frees_found_once, expected_tcache

SCENARIOS = ["basic", "threads", "basic32"]


@pytest.fixture(params=SCENARIOS)
def runs(request):
    """Both runs (live, core) of one scenario."""
    return request.getfixturevalue(request.param)


@pytest.fixture(params=["live", "core"])
def run(request, runs):
    return runs[0] if request.param == "live" else runs[1]


def _has_fastbins(truth) -> bool:
    return truth.version < (2, 43)


def test_no_command_fails(run):
    for cmd in JSON_COMMANDS + TEXT_COMMANDS:
        assert run.error(cmd) is None, f"{cmd}: {run.error(cmd)}"
        assert "Traceback" not in run.out(cmd)


def test_mallinfo2_equals_the_targets_own(run):
    assert run.json("ptstats --json")["mallinfo2"] == run.truth.mallinfo2


def test_config(run):
    cfg = run.json("ptconfig --json")
    assert cfg["glibc"] == run.truth.glibc
    assert cfg["pointer_size"] == run.truth.pointer_size
    assert cfg["tcache"] is True
    assert cfg["safe_linking"] is (run.truth.version >= (2, 32))
    assert cfg["arch"] == ("x86_64" if run.truth.pointer_size == 8 else "i386")


def test_arenas_match_malloc_info(run):
    arenas = run.json("ptarena -l --json")["arenas"]
    assert len(arenas) == len(run.truth.arenas) == run.truth.threads + 1
    assert arenas[0]["main"] and not any(a["main"] for a in arenas[1:])
    for mine, theirs in zip(arenas, run.truth.arenas):
        assert mine["system_mem"] == theirs.system_current
    # Non-main arenas live in heaps (heap_info) that contain their top chunk.
    for a in arenas[1:]:
        assert a["heaps"], a
        assert any(h["start"] <= a["top"] < h["end"] for h in a["heaps"])


def test_bins_match_malloc_info(run):
    free = run.json("ptfree --json")
    for mine, theirs in zip(free["arenas"], run.truth.arenas):
        bins = sum(b["count"] for b in mine["bins"])
        assert bins == theirs.rest_count - 1  # malloc_info counts top among "rest"
        # ... and adds each binned chunk's raw size field (PREV_INUSE set: +1 each).
        assert sum(c["size"] for b in mine["bins"] for c in b["chunks"]) + bins \
            + _top_size(run, mine["addr"]) == theirs.rest_size
        fast = mine["fastbins"] or []
        assert sum(b["count"] for b in fast) == theirs.fast_count
        assert sum(c["size"] for b in fast for c in b["chunks"]) == theirs.fast_size


def _top_size(run, arena_addr: int) -> int:
    for a in run.json("ptarena -l --json")["arenas"]:
        if a["addr"] == arena_addr:
            return a["top_size"]
    raise AssertionError(f"no arena {arena_addr:#x}")


def test_ptbin_and_ptfast_agree_with_ptfree(run):
    free = run.json("ptfree --json")
    assert run.json("ptbin --json")["arenas"] == [
        {"addr": a["addr"], "bins": a["bins"]} for a in free["arenas"]]
    fast = run.json("ptfast --json")
    if _has_fastbins(run.truth):
        assert fast["arenas"] == [{"addr": a["addr"], "fastbins": a["fastbins"]}
                                  for a in free["arenas"]]


def test_every_freed_chunk_is_found_exactly_once(run):
    check_frees_found_once(run.json("ptfree --json"), run.truth)


def test_each_threads_tcache(run):
    t = run.truth
    tcaches = run.json("pttcache --json")["tcaches"]
    assert len(tcaches) == t.threads + 1
    by_tid = {tc["tid"]: {c["mem"] for b in tc["bins"] for c in b["chunks"]} for tc in tcaches}
    for tid, mems in expected_tcache(t).items():
        assert mems <= by_tid[tid], f"thread {tid}"
    for tc in tcaches:
        for b in tc["bins"]:
            assert b["count"] == len(b["chunks"])
            assert all(c["size"] == b["size"] for c in b["chunks"])


def test_ptlist_is_contiguous_and_holds_every_live_chunk(run):
    t, ps = run.truth, run.truth.pointer_size
    arenas = run.json("ptarena -l --json")["arenas"]
    lst = run.json("ptlist --json")
    assert lst["arena"] == arenas[0]["addr"]
    chunks = lst["chunks"]
    assert lst["count"] == len(chunks)
    for a, b in zip(chunks, chunks[1:]):
        assert a["addr"] + a["size"] == b["addr"], hex(a["addr"])
    assert chunks[-1]["addr"] == arenas[0]["top"] and chunks[-1]["state"] == "top"
    states = {c["addr"] + 2 * ps: c for c in chunks}
    main_tid = t.pid
    for r in t.records:
        if r["tid"] != main_tid or r["req"] >= 128 * 1024:
            continue
        c = states[r["mem"]]
        want = {"live": "inuse", "tcache": "tcache", "binned": ("free", "tcache"),
                "fast_or_tcache": "fast" if _has_fastbins(t) else "tcache"}[r["kind"]]
        assert c["state"] in (want if isinstance(want, tuple) else (want,)), hex(r["mem"])
        assert c["size"] >= r["req"] + ps


def test_mmapped_chunks(run):
    stats = run.json("ptstats --json")
    assert stats["mmapped"] == {"count": 2, "bytes": run.truth.mallinfo2["hblkhd"]}
    assert run.truth.mmap_count == 2


def test_live_equals_core(runs):
    live, core = runs
    for cmd in JSON_COMMANDS:
        a, b = live.json(cmd), core.json(cmd)
        if cmd.startswith("ptconfig"):
            assert (a.pop("state"), b.pop("state")) == ("live", "core")
        assert a == b, cmd


def test_stats_totals_add_up(run):
    stats = run.json("ptstats --json")
    mi = run.truth.mallinfo2
    tot = stats["totals"]
    assert tot["system_mem"] == mi["arena"]
    assert tot["fast_bytes"] == mi["fsmblks"] and tot["fast_count"] == mi["smblks"]
    # glibc's uordblks counts tcache chunks as in use, and a non-main arena's heap
    # header (heap_info + malloc_state) too: it is in system_mem but in no chunk.
    headers = mi["uordblks"] - tot["inuse_bytes"] - tot["tcache_bytes"]
    nonmain = len(stats["arenas"]) - 1
    assert headers == 0 if nonmain == 0 else 0 < headers < 4096 * nonmain
    assert tot["free_count"] + len(stats["arenas"]) == mi["ordblks"]


def test_text_output_names_what_json_holds(run):
    text = run.out("ptfree")
    free = run.json("ptfree --json")
    for a in free["arenas"]:
        assert f"{a['addr']:#x}" in text
        for b in a["bins"]:
            for c in b["chunks"]:
                assert f"{c['addr']:#x}" in text


def test_pthelp_lists_every_command(run):
    names = [c["name"] for c in run.json("pthelp --json")["commands"]]
    assert sorted(names) == sorted(["ptarena", "ptparam", "ptchunk", "ptlist", "ptbin",
                                    "ptfast", "pttcache", "ptfree", "ptstats", "ptmeta",
                                    "ptconfig", "pthelp", "ptvis", "ptcheck", "pttry",
                                    "ptfind", "ptmap", "pttrace", "pthistory"])


def test_mmapped_chunks_are_the_programs_big_allocations(run):
    t, ps = run.truth, run.truth.pointer_size
    mm = run.json("ptlist --mmapped --json")["chunks"]
    big = {r["mem"]: r["req"] for r in t.records if r["req"] >= 128 * 1024}
    assert {c["addr"] + 2 * ps for c in mm} == set(big)
    # A chunk may start a few bytes into its mapping (i386: 8, kept in prev_size so
    # that mem is 16-aligned); glibc's hblkhd counts whole mappings.
    for c in mm:
        assert c["state"] == "mmapped" and c["flags"] & 2
        assert big[c["addr"] + 2 * ps] + ps <= c["size"]
        assert (c["addr"] + c["size"]) % 4096 == 0 and c["addr"] % 4096 in (0, 8)
    assert sum(c["size"] + c["addr"] % 4096 for c in mm) == t.mallinfo2["hblkhd"]
