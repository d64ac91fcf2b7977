"""ptarena and ptparam: malloc_state and malloc_par."""

from __future__ import annotations

from multiheap.builders import Column
from multiheap.commands.base import address, command
from multiheap.glibc import format_version
from multiheap.heap import Heap
from multiheap.heaptypes import Arena


def emit_arena(heap: Heap, a: Arena, out, brief: bool) -> None:
    """One arena object (the fields listed in docs/output.md)."""
    f = a.f
    title = f"arena {a.index} @ {a.addr:#x}" + (" (main_arena)" if a.is_main else "")
    out.begin(title=title)
    out.field("addr", a.addr, "#x")
    out.field("index", a.index)
    out.field("main", a.is_main)
    out.field("flags", f["flags"], "#x")
    out.field("top", a.top, "#x")
    out.field("top_size", heap.top_size(a), "#x")
    out.field("last_remainder", f["last_remainder"], "#x")
    out.field("next", f["next"], "#x")
    out.field("next_free", f["next_free"], "#x")
    out.field("attached_threads", f["attached_threads"])
    out.field("system_mem", f["system_mem"], "#x")
    out.field("max_system_mem", f["max_system_mem"], "#x")
    if not brief:
        if "have_fastchunks" in f:
            out.field("have_fastchunks", f["have_fastchunks"])
        out.field("binmap", list(f["binmap"]), "#010x")
    out.begin_list("heaps", title="heaps")
    for s in a.heaps:
        where = "main heap" if s.info is None else "heap_info {addr:#x}"
        out.item(where + ": chunks {start:#x}-{end:#x} ({size:#x} bytes)",
                 addr=s.info, start=s.start, end=s.end, size=s.end - s.start)
    out.end_list()
    for st in a.stops:
        out.note(st.message(f"arena {a.addr:#x}"), **st.as_dict())
    out.end()


def _arena_table(heap: Heap, arenas: list[Arena], out) -> None:
    def width(values) -> int:  # as wide as the widest value: 80 columns
        return max((len(f"{v:#x}") for v in values), default=3)

    w = width([a.addr for a in arenas] + [a.top for a in arenas])
    cols = [Column("index", "#", "d", 2), Column("addr", "arena", "#x", w),
            Column("top", "top", "#x", w),
            Column("top_size", "top size", "#x", width(heap.top_size(a) for a in arenas)),
            Column("system_mem", "system", "#x", width(a.f["system_mem"] for a in arenas)),
            Column("attached_threads", "threads", "d", 7),
            Column("heaps", "heaps", "d", 5), Column("main", "main", "", 4)]
    out.table("arenas", cols, [
        (a.index, a.addr, a.top, heap.top_size(a), a.f["system_mem"],
         a.f["attached_threads"], len(a.heaps), "yes" if a.is_main else "no")
        for a in arenas])
    for a in arenas:
        for st in a.stops:
            out.note(st.message(f"arena {a.addr:#x}"), **st.as_dict())


@command("ptarena", "one arena (default main_arena), or the list of all arenas (-l)")
class PtArena:
    """Print malloc_state of an arena: top, system memory, flags, its heaps."""

    @staticmethod
    def args(p):
        p.add_argument("addr", nargs="?", metavar="ADDR", help="arena address")
        p.add_argument("-l", "--list", action="store_true", help="list all arenas")

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        if args.addr:
            arenas = [heap.arena_at(address(session, args.addr))]
        elif args.list:
            arenas = heap.arenas()
        else:
            arenas = heap.arenas()[:1]
        if args.list and not args.addr and not out.structured():
            _arena_table(heap, arenas, out)  # people get one line per arena
            return
        out.begin_list("arenas")
        for a in arenas:
            out.begin()
            emit_arena(heap, a, out, brief=args.list)
            out.end()
        out.end_list()


@command("ptparam", "malloc parameters (mp_), with the fields of this glibc version")
class PtParam:
    """Print glibc's struct malloc_par (mp_): thresholds, mmap counters, tcache limits."""

    @staticmethod
    def args(p):
        pass

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        out.begin(title=f"mp_ @ {heap.cfg.mp:#x} (glibc {format_version(heap.cfg.version)})")
        out.field("addr", heap.cfg.mp, "#x")
        out.begin("mp")
        counts = {"n_mmaps", "n_mmaps_max", "max_n_mmaps", "no_dyn_threshold", "hp_flags",
                  "thp_mode", "tcache_bins", "tcache_small_bins", "tcache_count"}
        for name, value in heap.mp.items():  # a count beyond INT_MAX is damage: hex
            plain = name in counts and isinstance(value, int) and 0 <= value <= 0x7FFFFFFF
            out.field(name, value, "" if plain else "#x")
        gmf = heap.global_max_fast
        out.end()
        if gmf is not None:
            out.field("global_max_fast", gmf, "#x")
        out.end()
