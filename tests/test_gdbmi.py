"""The gdb/MI adapter: every Target method equals gdb's Python adapter on the same core.

Plus the request loop (tokens, answers left unread by an interrupt), memory reads
(bulk and small, unreadable), and the text parsers on gdb's own output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import run_gdb

from multiheap.adapters import gdbtext
from multiheap.adapters.gdbmi import GdbMiTarget
from multiheap.adapters.gdbmi_open import open_target
from multiheap.adapters.gdbmi_process import MiProcess, mi_quote
from multiheap.elffile import inspect_core
from multiheap.errors import TargetMemoryError
from multiheap.target import Region, Thread

STRUCTS = ("malloc_state", "malloc_par", "malloc_chunk", "tcache_perthread_struct",
           "heap_info", "no_such_struct")

# Runs inside gdb (the reference adapter) and prints what each Target method returns.
_PROBE = (
    "python import json; from multiheap.adapters.gdb import GdbTarget; t = GdbTarget(); "
    "ths = t.threads(); print('PROBE ' + json.dumps({"
    "'ptr': t.pointer_size, 'endian': t.endianness, 'arch': t.arch, 'state': t.state, "
    "'pid': t.pid, 'regions': [[r.start, r.end, r.perms, r.name] for r in t.regions()], "
    "'modules': {m.path: m.build_id for m in t.modules()}, "
    "'symbols': {n: t.symbol(n) for n in ('main_arena', 'mp_', 'checkpoint', 'nosuch')}, "
    "'types': {n: (lambda l: l and [l.size, l.fields])(t.type_layout(n)) for n in %r}, "
    "'threads': [[x.num, x.tid] for x in ths], "
    "'tp': [t.thread_pointer(x) for x in ths], "
    "'tls': [t.tls_symbol('tcache', x) for x in ths]}))" % (STRUCTS,))


def _reference(run) -> dict:
    core = run.core
    exe = Path(inspect_core(str(core)).exe or "")
    host = run_gdb(exe, "threads", [_PROBE], core=core, truth=run.truth)
    line = next(x for x in host.out(_PROBE).splitlines() if x.startswith("PROBE "))
    return json.loads(line[len("PROBE "):])


@pytest.fixture(scope="module", params=["threads", "basic32"])
def pair(request):
    """(what gdb's Python adapter says, an open MI target) for one scenario core."""
    live, _ = request.getfixturevalue(request.param)
    ref = _reference(live)
    target = open_target(core=str(live.core))
    yield ref, target, live
    target.close()


def test_machine(pair):
    ref, t, _ = pair
    assert (t.pointer_size, t.endianness, t.arch, t.state, t.pid) == \
        (ref["ptr"], ref["endian"], ref["arch"], ref["state"], ref["pid"])


def test_regions_and_modules(pair):
    ref, t, _ = pair
    assert [[r.start, r.end, r.perms, r.name] for r in t.regions()] == ref["regions"]
    mine = {m.path: m.build_id for m in t.modules()}
    for path, build_id in ref["modules"].items():
        if path.startswith("/"):  # gdb also lists the vDSO ("system-supplied DSO at ...")
            assert mine.get(path) == build_id, path


def test_symbols_and_types(pair):
    ref, t, _ = pair
    assert {n: t.symbol(n) for n in ref["symbols"]} == ref["symbols"]
    for name in STRUCTS:
        lay = t.type_layout(name)
        theirs = ref["types"][name]
        if theirs is None:
            assert lay is None, name
        else:
            assert [lay.size, {k: list(v) for k, v in lay.fields.items()}] == theirs, name


def test_threads(pair):
    ref, t, _ = pair
    ths = t.threads()
    assert [[x.num, x.tid] for x in ths] == ref["threads"]
    assert [t.thread_pointer(x) for x in ths] == ref["tp"]
    assert [t.tls_symbol("tcache", x) for x in ths] == ref["tls"]
    assert t.thread_pointer(Thread(999, 1)) is None


def test_reads(pair):
    _, t, live = pair
    mem = live.truth.mems("live")[0]
    heap = next(r for r in t.regions() if mem in r)  # the main heap
    big = t.read(heap.start, heap.size)  # from the core file's own segments
    assert len(big) == heap.size
    assert t._read_dump(heap.start, heap.size) == big  # the same through gdb's dump
    for off, n in ((0, 16), (0x18, 0x100), (heap.size - 64, 64)):
        assert t.read(heap.start + off, n) == big[off:off + n]  # hex through MI
    assert t.read(mem, 8) == b"\x41" * 8  # the scenario fills live chunks with 'A'
    with pytest.raises(TargetMemoryError):
        t.read(0x10, 16)
    with pytest.raises(TargetMemoryError):
        t.read(0x10, 1 << 20)
    starts = {r.start for r in t.regions()}
    edge = next(r.end for r in t.regions() if r.end not in starts)  # a mapping, then a hole
    with pytest.raises(TargetMemoryError):
        t.read(edge - 0x10, 0x20000)
    with pytest.raises(TargetMemoryError):
        t.read(edge - 0x10, 0x20)


def test_evaluate(pair):
    _, t, _ = pair
    assert t.evaluate("0x1234") == 0x1234
    assert t.evaluate("&'main_arena'") == t.symbol("main_arena")
    assert t.evaluate("main_arena") == t.symbol("main_arena")  # a struct: its address
    with pytest.raises(Exception, match="nosuch"):
        t.evaluate("nosuch")


def test_requests_are_token_matched_and_fast():
    mi = MiProcess()
    try:
        for i in range(300):  # a loop that waited out a timeout would take minutes
            payload, _ = mi.request(f"-data-evaluate-expression {i}+1", timeout=10)
            assert payload["value"] == str(i + 1)
        # an answer nobody read (an interrupted request) does not confuse the next one
        mi.send("-data-evaluate-expression 7*6")
        mi._pending.append(mi.send("-data-evaluate-expression nosuch"))  # abandoned error
        payload, _ = mi.request("-data-evaluate-expression 1+1")
        assert payload["value"] == "2"
        assert "GNU gdb" in mi.console("show version")
    finally:
        mi.terminate()
    assert not mi.alive()


def test_close_is_idempotent_and_reads_after_close_fail(basic):
    live, _ = basic
    t = open_target(core=str(live.core))
    assert isinstance(t, GdbMiTarget)
    t.close()
    t.close()
    assert not t.mi.alive()
    with pytest.raises(Exception, match="closed"):
        t.read(0x1000, 8)


# -- the text parsers, on gdb's output ---------------------------------------------------

def test_ptype_layout_nested():
    text = """/* offset      |    size */  type = struct outer {
/*      0      |       4 */    int a;
/* XXX  4-byte hole      */
/*      8      |      16 */    struct {
/*      8      |       8 */        void *p;
/*     16      |       8 */        void (*fn)(int);

                                   /* total size (bytes):   16 */
                               } inner;
/*     24      |       8 */    void (*hook)(void *, int);
/*     32      |      40 */    char name[5][8];
/*     72: 0   |       4 */    unsigned int bits : 3;

                               /* total size (bytes):   80 */
                             }
"""
    lay = gdbtext.ptype_layout("outer", text)
    assert lay is not None and lay.size == 80
    assert lay.fields == {"a": (0, 4), "inner": (8, 16), "hook": (24, 8),
                          "name": (32, 40), "bits": (72, 4)}
    assert gdbtext.ptype_layout("x", "No struct type named x.") is None


def test_values_and_quoting():
    pv = gdbtext.parse_value
    assert pv("0x7ffff7fa7c60 <main_arena>") == 0x7ffff7fa7c60
    assert pv("(struct malloc_state *) 0x10 <main_arena>") == 0x10
    assert pv("140737351845568") == 140737351845568
    assert pv("-1", 32) == 0xFFFFFFFF
    assert pv("void") is None and pv("{0x1, 0x2}") is None
    assert mi_quote('a "b" \\c') == '"a \\"b\\" \\\\c"'


def test_core_regions_merge():
    named = [Region(0x1000, 0x2000, "r--p", "/bin/x")]
    sections = [Region(0x1000, 0x2000, "r--", ""), Region(0x5000, 0x6000, "rw-", "")]
    assert gdbtext.merge_core_regions(named, sections) == [named[0], sections[1]]
