"""ptstats: totals per arena and overall, and glibc's mallinfo2 computed from memory."""

from __future__ import annotations

from multiheap.builders import Column
from multiheap.commands.base import command
from multiheap.commands.bins import chunks_text, emit_tcache_notes
from multiheap.heaptypes import Stop
from multiheap.stats import MALLINFO2_FIELDS, arena_stats, mallinfo2
from multiheap.walks import STATES

_KEYS = STATES


@command("ptstats", "totals per arena and overall, and mallinfo2 as glibc computes it")
class PtStats:
    """Count chunks and bytes by state in every arena.  The mallinfo2 block equals what
    the target's own mallinfo2() returns (tcache chunks count as in use there)."""

    @staticmethod
    def args(p):
        p.add_argument("--no-walk", action="store_true",
                       help="only mallinfo2 (free lists; no walk of every chunk)")

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        stops: list[Stop] = []
        per = [] if args.no_walk else [arena_stats(heap, a, stops) for a in heap.arenas()]
        cols = [Column("addr", "arena", "#x", 2 + 2 * heap.sz),
                Column("system_mem", "system", "#x", 10),
                Column("top_size", "top", "#x", 9)]
        for k in _KEYS:
            cols += [Column(f"{k}_count", k, "d", 7), Column(f"{k}_bytes", "bytes", "#x", 10)]
        if per and not out.structured():
            _arena_blocks(per, out)  # 80 columns: one small table per arena
        elif per:
            out.table("arenas", cols, [tuple(s.as_dict()[c.name] for c in cols) for s in per])
        if per:
            totals = {c.name: sum(getattr(s, c.name) for s in per) for c in cols[1:]}
            out.begin("totals", title="totals" if len(per) > 1 else "")
            if out.structured():
                for k, v in totals.items():
                    out.field(k, v)
            elif len(per) > 1:
                for k in _KEYS:
                    n = totals[f"{k}_count"]
                    out.item(f"{k}: {chunks_text(n)}, {{bytes:#x}} bytes",
                             bytes=totals[f"{k}_bytes"])
            out.end()
        if not args.no_walk:
            emit_tcache_notes(heap, out)  # first: the in-use figures depend on it
            why = heap.mmapped.note()
            if why:
                out.note(why)
        mmapped = heap.mp["n_mmaps"], heap.mp["mmapped_mem"]
        out.begin("mmapped")
        out.item(f"mmapped: {chunks_text(mmapped[0])}, {{bytes:#x}} bytes",
                 count=mmapped[0], bytes=mmapped[1])
        out.end()
        mi = mallinfo2(heap)
        how = ("as the target's mallinfo2() reports" if session.target.state == "live"
               else "as glibc's mallinfo2() would have reported")
        out.begin("mallinfo2", title=f"mallinfo2 ({how})")
        for k in MALLINFO2_FIELDS:
            out.field(k, mi[k])
        out.end()
        for a in heap.arenas():
            for st in a.stops:
                out.note(st.message(f"arena {a.addr:#x}"), **st.as_dict())
        for st in stops:
            out.note(st.message("walk"), **st.as_dict())
        if stops:
            out.field("stopped", stops[0].as_dict())
        for a in heap.arenas():
            for fl in heap.lists.bins(a) + heap.lists.fastbins(a):
                if fl.stop is not None:
                    out.note(fl.stop.message(f"arena {a.addr:#x} {fl.kind} bin {fl.index}"),
                             **fl.stop.as_dict())
        for tc in heap.lists.tcaches() if not args.no_walk else []:
            for fl in tc.bins:
                if fl.stop is not None:
                    out.note(fl.stop.message(f"thread {tc.thread.num} tcache bin {fl.index}"),
                             **fl.stop.as_dict())


def _arena_blocks(per: list, out) -> None:
    """Text: each arena as a title line and a table of states (chunks, bytes)."""
    cols = [Column("state", "state", "", 7), Column("count", "chunks", "d", 8),
            Column("bytes", "bytes", "#x", 12)]
    for s in per:
        d = s.as_dict()
        out.begin(title=f"arena {s.addr:#x}: system {s.system_mem:#x}, top {s.top_size:#x}")
        out.table("states", cols, [(k, d[f"{k}_count"], d[f"{k}_bytes"]) for k in _KEYS])
        out.end()
