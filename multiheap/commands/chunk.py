"""ptchunk: chunks at an address (ptlist, every chunk of an arena: commands/list.py)."""

from __future__ import annotations

from multiheap.commands.base import address, command, count
from multiheap.commands.bins import emit_tcache_notes
from multiheap.errors import TargetMemoryError, UsageError
from multiheap.heap import Heap
from multiheap.heaptypes import IS_MMAPPED, NON_MAIN_ARENA, PREV_INUSE, Chunk, Stop
from multiheap.plausible import chunk_or_user_pointer

FLAG_NAMES = ((PREV_INUSE, "P"), (IS_MMAPPED, "M"), (NON_MAIN_ARENA, "A"))


FLAG_TEXT = tuple("".join(n if f & b else "-" for b, n in FLAG_NAMES) for f in range(8))


def flag_text(flags: int) -> str:
    return FLAG_TEXT[flags & 7]


def emit_chunk(heap: Heap, c: Chunk, out, hexdump: bool, verbose: bool) -> str:
    """One chunk object; returns its state."""
    state = heap.lists.chunk_state(c)
    links = state in ("free", "fast", "tcache")
    large = state == "free" and not heap.p.in_smallbin_range(c.size)
    fd = c.fd
    if state in ("fast", "tcache") and heap.p.safe_linking:
        fd = heap.reveal(c.mem, c.fd)
    values = dict(
        addr=c.addr, mem=c.mem, prev_size=c.prev_size, size=c.size, flags=c.flags,
        state=state, fd=fd if links else None,
        bk=c.bk if state == "free" else None,
        fd_nextsize=c.fd_nextsize if large else None,
        bk_nextsize=c.bk_nextsize if large else None,
    )
    text = "{addr:#x} {state:<7} size={size:#x} [" + flag_text(c.flags) + "]"
    if verbose:
        text += " prev_size={prev_size:#x} mem={mem:#x}"
    if values["fd"] is not None:
        text += " fd={fd:#x}"
    if values["bk"] is not None:
        text += " bk={bk:#x}"
    if large:
        text += " fd_nextsize={fd_nextsize:#x} bk_nextsize={bk_nextsize:#x}"
    if state == "tcache" and heap.p.tcache_key:
        values["key"] = c.bk
        if verbose:
            text += " key={key:#x}"
    if hexdump:
        n = max(0, min(c.size - 2 * heap.sz, 0x100)) if c.size else 0x40
        try:
            data = heap.mem.read(c.mem, n)
        except TargetMemoryError:
            data = b""
        values["hexdump"] = data.hex()
        text += "\n" + format_hexdump(c.mem, data).replace("{", "{{").replace("}", "}}")
    out.item(text, **values)
    return state


def _fencepost(heap: Heap, addr: int) -> bool:
    """Whether ``addr`` holds a chunk header of glibc's fencepost sizes (0 or 2 words)."""
    try:
        return heap.chunk(addr).size in (0, 2 * heap.sz)
    except TargetMemoryError:
        return False


def format_hexdump(addr: int, data: bytes) -> str:
    lines = []
    for i in range(0, len(data), 16):
        row = data[i:i + 16]
        asc = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"    {addr + i:#x}: {row.hex(' '):<47}  {asc}")
    return "\n".join(lines)


@command("ptchunk", "chunk(s) at an address, following to the next chunks")
class PtChunk:
    """Show the chunk at each ADDR: size, flags, state (inuse/free/fast/tcache/orphan/
    top/mmapped) and its free-list links.  -c N follows to the N-1 next chunks (past
    glibc's fenceposts to malloc's next region)."""

    @staticmethod
    def args(p):
        p.add_argument("addrs", nargs="+", metavar="ADDR", help="chunk address (expression)")
        p.add_argument("-c", "--count", type=count, default=1, help="chunks to show from ADDR")
        p.add_argument("-x", "--hexdump", action="store_true", help="hexdump the user data")
        p.add_argument("-v", "--verbose", action="store_true", help="all header fields")
        p.add_argument("-m", "--mem", action="store_true",
                       help="ADDR is a user pointer (as malloc returned it)")

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        if args.count < 1:
            raise UsageError("-c must be at least 1")
        out.begin_list("chunks")
        noted = False
        stops: list[Stop] = []  # walks (-c) that stopped early: damage, not top
        for text in args.addrs:
            addr = address(session, text)
            if args.mem:
                addr -= 2 * heap.sz
            else:  # a user pointer given without -m: its chunk, said (multiheap/plausible.py)
                addr, assumed, why = chunk_or_user_pointer(heap, addr)
                if assumed:
                    out.note(why, addr=addr)
            for i in range(args.count):
                try:
                    c = heap.chunk(addr)
                except TargetMemoryError as e:
                    if i == 0:
                        raise UsageError(f"no chunk at {addr:#x}: {e}") from None
                    stops.append(Stop(addr, "unreadable"))
                    out.note(stops[-1].message("walk"), **stops[-1].as_dict())
                    break
                if i == 0 and not heap.aligned(addr):
                    hint = "" if args.mem else " (a user pointer? try -m)"
                    out.note(f"{addr:#x} is not chunk-aligned: probably not a chunk{hint}",
                             addr=addr)
                if i == 0 and heap.segment_of(addr) is None and not (
                        c.flags & IS_MMAPPED and heap.mmapped.starts_at(addr)):
                    out.note(f"{addr:#x} is in no arena's heap: its state is a guess",
                             addr=addr)
                state = emit_chunk(heap, c, out, args.hexdump, args.verbose)
                story = getattr(session, "tracer", None)  # pttrace: the chunk's history
                if story is not None and story.one_line(c.mem):
                    out.note(story.one_line(c.mem), addr=c.addr)
                if state == "inuse" and not noted:  # it may be in a tcache not found
                    noted = True
                    emit_tcache_notes(heap, out)
                if i + 1 < args.count:
                    after = heap.walks.next_run(addr + c.size) if state != "top" \
                        and _fencepost(heap, addr + c.size) else None
                    if after is not None:  # glibc's fenceposts, then a foreign sbrk
                        out.note(f"{addr + c.size:#x}: fencepost (memory taken by a "
                                 f"foreign sbrk follows); the heap goes on at {after:#x}",
                                 addr=addr + c.size)
                        addr = after
                        continue
                    if state == "top":
                        out.note(f"stopped at {addr:#x}: top chunk", addr=addr)
                        break
                    if c.size < heap.p.minsize:
                        stops.append(Stop(addr, f"impossible size {c.size:#x}"))
                        out.note(stops[-1].message("walk"), **stops[-1].as_dict())
                        break
                    addr += c.size
        out.end_list()
        if stops:
            out.field("stopped", stops[0].as_dict())
