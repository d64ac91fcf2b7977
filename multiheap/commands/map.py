"""ptmap: the heap as one self-contained HTML page (canvas map, lists, histogram, trace)."""

from __future__ import annotations

import os

from multiheap import mapview
from multiheap.commands.base import address, command
from multiheap.errors import UsageError


@command("ptmap", "write the heap as one self-contained HTML page to look at in a browser")
class PtMap:
    """Write FILE: one HTML page, nothing fetched, that draws every heap of every arena
    and the mmapped chunks (or one ARENA's heaps) on a canvas, coloured by state, with
    zoom and pan, hover details, free-list arrows, address search and a histogram.
    --trace adds a timeline replaying a malloc trace (JSON Lines) call by call."""

    @staticmethod
    def args(p):
        p.add_argument("--html", metavar="FILE", required=True, help="the page to write")
        p.add_argument("arena", nargs="?", metavar="ARENA",
                       help="only this arena's heaps (default: every arena and the "
                            "mmapped chunks)")
        p.add_argument("--all", action="store_true",
                       help="every arena and the mmapped chunks (the default)")
        p.add_argument("--trace", metavar="TRACE.jsonl",
                       help="a malloc trace to replay on a timeline")

    @staticmethod
    def run(session, args, out):
        if args.all and args.arena:
            raise UsageError("ptmap: give an ARENA or --all, not both")
        path = os.path.expanduser(args.html)
        if not path or os.path.isdir(path):
            raise UsageError(f"ptmap: --html {args.html!r} is not a file name")
        trace = mapview.load_trace(os.path.expanduser(args.trace)) if args.trace else None
        heap = session.heap()
        arena = heap.arena_at(address(session, args.arena)) if args.arena else None
        data = mapview.pack_heap(heap, arena, session.meta.tags)
        pid = session.target.pid
        title = f"multiheap ptmap: {session.target.state} pid {pid}" if pid \
            else f"multiheap ptmap: {session.target.state}"
        size = mapview.write_page(path, mapview.page_parts(data, trace, title))
        full = os.path.abspath(path)
        if out.structured():
            out.field("path", full)
            out.field("chunks", data.chunks)
            out.field("free", data.free)
            out.field("bytes", size)
            out.field("steps", trace["count"] if trace else 0)
        else:
            steps = f", {trace['count']} traced calls" if trace else ""
            out.text(f"wrote {full}: {data.chunks} chunks ({data.free} free){steps}, "
                     f"{size} bytes")
        for n in data.notes:
            out.note(n)
