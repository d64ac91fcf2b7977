"""Free-list entries past a memory budget go to a temporary file (multiheap/spill.py),
and nothing a command says changes: the arrays behave as arrays, the sorted index
answers alike, and on a real process with long lists of every kind the gdb host's
JSON is the same with a tiny budget (everything spilled) as with the default one,
and equals the program's own truth (its frees, its mallinfo2)."""

from __future__ import annotations

import bisect
import json
import random
import re
from array import array

import pytest
from harness import build, free_locations, run_gdb

from multiheap import compact, spill
from multiheap.listed import Listed
from multiheap.spill import SpillArray, SpillBytes, SpillFile

COMMANDS = ["ptstats --json", "ptfree --json", "ptcheck --json", "ptlist --json",
            "ptfast --json", "pttcache --json", "ptbin --json"]
# the largest spill file of this gdb's sessions (its SpillFile objects), from gdb's Python
PROBE = ("python import gc, multiheap.spill as s; print('SPILLED', max([f.end for f in "
         "gc.get_objects() if isinstance(f, s.SpillFile)] or [0]))")


def _same_process(doc):
    """A document without thread ids (each run is another process of the program)."""
    if isinstance(doc, dict):
        return {k: _same_process(v) for k, v in doc.items() if k != "tid"}
    if isinstance(doc, list):
        return [_same_process(v) for v in doc]
    return doc


def _page_data(path) -> dict:
    """ptmap's packed data, less what differs between two runs of a program: thread
    ids, the title (its pid) and the user data shown (tcache's random key is in it)."""
    text = path.read_text()
    m = re.search(r'<script id="mh-data" type="application/json">(.*?)</script>', text, re.S)
    assert m, text[:300]
    doc = _same_process(json.loads(m.group(1)))
    del doc["hex"], doc["title"]
    return doc


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(spill, "BLOCK", 4)


def test_a_spill_array_reads_as_the_array_it_replaces(small_blocks):
    ref = [random.Random(7).randrange(1 << 48) for _ in range(103)]
    a = SpillArray(SpillFile())
    for v in ref[:50]:
        a.append(v)
    a.extend(ref[50:])
    assert a.spilled >= 96 and len(a.tail) < 4  # all but the last partial block
    assert len(a) == len(ref) and list(a) == ref and bool(a)
    assert [a[i] for i in range(-len(ref), len(ref))] == ref + ref
    for lo, hi in ((0, 103), (3, 9), (4, 8), (50, 101), (99, 103), (7, 7), (-5, None)):
        assert list(a[lo:hi]) == ref[lo:hi], (lo, hi)
    assert ref[61] in a and (1 << 60) not in a
    with pytest.raises(IndexError):
        a[103]
    del a[57:]  # a cut inside a spilled block
    assert list(a) == ref[:57]
    a.append(5)
    assert list(a) == ref[:57] + [5]
    del a[0:]
    assert len(a) == 0 and not a and list(a) == []


def test_a_sorted_spill_array_bisects_as_bisect_does(small_blocks, monkeypatch):
    monkeypatch.setattr(spill, "PAGE", 8)
    ref = sorted(random.Random(9).choices(range(0, 4000, 4), k=301))  # repeats too
    a = SpillArray(SpillFile(), ref)
    assert a.spilled
    for x in [-1, 0, 1, 3999, 4000, 5000] + ref[::7] + [v + 1 for v in ref[::11]]:
        assert a.bisect(x) == bisect.bisect_left(ref, x), x
        assert a.bisect(x, right=True) == bisect.bisect_right(ref, x), x
        assert [a[i] for i in range(len(ref))] == ref  # pages read serve these too
    a.append(9000)  # a change drops the pages read
    assert a.bisect(8000) == len(ref)


def test_spilled_bytes_come_back_in_pieces(monkeypatch):
    monkeypatch.setattr(SpillBytes, "HELD", 10)
    f = SpillFile()
    col = SpillBytes(f)
    data = bytes(random.Random(5).randrange(256) for _ in range(1000))
    for i in range(0, 1000, 7):
        col.append(data[i:i + 7])
    assert len(col) == 1000 and f.end >= 990  # all but what came after the last spill
    for n in (3, 9, 64, 999, 1000, 4096):
        pieces = list(col.pieces(n))
        assert b"".join(pieces) == data and all(len(p) == n for p in pieces[:-1]), n


def test_a_short_array_stays_a_plain_array(small_blocks):
    a = SpillArray(SpillFile(), [1, 2, 3])
    assert isinstance(a.compact(), array) and list(a.compact()) == [1, 2, 3]


def test_without_a_writable_file_entries_stay_in_memory(small_blocks, monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    f = SpillFile()
    a = SpillArray(f, range(40))
    assert f.end == 0 and a.spilled == 0 and list(a) == list(range(40))


def test_the_index_answers_alike_from_the_file(small_blocks, monkeypatch):
    monkeypatch.setattr(compact, "PIECE", 16)
    rnd = random.Random(3)
    addrs = rnd.sample(range(0x1000, 0x100000, 16), 300)
    lists = [("free", array("Q", addrs[:100]), 0), ("fast", array("Q", addrs[100:200]), 0x20),
             ("tcache", array("Q", addrs[200:] + addrs[:5]), 0)]  # 5 in two lists
    mem, disk = Listed(lists), Listed(lists, SpillFile())
    assert any(isinstance(r, SpillArray) for r in disk.runs)
    assert not any(isinstance(r, SpillArray) for r in mem.runs)
    assert disk.unique == mem.unique is False
    assert disk.repeated() == mem.repeated() == set(addrs[:5])
    for lo, hi in ((0, 1 << 64), (0x4000, 0x9000), (addrs[7], addrs[7] + 16)):
        assert disk.between(lo, hi) == mem.between(lo, hi)
    for a in addrs[:20] + [0x10, 0x7ff0]:
        assert disk.get(a) == mem.get(a)


def test_spilled_lists_change_no_answer(monkeypatch, tmp_path):
    """gdb on a live process with ~10,000 free chunks in tcache, fastbins, the unsorted,
    small and large bins: every list command's JSON, ptcheck's findings and ptmap's
    page are the same when every long list and column goes through the spill file;
    both equal the truth."""
    exe = build("manylists")
    runs = {}
    for block in ("64", None):
        if block:
            monkeypatch.setenv("MULTIHEAP_SPILL_BLOCK", block)
        else:
            monkeypatch.delenv("MULTIHEAP_SPILL_BLOCK", raising=False)
        page = tmp_path / f"map-{block}.html"
        r = run_gdb(exe, "20000", COMMANDS + [f"ptmap --html {page}", PROBE])
        runs[block] = r
        for c in COMMANDS:
            assert r.results[c]["error"] is None, (block, c, r.results[c]["error"])
    spilled, plain = runs["64"], runs[None]
    probe = {k: int(r.results[PROBE]["out"].split()[-1]) for k, r in runs.items()}
    assert probe["64"] > 100_000 and probe[None] == 0, probe  # the path taken, or not
    docs = {}
    for c in COMMANDS:
        docs[c] = json.loads(plain.results[c]["out"])
        assert _same_process(json.loads(spilled.results[c]["out"])) == \
            _same_process(docs[c]), c
    pages = [_page_data(tmp_path / f"map-{b}.html") for b in ("64", None)]
    assert pages[0] == pages[1] and len(pages[0]["addr"]) > 100_000  # ptmap's columns
    t = spilled.truth
    assert docs["ptstats --json"]["mallinfo2"] == t.mallinfo2
    where = free_locations(docs["ptfree --json"], 8)
    assert sorted(where) == sorted(t.mems("freed")) and len(where) == 10_000
    assert all(len(v) == 1 for v in where.values())
    kinds = {k for v in where.values() for k in v}
    assert kinds >= {"bin", "tcache"} | ({"fast"} if t.version < (2, 43) else set())
    assert docs["ptcheck --json"]["findings"] == []
