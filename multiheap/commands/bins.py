"""ptbin, ptfast, pttcache, ptfree: the free lists."""

from __future__ import annotations

from typing import Callable, Optional

from multiheap.commands.base import address, command, small_int
from multiheap.errors import UsageError
from multiheap.glibc import format_version
from multiheap.heap import Heap
from multiheap.heaptypes import Arena, FreeList, Tcache


def pick_arena(session, heap: Heap, text) -> list[Arena]:
    return [heap.arena_at(address(session, text))] if text else heap.arenas()


def emit_chunks(fl: FreeList, out, mem_offset: int = 0) -> None:
    out.begin_list("chunks")
    for addr, size in zip(fl.chunks, fl.sizes):
        if mem_offset:
            out.item("    {addr:#x} size={size:#x}", addr=addr, mem=addr + mem_offset,
                     size=size)
        else:
            out.item("    {addr:#x} size={size:#x}", addr=addr, size=size)
    out.end_list()
    if fl.stop is not None:
        out.note(fl.stop.message(f"{fl.kind} bin {fl.index}"), **fl.stop.as_dict())
        out.field("stopped", fl.stop.as_dict())  # on the bin whose walk stopped


def bin_range(heap: Heap, i: int) -> str:
    if i == 1:
        return "any size"
    p = heap.p
    if i < 64:
        return f"size {p.bin_floor(i):#x}"
    if i >= 126:
        return f"sizes from {p.bin_floor(i):#x}" if i == 126 else "unused"
    return f"sizes {p.bin_floor(i):#x}-{p.bin_floor(i + 1) - 1:#x}"


def chunks_text(n: int) -> str:
    return f"{n} chunk" if n == 1 else f"{n} chunks"


def emit_bins(heap: Heap, arena: Arena, out, index=None, size=None, all_bins=False) -> None:
    out.begin_list("bins", title=f"bins of arena {arena.addr:#x}")
    want = index
    if size is not None:
        want = heap.p.bin_index(size)
    shown = 0
    for fl in heap.lists.bins(arena):
        if want is not None and fl.index != want:
            continue
        if not fl.chunks and fl.stop is None and want is None and not all_bins:
            continue
        shown += 1
        out.begin(title=f"bin {fl.index} ({fl.kind}, {bin_range(heap, fl.index)}): "
                        f"{chunks_text(len(fl.chunks))}")
        if out.structured():
            out.field("index", fl.index)
            out.field("kind", fl.kind)
            out.field("count", len(fl.chunks))
        emit_chunks(fl, out)
        out.end()
    if not shown:
        out.text("(all empty)")
    out.end_list()


def emit_fastbins(heap: Heap, arena: Arena, out) -> None:
    out.begin_list("fastbins", title=f"fastbins of arena {arena.addr:#x}")
    shown = 0
    for fl in heap.lists.fastbins(arena):
        if not out.structured() and not fl.chunks and fl.stop is None:
            continue  # text shows the non-empty fastbins; JSON lists all of them
        shown += 1
        size = heap.p.fastbin_size(fl.index)
        out.begin(title=f"fastbin {fl.index} (size {size:#x}): {chunks_text(len(fl.chunks))}")
        if out.structured():
            out.field("index", fl.index)
            out.field("size", size)
            out.field("count", len(fl.chunks))
        emit_chunks(fl, out)
        out.end()
    if not shown:
        out.text("(all empty)")
    out.end_list()


def emit_tcaches(heap: Heap, out, thread=None) -> None:
    tcs = heap.lists.tcaches()
    if thread is not None:
        tcs = [t for t in tcs if thread in (t.thread.num, t.thread.tid)]
        if not tcs:
            raise UsageError(f"no thread {thread} (threads: "
                             + ", ".join(str(t.thread.num) for t in heap.lists.tcaches()) + ")")
    out.begin_list("tcaches")
    for tc in tcs:
        emit_tcache(heap, tc, out)
    out.end_list()


def emit_tcache(heap: Heap, tc: Tcache, out) -> None:
    t = tc.thread
    where = f"{tc.addr:#x}" if tc.addr else \
        ("none: no tcache yet (this thread has not allocated)" if tc.addr == 0
         else f"not found: {tc.how}")
    out.begin(title=f"thread {t.num} (tid {t.tid}) tcache @ {where}")
    if out.structured():
        out.field("thread", t.num)
        out.field("tid", t.tid)
        out.field("addr", tc.addr)
    out.begin_list("bins")
    counts_down = heap.p.tcache_counts_down  # an empty bin's num_slots is its limit
    for fl in tc.bins:
        if not fl.chunks and fl.stop is None and (counts_down or not fl.count_field):
            continue
        size = heap.p.tcache_size(fl.index)
        label = f"size {size:#x}" if size else "large"
        out.begin(title=f"tcache bin {fl.index} ({label}): {chunks_text(len(fl.chunks))}"
                        + (f" (count field {fl.count_field})"
                           if _count_mismatch(heap, fl) else ""))
        if out.structured():
            out.field("index", fl.index)
            out.field("size", size if size else (fl.sizes[0] if fl.sizes else None))
            out.field("count", len(fl.chunks))
            out.field("count_field", fl.count_field)
        emit_chunks(fl, out, mem_offset=2 * heap.sz)
        out.end()
    out.end_list()
    mine = [(m, d) for m, d in heap.lists.tcache_notes() if d["thread"] == t.num]
    for msg, data in mine:
        out.note(msg, **data)
    if not mine and tc.addr == 0:
        out.note(f"thread {t.num}: no tcache yet (this thread has not allocated)")
    out.end()


def emit_tcache_notes(heap: Heap, out) -> None:
    """A note for each thread whose tcache could not be read (its chunks look in use)."""
    if heap.p.has_tcache:
        for msg, data in heap.lists.tcache_notes():
            out.note(msg, **data)


def _count_mismatch(heap: Heap, fl: FreeList) -> bool:
    if heap.p.tcache_counts_down:
        return False  # num_slots counts down from a per-bin limit
    return fl.count_field != len(fl.chunks)


def each_arena(session, heap: Heap, which: Optional[str], out,
               emit: Callable[[Arena], None]) -> None:
    """The list ``arenas``: for each chosen arena, {"addr": addr, ...what emit adds}
    (an arena object's own address is ``addr``, as in ptarena, ptfree and ptstats)."""
    out.begin_list("arenas")
    for a in pick_arena(session, heap, which):
        out.begin()
        if out.structured():
            out.field("addr", a.addr, "#x")
        emit(a)
        out.end()
    out.end_list()


@command("ptbin", "the unsorted, small and large bins of an arena")
class PtBin:
    """List the chunks in the regular bins (unsorted, small, large); non-empty bins only
    unless -i/-b selects one."""

    @staticmethod
    def args(p):
        p.add_argument("-a", "--arena", metavar="ADDR", help="arena (default: all)")
        p.add_argument("-i", "--index", type=small_int, help="only bin IDX (1 = unsorted)")
        p.add_argument("-b", "--size", metavar="SIZE", help="only the bin for chunk SIZE")
        p.add_argument("--all", action="store_true", help="show empty bins too")

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        size = address(session, args.size) if args.size else None
        if args.index is not None and not 1 <= args.index <= 127:
            raise UsageError("bin index must be 1..127")
        each_arena(session, heap, args.arena, out,
                   lambda a: emit_bins(heap, a, out, args.index, size, args.all))


@command("ptfast", "the fastbins of an arena")
class PtFast:
    """List the fastbins.  glibc 2.43 removed fastbins: then this says so."""

    @staticmethod
    def args(p):
        p.add_argument("-a", "--arena", metavar="ADDR", help="arena (default: all)")

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        if not heap.p.has_fastbins:
            out.field("fastbins", None)
            out.note(f"glibc {format_version(heap.cfg.version)} has no fastbins "
                     "(removed in 2.43)")
            return
        each_arena(session, heap, args.arena, out, lambda a: emit_fastbins(heap, a, out))


@command("pttcache", "each thread's tcache bins")
class PtTcache:
    """List every thread's tcache (glibc 2.26+): non-empty bins and their chunks."""

    @staticmethod
    def args(p):
        p.add_argument("-t", "--thread", type=small_int, help="only this thread (number or tid)")

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        if not heap.p.has_tcache:
            out.field("tcaches", None)
            out.note(f"glibc {format_version(heap.cfg.version)} has no tcache (2.26+)")
            return
        emit_tcaches(heap, out, args.thread)


@command("ptfree", "every free chunk: tcache, fastbins and bins of all arenas")
class PtFree:
    """Everything free, per arena and per thread."""

    @staticmethod
    def args(p):
        p.add_argument("-a", "--arena", metavar="ADDR", help="arena (default: all)")

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        out.begin_list("arenas")
        for a in pick_arena(session, heap, args.arena):
            out.begin(title=f"arena {a.addr:#x}")
            if out.structured():
                out.field("addr", a.addr, "#x")
            if heap.p.has_fastbins:
                emit_fastbins(heap, a, out)
            emit_bins(heap, a, out)
            out.end()
        out.end_list()
        if heap.p.has_tcache:
            emit_tcaches(heap, out)
