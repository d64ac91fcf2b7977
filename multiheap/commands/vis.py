"""ptvis: the heap as memory, chunk by chunk, with what each word means."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Optional

from multiheap.builders import plural
from multiheap.commands.base import address, command, count
from multiheap.discovery.facts import NOT_INITIALISED
from multiheap.errors import MultiheapError, TargetMemoryError, UsageError
from multiheap.heap import Heap
from multiheap.heaptypes import SIZE_BITS, Arena, FreeList, Stop
from multiheap.plausible import chunk_or_user_pointer
from multiheap.symbols import for_session

LIST_NAMES = {"tcache": "tcache", "fast": "fastbin", "unsorted": "unsorted",
              "small": "smallbin", "large": "largebin"}
FLAGS = tuple("".join(n if f & b else "-" for b, n in ((1, "P"), (2, "M"), (4, "A")))
              for f in range(8))


BATCH = 1 << 16  # chunks placed and shown at a time


@dataclass
class Place:
    """Where a chunk is listed: its list kind, index and position (0: the head)."""

    kind: str
    index: int
    position: int
    length: int

    @property
    def label(self) -> str:
        name = LIST_NAMES.get(self.kind, self.kind)
        base = "unsorted" if self.kind == "unsorted" else f"{name}[{self.index}]"
        return f"{base} #{self.position}" if self.length > 1 or self.kind == "tcache" else base

    def as_dict(self) -> dict:
        return {"kind": self.kind, "index": self.index, "position": self.position,
                "label": self.label}


@dataclass
class Places:
    """Every listed chunk's places, and what the lists and walks found wrong."""

    at: dict[int, list[Place]] = field(default_factory=dict)
    problems: dict[int, list[str]] = field(default_factory=dict)

    def add_list(self, fl: FreeList, what: str, only: Optional[set[int]] = None,
                 stops: bool = True) -> None:
        """The list's chunks (those in ``only``, when given) and where its walk stopped."""
        n = len(fl.chunks)
        if only is None or only:
            for pos, c in enumerate(fl.chunks):
                if only is None or c in only:
                    self.at.setdefault(c, []).append(Place(fl.kind, fl.index, pos, n))
        if stops and fl.stop is not None:
            self.flag(fl.stop.addr, fl.stop.message(what))

    def flag(self, addr: int, why: str) -> None:
        mine = self.problems.setdefault(addr, [])
        if why not in mine:
            mine.append(why)


def find_places(heap: Heap, only: Optional[set[int]] = None,
                problems: bool = True) -> Places:
    """Each free list's chunks (those in ``only``, when given: a huge heap's lists are
    not copied whole), by address, with the lists' own stops, the arenas' and the
    heap checks' findings as problems (without ``problems``: the places alone)."""
    pl = Places()
    for a in heap.arenas():
        for fl in heap.lists.bins(a):
            pl.add_list(fl, f"{fl.kind} bin {fl.index}", only, problems)
        if heap.p.has_fastbins:
            for fl in heap.lists.fastbins(a):
                pl.add_list(fl, f"fastbin {fl.index}", only, problems)
        for st in a.stops if problems else ():
            pl.flag(st.addr, st.message(f"arena {a.addr:#x}"))
    if heap.p.has_tcache:
        for tc in heap.lists.tcaches():
            for fl in tc.bins:
                pl.add_list(fl, f"tcache bin {fl.index} (thread {tc.thread.num})", only,
                            problems)
    if problems:
        _heap_checks(heap, pl)
    return pl


def _heap_checks(heap: Heap, pl: Places) -> None:
    """Marks from the heap checks (multiheap.checks.run_checks), when that module exists."""
    try:
        from multiheap.checks import run_checks  # type: ignore[attr-defined]
    except ImportError:
        return
    try:
        found = run_checks(heap)
    except MultiheapError:
        return
    for f in found or ():
        get = f.get if isinstance(f, dict) else (lambda k, _f=f: getattr(_f, k, None))
        addr = next((v for k in ("chunk", "addr") if isinstance(v := get(k), int)), None)
        why = next((v for k in ("message", "reason", "what", "check", "name")
                    if isinstance(v := get(k), str)), None)
        if addr is not None and why:
            pl.flag(addr, why)


@dataclass
class VisChunk:
    """One chunk as ptvis shows it."""

    addr: int
    size: int
    flags: int
    state: str
    places: list[Place]
    data: bytes  # from the chunk's first byte: header and user data
    more: int  # bytes of the chunk not shown
    fd: Optional[int] = None  # decoded, when safe-linked
    fd_raw: Optional[int] = None
    problems: list[str] = field(default_factory=list)


def _chunks(heap: Heap, arena: Arena, start: Optional[int], limit: Optional[int],
            max_bytes: int, stops: list[Stop]) -> Iterator[VisChunk]:
    """The chunks from ``start`` (default: each heap's first) following sizes, their
    places not filled in yet; where a walk could not go on is added to ``stops``."""
    segs = arena.heaps if start is None else \
        [s for s in arena.heaps if s.start <= start < s.end]
    n = 0
    heap.lists.free_index()  # states of many chunks: one look-up each
    sz = heap.sz
    for seg in segs:
        addr = seg.start if start is None else start
        while addr + 2 * sz <= seg.end:
            if limit is not None and n >= limit:
                return
            try:
                c = heap.chunk(addr)
            except TargetMemoryError:
                stops.append(Stop(addr, "unreadable chunk header"))
                break
            state = heap.lists.chunk_state(c)
            size = c.size
            bad = size < heap.p.minsize or size & heap.p.align_mask & ~SIZE_BITS \
                or addr + size > seg.end
            if size == 0 and state != "top":  # a fencepost at an old heap's end
                break
            span = min(size if not bad else 4 * sz, seg.end - addr)
            if state == "top":
                span = min(span, 4 * sz)
            shown = min(span, max_bytes + 2 * sz)
            try:
                data = heap.mem.read(addr, shown)
            except TargetMemoryError:
                data = b""
            vc = VisChunk(addr, size, c.flags, state, [], data,
                          max(0, span - shown) if state != "top" else 0)
            if state in ("fast", "tcache") and heap.p.safe_linking:
                vc.fd_raw, vc.fd = c.fd, heap.reveal(c.mem, c.fd)
            if bad:
                why = f"impossible chunk size {c.size_field:#x}"
                vc.problems.append(why)
                stops.append(Stop(addr, why))
            yield vc
            n += 1
            if bad or state == "top":
                break
            addr += size
        if start is not None:
            break


def _batches(heap: Heap, chunks: Iterator[VisChunk],
             problems: Places) -> Iterator[list[VisChunk]]:
    """The chunks :data:`BATCH` at a time, each with its places in the lists and its
    problems: a whole huge heap is never held."""
    while True:
        batch = list(itertools.islice(chunks, BATCH))
        if not batch:
            return
        at = find_places(heap, {vc.addr for vc in batch}, problems=False).at
        for vc in batch:
            vc.places = at.get(vc.addr, [])
            vc.problems = problems.problems.get(vc.addr, []) + vc.problems
        yield batch


def _pointers(heap: Heap, vc: VisChunk, symbolize) -> list[dict]:
    """Each word of the chunk's data that points somewhere with a name."""
    sz, out = heap.sz, []
    for off in range(0, len(vc.data) - sz + 1, sz):
        value = int.from_bytes(vc.data[off:off + sz], heap.cfg.endian)
        if off == 2 * sz and vc.fd is not None:
            value = vc.fd
        name = symbolize(value) if symbolize is not None else None
        if name:
            out.append({"offset": off, "value": value, "symbol": name})
    return out


@command("ptvis", "the heap as memory: each chunk's words, the lists holding it, symbols")
class PtVis:
    """Show chunks as memory, from ADDR (a chunk; default: the main heap's first chunk):
    each chunk's header and user data as words with ASCII, and beside them the list
    that holds it (tcache[i] #n, fastbin[i], unsorted, smallbin[i], largebin[i], top;
    #0 is the head, the next chunk malloc gives), the decoded safe-linked fd (--raw:
    also the stored value), ptmeta tags, pointers named by symbol (<main_arena+0x60>,
    [heap], [stack]) and "!!" where a walk or a heap check found a problem.  Runs of
    zero words fold."""

    @staticmethod
    def args(p):
        p.add_argument("addr", nargs="?", metavar="ADDR",
                       help="chunk address (expression); a user pointer is taken as one")
        p.add_argument("-c", "--count", type=count, default=10,
                       help="chunks to show (default 10)")
        p.add_argument("--all", action="store_true",
                       help="every chunk of the arena's heaps")
        p.add_argument("--raw", action="store_true",
                       help="also show safe-linked fd as stored")
        p.add_argument("--max-bytes", type=count, default=0x100, metavar="N",
                       help="user data bytes shown per chunk (default 0x100)")

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        if args.count < 1:
            raise UsageError("-c must be at least 1")
        start = None
        assumed = ""
        if args.addr:
            start, _was_mem, assumed = chunk_or_user_pointer(
                heap, address(session, args.addr))
            found = heap.segment_of(start)
            if found is None:
                raise UsageError(f"{start:#x} is in no arena's heap (ptvis shows heaps; "
                                 "ptchunk shows any chunk)")
            arena = found[0]
        else:
            arenas = heap.arenas()
            arena = arenas[0]
            if not arena.heaps:
                out.field("arena", arena.addr, "#x")
                if out.structured():
                    out.field("chunks", [])
                out.note(NOT_INITIALISED)
                return
        limit = None if args.all else args.count
        stops: list[Stop] = []
        problems = find_places(heap, set())  # the lists' stops and the heap checks
        batches = _batches(heap, _chunks(heap, arena, start, limit, args.max_bytes, stops),
                           problems)
        symbolize = for_session(session)
        out.field("arena", arena.addr, "#x")
        if assumed:
            out.note(assumed)
        n, last = 0, None
        if out.structured():
            out.begin_list("chunks")
        for batch in batches:
            for vc in batch:
                if out.structured():
                    _emit_data(heap, session, vc, symbolize, out)
                else:
                    _emit_text(heap, session, n, vc, symbolize, args.raw, out)
                n, last = n + 1, vc
        if out.structured():
            out.end_list()
        for st in stops:
            out.note(st.message("walk"), **st.as_dict())
        if stops:
            out.field("stopped", stops[0].as_dict())
        if limit is not None and n == limit and last is not None and last.state != "top":
            out.text(f"({plural(n, 'chunk')} shown; -c N for more, "
                     "--all for every chunk)")


def _tags(session, heap: Heap, vc: VisChunk) -> list[str]:
    tags = session.meta.tags if session.meta.tags else {}
    return [t for a in (vc.addr, vc.addr + 2 * heap.sz) if (t := tags.get(a))]


def _emit_data(heap: Heap, session, vc: VisChunk, symbolize, out) -> None:
    """One chunk of the list ``chunks``."""
    out.begin()
    out.field("addr", vc.addr)
    out.field("mem", vc.addr + 2 * heap.sz)
    out.field("size", vc.size)
    out.field("flags", vc.flags)
    out.field("state", vc.state)
    out.field("lists", [p.as_dict() for p in vc.places])
    out.field("label", _label(vc))
    out.field("fd", vc.fd)
    out.field("fd_raw", vc.fd_raw)
    out.field("tags", _tags(session, heap, vc))
    out.field("problems", vc.problems)
    out.field("data", vc.data.hex())
    out.field("more", vc.more)
    out.field("pointers", _pointers(heap, vc, symbolize))
    out.end()


def _label(vc: VisChunk) -> Optional[str]:
    if vc.state == "top":
        return "top"
    return ", ".join(p.label for p in vc.places) or None


_CHUNK_ROLES = ("chunk0", "chunk1", "chunk2", "chunk3")
# a byte as the ASCII column shows it: itself if printable, else "."
_PRINTABLE = bytes(b if 32 <= b < 127 else 46 for b in range(256))


def _emit_text(heap: Heap, session, i: int, vc: VisChunk, symbolize, raw: bool, out) -> None:
    sz = heap.sz
    paint = out.paint
    aw = 2 + 2 * sz  # address width
    head = [paint("addr", f"{vc.addr:#0{aw}x}"), f"size={vc.size:#x}", f"[{FLAGS[vc.flags]}]",
            paint(vc.state, vc.state)]
    label = _label(vc)
    if label and label != "top":
        head.append(paint("list", label))
    for t in _tags(session, heap, vc):
        head.append(paint("tag", f"[{t}]"))
    for why in vc.problems:
        head.append(paint("problem", f"!! {why}"))
    out.text("  ".join(head))
    role = _CHUNK_ROLES[i % len(_CHUNK_ROLES)]
    row = 2 * sz
    rows = [vc.data[o:o + row] for o in range(0, len(vc.data), row)]
    zero = bytes(row)
    r = 0
    while r < len(rows):
        run = r
        while run < len(rows) and rows[run] == zero and run >= 2:
            run += 1
        if run - r >= 3:  # fold zero rows after the header and first data row
            out.text(f"  {' ' * aw}  {paint('dim', f'... {(run - r) * row:#x} zero bytes')}")
            r = run
            continue
        off = r * row
        words = []
        notes = []
        for w in range(0, len(rows[r]), sz):
            o = off + w
            value = int.from_bytes(rows[r][w:w + sz], heap.cfg.endian)
            note = _word_note(heap, vc, o, value, symbolize, raw)
            if o == 2 * sz and vc.fd is not None:
                value = vc.fd
            words.append(f"{value:#0{aw}x}")
            if note:
                notes.append(note)
        asc = rows[r].translate(_PRINTABLE).decode("ascii")
        cells = "  ".join(words).ljust((aw + 2) * 2 - 2)
        line = f"  {paint('addr', f'{vc.addr + off:#0{aw}x}')}  {paint(role, cells)}  {asc}"
        if notes:
            line += "  " + "  ".join(paint("sym", n) for n in notes)
        out.text(line)
        r += 1
    if vc.more:
        out.text(f"  {' ' * aw}  {paint('dim', f'... {vc.more:#x} more bytes')}")


def _word_note(heap: Heap, vc: VisChunk, off: int, value: int, symbolize, raw: bool) -> str:
    """What the word at ``off`` of the chunk is, for text."""
    sz = heap.sz
    if off == 2 * sz and vc.fd is not None:
        name = symbolize(vc.fd) if symbolize is not None and vc.fd else None
        s = "fd (decoded)" + (f" {name}" if name else "")
        return s + (f" raw={vc.fd_raw:#x}" if raw and vc.fd_raw is not None else "")
    if off == 3 * sz and vc.state == "tcache" and heap.p.tcache_key:
        return "tcache key"
    if off in (2 * sz, 3 * sz) and vc.state in ("free", "fast", "tcache", "orphan"):
        which = "fd" if off == 2 * sz else "bk"
        name = symbolize(value) if symbolize is not None else None
        return which + (f" {name}" if name else "")
    if off >= 2 * sz and symbolize is not None:
        name = symbolize(value)
        return name or ""
    return ""
