"""The engine on memory images of every glibc from 2.23 to 2.43, x86_64 and i386.

The images (tests/imagebuild.py) are built from the layout tables with each version's
rules: tcache from 2.26 (u8 counts, u16 from 2.30, num_slots counting down and 76
bins from 2.42), the tcache key (2.29, random from 2.34), safe-linking (2.32),
have_fastchunks (2.27), mp_'s fields (max_total_mem until 2.24, thp/hp from 2.35,
thp_mode in 2.43), heap_info.pagesize (2.35), a one-byte global_max_fast (2.37), no
fastbins (2.43), i386's 16-byte alignment (2.26).  The engine must find exactly what
was placed, with symbols and without (heuristics), and refuse corrupted guesses.
"""

from __future__ import annotations

import json

import pytest
from imagebuild import TCACHE_KEY, build_image

from adapters.image import ImageTarget
from multiheap.commands import run_command
from multiheap.discovery import discover as locate
from multiheap.errors import NotFoundError
from multiheap.heap import Heap
from multiheap.layouts import Params, layout
from multiheap.session import Session

VERSIONS = [(2, m) for m in range(23, 44)]
CASES = [(v, sz) for v in VERSIONS for sz in (8, 4)]
IDS = [f"2.{v[1]}-{'x86_64' if sz == 8 else 'i386'}" for v, sz in CASES]


def _json(session: Session, cmd: str) -> dict:
    name, _, rest = cmd.partition(" ")
    r = run_command(session, name, rest + " --json")
    assert r.status == 0 and not r.error, f"{cmd}: {r.error}"
    return json.loads(r.output)


def _check_lists(heap: Heap, img) -> None:
    exp, p = img.expected, img.params
    arenas = heap.arenas()
    assert [a.addr for a in arenas] == [img.main_arena, img.arena2]
    assert not any(a.stops for a in arenas)
    main = arenas[0]
    bins = {fl.index: list(fl.chunks) for fl in heap.lists.bins(main) if fl.chunks}
    assert bins == exp.bins
    assert all(fl.stop is None for fl in heap.lists.bins(main))
    fast = {fl.index: list(fl.chunks) for fl in heap.lists.fastbins(main) if fl.chunks}
    assert fast == exp.fast
    assert all(fl.stop is None for fl in heap.lists.fastbins(main))
    tcaches = heap.lists.tcaches()
    if not p.has_tcache:
        assert tcaches == []
        return
    assert {tc.thread.num: tc.addr for tc in tcaches} == exp.tcache_structs
    for tc in tcaches:
        got = {fl.index: [c + 2 * img.ptr_size for c in fl.chunks]
               for fl in tc.bins if fl.chunks}
        assert got == exp.tcache[tc.thread.num], f"thread {tc.thread.num}"
        for fl in tc.bins:
            assert fl.stop is None, fl.stop
            n = len(fl.chunks)
            # counts: u8 before 2.30, u16 after; 2.42+ num_slots counts down
            want = p.tcache_fill_count - n if img.version >= (2, 42) else n
            assert fl.count_field == want, (tc.thread.num, fl.index)
        assert len(tc.bins) == (76 if img.version >= (2, 42) else 64)


@pytest.mark.parametrize("version,sz", CASES, ids=IDS)
def test_engine_finds_what_was_placed(version, sz):
    img = build_image(version, sz)
    s = Session(img.target)
    heap = s.heap()
    assert heap.cfg.how["main_arena"].startswith("debug info")
    _check_lists(heap, img)
    stats = _json(s, "ptstats")
    assert stats["mallinfo2"] == img.expected.mallinfo2
    assert stats["mmapped"] == {"count": 1, "bytes": 0x21000}
    # the mmapped chunk itself, in this version's layout (2.43: size + offset + header)
    assert heap.mmapped.chunks() == img.expected.mmapped
    assert heap.mmapped.note() is None and "notes" not in stats
    # every chunk of the second arena's heap, after heap_info (2.35: + pagesize)
    # and its malloc_state, is walked to top with nothing left unexplained
    a2 = heap.arenas()[1]
    Lh = layout("heap_info", version, sz)
    Ls = layout("malloc_state", version, sz)
    start = img.arena2 + Ls.size
    start += (-(start + 2 * sz)) % Params(version, sz).malloc_alignment
    assert a2.heaps[0].start == start and a2.addr == a2.heaps[0].info + Lh.size
    assert "pagesize" in a2.heaps[0].fields if version >= (2, 35) else \
        "pagesize" not in a2.heaps[0].fields


@pytest.mark.parametrize("version,sz", CASES, ids=IDS)
def test_heuristics_without_symbols(version, sz):
    """No debug info, no libc file: memory scans must land on the same structures."""
    img = build_image(version, sz, symbols=False, tls_symbols=False)
    s = Session(img.target)
    heap = s.heap()
    assert (heap.cfg.main_arena, heap.cfg.mp) == (img.main_arena, img.mp)
    assert heap.cfg.how["main_arena"].startswith("heuristic")
    assert heap.cfg.how["mp_"].startswith("heuristic")
    _check_lists(heap, img)
    assert _json(s, "ptstats")["mallinfo2"] == img.expected.mallinfo2
    cfg = _json(s, "ptconfig")
    if Params(version, sz).has_tcache:
        assert cfg["structures"]["tcache"]["how"].startswith("heuristic"), cfg
        assert cfg["structures"]["tcache"]["threads_found"] == 2


@pytest.mark.parametrize("version", VERSIONS, ids=[f"2.{v[1]}" for v in VERSIONS])
def test_mp_fields_per_version(version):
    img = build_image(version, 8)
    par = _json(Session(img.target), "ptparam")
    text = json.dumps(par)
    assert str(img.addrs["heap"]) in text  # sbrk_base read at the right offset
    assert ("max_total_mem" in text) is (version < (2, 24))
    assert ("hp_pagesize" in text) is (version >= (2, 35))
    assert ("thp_mode" in text) is (version >= (2, 43))
    assert ("tcache_small_bins" in text) is (version >= (2, 42))
    assert ("tcache_bins" in text.replace("tcache_small_bins", "")) is \
        ((2, 26) <= version < (2, 42))


@pytest.mark.parametrize("version", [(2, 36), (2, 37), (2, 41)], ids=str)
def test_global_max_fast_width(version):
    """2.37 made global_max_fast a uint8_t; a word read would take in its neighbour."""
    img = build_image(version, 8)
    heap = Session(img.target).heap()
    assert heap.global_max_fast == Params(version, 8).default_max_fast


def test_tcache_key_follows_the_version():
    """The key word after next: the tcache struct (2.29-2.33), random (2.34+)."""
    for version, want in (((2, 29), "struct"), ((2, 33), "struct"), ((2, 34), "random")):
        img = build_image(version, 8)
        heap = Session(img.target).heap()
        tc = heap.lists.tcaches()[0]
        first = next(fl for fl in tc.bins if fl.chunks).chunks[0]
        key = heap.mem.ptr(first + 3 * 8)
        assert key == (tc.addr if want == "struct" else TCACHE_KEY), version


@pytest.mark.parametrize("version", [(2, 31), (2, 32), (2, 36)], ids=str)
def test_safe_linking_read_with_the_wrong_version_is_caught(version):
    """Read a 2.32+ heap as 2.31 (no PROTECT_PTR) or a 2.31 heap as 2.32: the mangled
    links fail the alignment and size checks; the walk stops and says where."""
    img = build_image(version, 8)
    wrong = "2.31" if version >= (2, 32) else "2.32"
    s = Session(img.target)
    run_command(s, "ptconfig", ["--glibc", wrong])
    heap = s.heap()
    stops = [fl.stop for tc in heap.lists.tcaches() for fl in tc.bins if fl.stop] + \
        [fl.stop for fl in heap.lists.fastbins(heap.arenas()[0]) if fl.stop]
    assert stops, "mangled links were followed as if they were plain"


def test_no_fastbins_on_243():
    img = build_image((2, 43), 8)
    s = Session(img.target)
    assert s.heap().lists.fastbins(s.heap().arenas()[0]) == []
    r = run_command(s, "ptfast", [])
    assert "no fastbins" in (r.output + (r.error or ""))


def test_dummy_tcache_before_first_use_243():
    """2.43: a thread that never called malloc points at libc's read-only dummy."""
    img = build_image((2, 43), 8, dummy_tcache=True)
    heap = Session(img.target).heap()
    tc2 = next(tc for tc in heap.lists.tcaches() if tc.thread.num == 2)
    assert tc2.addr == img.expected.tcache_structs[2]
    assert not any(fl.chunks for fl in tc2.bins)
    img = build_image((2, 43), 8, symbols=False, tls_symbols=False, dummy_tcache=True)
    heap = Session(img.target).heap()
    assert {tc.thread.num: tc.addr for tc in heap.lists.tcaches()} == img.expected.tcache_structs


# -- wrong guesses are reported, not used ---------------------------------------------
def test_broken_arena_list_with_debug_info_is_a_marked_stop():
    """Debug info is trusted: a broken next chain is damage the arena list marks."""
    img = build_image((2, 36), 8)
    off = layout("malloc_state", (2, 36), 8).offset("next")
    target = img.patched(img.main_arena + off, (0xDEAD0000).to_bytes(8, "little"))
    heap = Session(target).heap()
    assert [a.addr for a in heap.arenas()] == [img.main_arena]
    assert heap.arenas()[0].stops


def test_broken_arena_list_is_refused():
    img = build_image((2, 36), 8, symbols=False, tls_symbols=False)
    off = layout("malloc_state", (2, 36), 8).offset("next")
    target = img.patched(img.main_arena + off, (0xDEAD0000).to_bytes(8, "little"))
    with pytest.raises(NotFoundError) as e:
        locate(target)
    assert "ptconfig" in str(e.value) and "\n" not in str(e.value)
    r = run_command(Session(target), "ptstats", [])
    assert r.error and "ptconfig" in r.error and "Traceback" not in r.error
    assert not r.output


def test_bins_pointing_nowhere_are_refused():
    """A guess whose bins are neither empty nor linked into memory is not an arena."""
    img = build_image((2, 41), 8, symbols=False, tls_symbols=False)
    L = layout("malloc_state", (2, 41), 8)
    junk = (0x10).to_bytes(8, "little") * (2 * 20)
    target = img.patched(img.main_arena + L.offset("bins") + 16 * 10, junk)
    with pytest.raises(NotFoundError, match="ptconfig"):
        locate(target)


def test_damaged_top_is_a_warning_not_a_refusal():
    """A corrupted top (house of force) is the heap's damage, not a wrong guess: the
    guess stands, ptconfig warns, and the walks mark where they stop."""
    img = build_image((2, 41), 8, symbols=False, tls_symbols=False)
    L = layout("malloc_state", (2, 41), 8)
    top = int.from_bytes(img.target.read(img.main_arena + L.offset("top"), 8), "little")
    target = img.patched(top + 8, (0x7FFFFFFFFFF1).to_bytes(8, "little"))
    s = Session(target)
    cfg = _json(s, "ptconfig")
    assert cfg["structures"]["main_arena"]["addr"] == img.main_arena
    assert "runs past its mapping" in json.dumps(cfg)
    r = run_command(s, "ptstats", ["--json"])
    assert r.status == 0 and json.loads(r.output)["arenas"]


def test_wrong_mp_is_refused():
    img = build_image((2, 36), 8, symbols=False, tls_symbols=False)
    off = layout("malloc_par", (2, 36), 8).offset("sbrk_base")
    target = img.patched(img.mp + off, (0x1000).to_bytes(8, "little"))
    with pytest.raises(NotFoundError, match="sbrk_base"):
        locate(target)


def test_forced_address_is_flagged():
    img = build_image((2, 36), 8)
    s = Session(img.target)
    cfg = _json(s, f"ptconfig --main-arena {img.mp:#x}")
    assert "fails the checks" in json.dumps(cfg)


def test_unknown_libc_says_so():
    img = build_image((2, 36), 8, banner="not a C library")
    r = run_command(Session(img.target), "ptstats", [])
    assert r.error and "glibc not detected" in r.error and "ptconfig --glibc" in r.error
    img = build_image((2, 36), 8, banner="GNU C Library release version 2.99.")
    r = run_command(Session(img.target), "ptstats", [])
    assert r.error and "outside what multiheap knows" in r.error


def test_tls_decoy_is_not_taken_for_the_tcache():
    """Without symbols the TLS scan meets a pointer to an in-use chunk first."""
    img = build_image((2, 36), 8, symbols=False, tls_symbols=False)
    heap = Session(img.target).heap()
    assert "-0x48" in heap.lists.tcaches()[0].how


@pytest.mark.parametrize("sz", [8, 4], ids=["x86_64", "i386"])
def test_thread_pointers_found_in_memory(sz):
    """A host without fs_base/gs_base: each struct pthread is found by its tid."""
    img = build_image((2, 36), sz, symbols=False, tls_symbols=False, hide_tp=True)
    heap = Session(img.target).heap()
    assert {tc.thread.num: tc.addr for tc in heap.lists.tcaches()} == img.expected.tcache_structs


def test_uninitialised_bins_are_empty_not_unreadable():
    """All-zero bins (malloc_init_state has not run) are empty lists, not 127 stops."""
    img = build_image((2, 36), 8)
    L = layout("malloc_state", (2, 36), 8)
    target = img.patched(img.main_arena + L.offset("bins"), bytes(254 * 8))
    heap = Session(target).heap()
    bins = heap.lists.bins(heap.arenas()[0])
    assert len(bins) == 127
    assert all(not fl.chunks and fl.stop is None for fl in bins)


def test_cycle_after_a_tail_stops_at_the_first_repeated_chunk():
    """c0 -> c1 -> c1 ...: the list is [c0, c1] and the stop names c1."""
    img = build_image((2, 36), 8)
    c0, c1 = img.expected.fast[1]
    fd = ((c1 + 16) >> 12) ^ c1  # safe-linking, as glibc stores it
    target = img.patched(c1 + 16, fd.to_bytes(8, "little"))
    heap = Session(target).heap()
    fl = heap.lists.fastbins(heap.arenas()[0])[1]
    assert list(fl.chunks) == [c0, c1] and list(fl.sizes) == [0x30, 0x30]
    assert fl.stop is not None and fl.stop.addr == c1 and "cycle" in fl.stop.reason


@pytest.mark.parametrize("version", [(2, 36), (2, 43)], ids=["2.36", "2.43"])
def test_a_stack_is_no_mmapped_chunk(version):
    """Words on a thread's stack that read as a mmapped chunk's header are not one:
    the kernel's mappings are never searched (a false alarm seen on a live r2 run)."""
    img = build_image(version, 8)
    stack = 0x7FFC00000000
    words = bytearray(0x2000)
    words[8:16] = (0x1000 - (16 if version >= (2, 43) else 0) | 2).to_bytes(8, "little")
    words[0x1008:0x1010] = (0x7FB3CD6E7750 | 2).to_bytes(8, "little")  # runs past the end
    segs = {**img.segs, stack: bytes(words)}
    names = {**img.kwargs["region_names"], stack: "[stack]"}
    s = Session(ImageTarget(segs, **dict(img.kwargs, region_names=names)))
    heap = s.heap()
    assert heap.mmapped.chunks() == img.expected.mmapped
    assert _json(s, "ptcheck")["findings"] == []
    # the same words in an anonymous mapping are a chunk (the search does look there)
    s = Session(ImageTarget(segs, **img.kwargs))
    assert [a for a, _s, _o in s.heap().mmapped.chunks()] == [
        img.expected.mmapped[0][0], stack]
