"""ptlist: every chunk of an arena, in address order: filtered, previewed, summed."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterable, Iterator

from multiheap.builders import Column
from multiheap.commands.base import address, command, count, quote
from multiheap.commands.bins import emit_tcache_notes
from multiheap.commands.chunk import FLAG_TEXT, flag_text
from multiheap.discovery.facts import NOT_INITIALISED
from multiheap.errors import TargetMemoryError
from multiheap.heap import Heap
from multiheap.heaptypes import IS_MMAPPED, Stop
from multiheap.walks import STATES

LIST_STATES = (*STATES, "top", "mmapped")
MAX_PREVIEW = 4096


def size_arg(text: str) -> int:
    """An argparse type for --min-size/--max-size: hex (0x...) or decimal bytes."""
    try:
        n = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {quote(text)} (hex 0x.. or "
                                         "decimal)") from None
    if not 0 <= n < 1 << 64:
        raise argparse.ArgumentTypeError(f"{quote(text)} is out of range")
    return n


def states_arg(text: str) -> frozenset[str]:
    """An argparse type for --state: one state or several, comma-separated."""
    got = frozenset(s.strip() for s in text.split(",") if s.strip())
    bad = sorted(got - set(LIST_STATES))
    if bad or not got:
        raise argparse.ArgumentTypeError(
            f"unknown state {quote(bad[0] if bad else text)} (states: "
            f"{', '.join(LIST_STATES)})")
    return got


def preview_arg(text: str) -> int:
    n = count(text)
    if n > MAX_PREVIEW:
        raise argparse.ArgumentTypeError(f"{quote(text)} is more than {MAX_PREVIEW} bytes")
    return n


def printable(data: bytes) -> str:
    """Bytes as text: printable ASCII as is, anything else as '.'."""
    return data.decode("latin-1").translate(_DOTS)


_DOTS = {i: "." for i in range(256) if not 32 <= i < 127}


@command("ptlist", "every chunk of an arena's heaps, in address order")
class PtList:
    """Walk an arena's heaps (default: main_arena) chunk by chunk, in address order.
    --state, --min-size and --max-size keep only the chunks that match (sizes in hex
    or decimal); --preview N shows the first N bytes of each chunk's user data
    (printable characters, '.' for the others); --summary gives the count and bytes
    of each chunk size and state instead of the list."""

    @staticmethod
    def args(p):
        p.add_argument("arena", nargs="?", metavar="ARENA", help="arena address")
        p.add_argument("-c", "--count", type=count, default=None,
                       help="at most N chunks (after the filters)")
        p.add_argument("--mmapped", action="store_true",
                       help="list the mmapped chunks instead")
        p.add_argument("--state", type=states_arg, default=None, metavar="S[,S..]",
                       help="only chunks in these states: " + ", ".join(LIST_STATES))
        p.add_argument("--min-size", type=size_arg, default=None, metavar="N",
                       help="only chunks of at least N bytes")
        p.add_argument("--max-size", type=size_arg, default=None, metavar="N",
                       help="only chunks of at most N bytes")
        p.add_argument("--preview", type=preview_arg, default=0, metavar="N",
                       help="the first N bytes of each chunk's user data")
        p.add_argument("--summary", action="store_true",
                       help="count and bytes per size and state instead of the list")

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        cols = [Column("addr", "chunk", "#x", 2 + 2 * heap.sz),
                Column("size", "size", "#x", 10), Column("flags", "flags", "", 5),
                Column("state", "state", "", 7)]
        if args.preview:
            cols.append(Column("preview", "preview", ""))
        stops: list[Stop] = []
        arena = None
        if args.mmapped:
            flags = IS_MMAPPED if out.structured() else flag_text(IS_MMAPPED)
            rows: Iterable[tuple] = [(a, s, flags, heap.lists.chunk_state(heap.chunk(a)))
                                     for a, s, _ in heap.mmapped.chunks()]  # 2.43: "tcache"
        else:
            arena = heap.arena_at(address(session, args.arena)) if args.arena \
                else heap.arenas()[0]
            out.field("arena", arena.addr, "#x")
            if not arena.heaps:  # main_arena before the first malloc: say so, not "count: 0"
                if out.structured():
                    out.field("chunks", [])
                    out.field("count", 0)
                out.note(NOT_INITIALISED)
                return
            names = None if out.structured() else FLAG_TEXT
            rows = itertools.chain.from_iterable(
                heap.walks.walk(arena, seg, stops, flag_names=names) for seg in arena.heaps)
        rows = _filtered(rows, args)
        if args.count is not None:
            rows = itertools.islice(rows, max(0, args.count))
        if args.summary:
            _summary(rows, out)
        elif args.mmapped and not args.preview:
            rows = list(rows)
            out.field("count", len(rows))
            out.table("chunks", cols, rows)
        else:
            if args.preview:
                rows = _previewed(heap, rows, args.preview)
            out.field("count", out.table("chunks", cols, rows))
        if args.mmapped:
            why = heap.mmapped.note()
            if why:
                out.note(why)
            return
        emit_tcache_notes(heap, out)
        for st in arena.stops:  # the arena's own structure (its heaps) is damaged
            out.note(st.message(f"arena {arena.addr:#x}"), **st.as_dict())
        for st in stops:
            out.note(st.message("walk"), **st.as_dict())
        if stops:
            out.field("stopped", stops[0].as_dict())


def _filtered(rows: Iterable[tuple], args) -> Iterable[tuple]:
    """The rows that pass --state, --min-size and --max-size (streamed)."""
    want, lo, hi = args.state, args.min_size, args.max_size
    if want is None and lo is None and hi is None:
        return rows
    lo = 0 if lo is None else lo
    hi = (1 << 64) if hi is None else hi
    if want is None:
        return (r for r in rows if lo <= r[1] <= hi)
    return (r for r in rows if r[3] in want and lo <= r[1] <= hi)


def _previewed(heap: Heap, rows: Iterable[tuple], n: int) -> Iterator[tuple]:
    """Each row with the first ``n`` bytes of its user data (at most the chunk's)."""
    hdr = 2 * heap.sz
    for r in rows:
        addr, size = r[0], r[1]
        k = max(0, min(n, size - hdr))
        data = b""
        if k:
            found = heap.segment_of(addr)
            try:
                blk = heap.mem.window(addr + hdr, k, found[1].start, found[1].end) \
                    if found else None
                data = blk[2][addr + hdr - blk[0]:addr + hdr - blk[0] + k] if blk \
                    else heap.mem.read(addr + hdr, k)
            except TargetMemoryError:
                data = b""
        yield (*r, printable(data))


def _summary(rows: Iterable[tuple], out) -> None:
    """Count and bytes of each (size, state), in size order."""
    sums: dict[tuple[int, str], list[int]] = {}
    n = total = 0
    for r in rows:
        v = sums.get((r[1], r[3]))
        if v is None:
            v = sums[(r[1], r[3])] = [0, 0]
        v[0] += 1
        v[1] += r[1]
        n += 1
        total += r[1]
    cols = [Column("size", "size", "#x", 10), Column("state", "state", "", 7),
            Column("count", "chunks", "d", 9), Column("bytes", "bytes", "#x", 12)]
    out.table("sizes", cols, [(s, st, c, b) for (s, st), (c, b) in sorted(sums.items())])
    out.field("count", n)
    out.field("bytes", total, "#x")
