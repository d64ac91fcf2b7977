"""ptmap's page: a heap (and optionally a malloc trace) packed into one HTML file.

Everything comes from :class:`~multiheap.heap.Heap`'s public API (arenas, walk,
mmapped_chunks, bins, fastbins, tcaches).  Per-chunk data is packed as typed arrays
in base64 (address and size as float64, one state byte, the first bytes of user data),
the lists and tags as a small JSON object; the page's script (``assets/ptmap.html``)
decodes them and draws on a canvas.  Nothing in the page is fetched from anywhere.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import json
import os
import secrets
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Optional, Union

from multiheap.compact import Run, SortedBuilder, window
from multiheap.errors import MultiheapError, TargetMemoryError, UsageError
from multiheap.heap import Heap
from multiheap.heaptypes import IS_MMAPPED, Arena, HeapSegment, Stop
from multiheap.spill import SpillBytes, SpillFile

# State codes, as the page knows them (order = legend order).
STATES = ("inuse", "tcache", "fast", "unsorted", "small", "large", "top", "mmapped", "orphan")
CODE = {s: i for i, s in enumerate(STATES)}
FREE_STATES = frozenset(("tcache", "fast", "unsorted", "small", "large", "orphan"))
FLAGGED_BIT = 0x10  # meta byte: bits 0-3 state, bit 4 flagged, bits 5-7 chunk flags
HEX_BYTES = 16  # first bytes of each chunk's user data shown in the hexdump
BATCH = 1 << 16  # chunks packed at a time
_FREE_CODES = frozenset(CODE[s] for s in FREE_STATES)

OPS = ("malloc", "calloc", "realloc", "free", "memalign", "aligned_alloc",
       "posix_memalign", "valloc", "pvalloc", "reallocarray")
TRACE_LIMIT = 5_000_000

_PLACEHOLDER = "/*MH_DATA*/null"


@dataclass
class MapData:
    """The packed page data and the counts ``ptmap --json`` reports."""

    meta: dict[str, Any] = field(default_factory=dict)
    chunks: int = 0
    free: int = 0
    notes: list[str] = field(default_factory=list)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _checks(heap: Heap, arena: Optional[Arena]) -> tuple[dict[int, str], Optional[str]]:
    """Chunk address -> what the heap checks (ptcheck) say of it, if they are installed."""
    try:
        from multiheap.checks import run_checks  # type: ignore[import-not-found]
    except ImportError:
        return {}, None
    except Exception as e:  # a broken checks module must not cost us the page
        return {}, f"heap checks unavailable: {type(e).__name__}: {e}"
    try:
        found = run_checks(heap, arena)
    except Exception as e:  # idem: the map is drawn without flags, and says why
        return {}, f"heap checks failed: {type(e).__name__}: {e}"
    out: dict[int, str] = {}
    for f in found:
        addr = getattr(f, "addr", None)
        if isinstance(addr, int):
            msg = f"{getattr(f, 'kind', 'check')}: {getattr(f, 'message', '')}"
            out[addr] = out[addr] + "; " + msg if addr in out else msg
    return out, None


def _lists(heap: Heap, arenas: list[Arena],
           spill: SpillFile) -> tuple[list[dict], list[Run]]:
    """Every non-empty free list (kind, where, its member addresses packed as float64
    in ``chunks``, kept in the spill file past 1 MB), and each binned chunk's exact
    bin kind (unsorted / small / large) as sorted ``addr | code`` runs."""
    lists: list[dict] = []
    kinds = SortedBuilder(spill)
    for a in arenas:
        for fl in heap.lists.bins(a):
            if fl.chunks:
                code = CODE[fl.kind]
                for lo in range(0, len(fl.chunks), BATCH):
                    kinds.extend(map(code.__or__, fl.chunks[lo:lo + BATCH]))
                lists.append({"kind": fl.kind, "index": fl.index, "arena": a.addr,
                              "chunks": _packed(fl.chunks, spill)})
        for fl in heap.lists.fastbins(a):
            if fl.chunks:
                lists.append({"kind": "fast", "index": fl.index, "arena": a.addr,
                              "chunks": _packed(fl.chunks, spill)})
    for tc in heap.lists.tcaches():
        for fl in tc.bins:
            if fl.chunks:
                lists.append({"kind": "tcache", "index": fl.index, "thread": tc.thread.num,
                              "tid": tc.thread.tid, "chunks": _packed(fl.chunks, spill)})
    return lists, kinds.runs()


def _packed(values: Sequence[int], spill: SpillFile) -> SpillBytes:
    """Addresses as the page's float64 column."""
    col = SpillBytes(spill)
    for lo in range(0, len(values), BATCH):
        col.append(array("d", values[lo:lo + BATCH]).tobytes())
    return col


def _hex(buf: bytes, offs: list[int]) -> bytes:
    """HEX_BYTES bytes at each offset of ``buf`` (zero-padded past its end)."""
    n = HEX_BYTES
    out = b"".join([buf[o:o + n] for o in offs])
    if len(out) != n * len(offs):
        out = b"".join([buf[o:o + n].ljust(n, b"\0") for o in offs])
    return out


def _hex_rows(heap: Heap, seg: HeapSegment, addrs: list[int], hdr: int) -> bytes:
    """HEX_BYTES bytes of user data of each chunk (zeros where unreadable), read a
    window of the heap at a time (a huge heap is never read whole)."""
    out: list[bytes] = []
    i, n = 0, len(addrs)
    while i < n:
        blk = heap.mem.window(addrs[i] + hdr, 1, seg.start, seg.end)
        j = bisect.bisect_left(addrs, blk[1] - hdr - HEX_BYTES + 1, i) if blk else i
        if j > i:
            lo, _hi, buf = blk
            out.append(_hex(buf, [x - lo + hdr for x in addrs[i:j]]))
            i = j
            continue
        try:  # a row across a window's end, or unreadable
            out.append(heap.mem.read(addrs[i] + hdr, HEX_BYTES))
        except TargetMemoryError:
            out.append(bytes(HEX_BYTES))
        i += 1
    return b"".join(out)


class _Columns:
    """The page's per-chunk columns (address, size, state byte, first bytes of user
    data), filled a batch of chunks at a time and kept in the spill file: a huge heap
    costs the debugger no more memory than a small one."""

    def __init__(self, spill: SpillFile, flagged: dict[int, str], hdr: int) -> None:
        self.addr, self.size = SpillBytes(spill), SpillBytes(spill)
        self.meta, self.hex = SpillBytes(spill), SpillBytes(spill)
        self.flagged, self.hdr = flagged, hdr
        self.matched: set[int] = set()  # findings coloured on a chunk
        self.count = self.free = 0

    def add(self, addrs: list[int], sizes: list[int], meta: bytearray, hexes: bytes) -> None:
        if self.flagged and addrs:
            self._flag(addrs, meta)
        self.addr.append(array("d", addrs).tobytes())
        self.size.append(array("d", sizes).tobytes())
        self.meta.append(bytes(meta))
        self.hex.append(hexes)
        self.count += len(addrs)
        self.free += sum(1 for m in meta if m & 0x0F in _FREE_CODES)

    def _flag(self, addrs: list[int], meta: bytearray) -> None:
        """A finding colours the chunk it names, or the chunk whose user pointer it
        names (no chunk is both: a chunk is larger than its header)."""
        lo, hi = min(addrs), max(addrs) + self.hdr
        here = [f for f in self.flagged if lo <= f <= hi and f not in self.matched]
        if not here:
            return
        at = {a: i for i, a in enumerate(addrs)}
        for f in here:
            i = at.get(f)
            if i is None:
                i = at.get(f - self.hdr)
            if i is not None:
                meta[i] |= FLAGGED_BIT
                self.matched.add(f)


def pack_heap(heap: Heap, arena: Optional[Arena] = None,
              tags: Optional[dict[int, str]] = None) -> MapData:
    """Walk the arenas (``arena`` alone, or all of them and the mmapped chunks), a
    batch of chunks at a time."""
    arenas = [arena] if arena is not None else heap.arenas()
    sz = heap.sz
    hdr = 2 * sz
    spill = SpillFile()
    lists, kind_runs = _lists(heap, arenas, spill)
    flagged, why = _checks(heap, arena)
    out = MapData()
    if why:
        out.notes.append(why)
    cols = _Columns(spill, flagged, hdr)
    segs: list[dict] = []
    stops: list[Stop] = []
    code = CODE
    for a in arenas:
        for st in a.stops:
            out.notes.append(st.message(f"arena {a.addr:#x}"))
        for seg in a.heaps:
            first = cols.count
            rows = heap.walks.walk(a, seg, stops)
            while True:
                batch = list(itertools.islice(rows, BATCH))
                if not batch:
                    break
                addr_l = [r[0] for r in batch]
                kind = {k & ~7: k & 7 for k in window(kind_runs, addr_l[0], addr_l[-1] + 8)}
                get = kind.get
                meta = bytearray([(code[s] if s != "free" else get(ad, 3)) | (f << 5)
                                  for ad, _s, f, s in batch])
                cols.add(addr_l, [r[1] for r in batch], meta,
                         _hex_rows(heap, seg, addr_l, hdr))
            if cols.count == first:
                continue
            segs.append({"kind": "heap", "arena": a.addr, "arena_index": a.index,
                         "main": a.is_main, "info": seg.info, "start": seg.start,
                         "end": seg.end, "first": first, "count": cols.count - first})
    for st in stops:
        out.notes.append(st.message("walk"))
    if arena is None:
        mm = heap.mmapped.chunks()
        if mm:
            first = cols.count
            hexes = []
            for a, _s, _p in mm:
                try:
                    hexes.append(heap.mem.read(a + hdr, HEX_BYTES))
                except TargetMemoryError:
                    hexes.append(bytes(HEX_BYTES))
            cols.add([a for a, _s, _p in mm], [s for _a, s, _p in mm],
                     bytearray([code["mmapped"] | (IS_MMAPPED << 5)] * len(mm)),
                     b"".join(hexes))
            segs.append({"kind": "mmapped", "start": mm[0][0],
                         "end": mm[-1][0] + mm[-1][1], "first": first, "count": len(mm)})
        why_mm = heap.mmapped.note()
        if why_mm:
            out.notes.append(why_mm)
    for msg, _data in heap.lists.tcache_notes():
        out.notes.append(msg)
    for ad in flagged:
        if ad not in cols.matched:  # e.g. where the walk stopped: no chunk drawn to colour
            out.notes.append(f"check at {ad:#x} (no chunk drawn there): {flagged[ad]}")
    out.chunks, out.free = cols.count, cols.free
    out.meta = {
        "version": 1,
        "ptr_size": sz,
        "glibc": ".".join(map(str, heap.cfg.version)),
        "states": list(STATES),
        "arenas": [{"addr": a.addr, "index": a.index, "main": a.is_main,
                    "top": a.top, "system_mem": a.f["system_mem"]} for a in arenas],
        "segments": segs,
        "lists": lists,
        "tags": {f"{k:#x}": v for k, v in (tags or {}).items()},
        "flagged": {f"{k:#x}": v for k, v in flagged.items()},
        "notes": out.notes,
        "count": cols.count,
        "hex_bytes": HEX_BYTES,
        "addr": cols.addr,
        "size": cols.size,
        "meta": cols.meta,
        "hex": cols.hex,
    }
    return out


def _int(v: Any, what: str, line: int) -> int:
    if v is None:
        return 0
    if isinstance(v, bool):
        raise UsageError(f"trace line {line}: {what} is not a number")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            pass
    raise UsageError(f"trace line {line}: {what} is not a number: {str(v)[:40]!r}")


def load_trace(path: str) -> dict[str, Any]:
    """Read a JSON Lines malloc trace (one call per line) into the page's packed form.

    Each line needs ``op``; ``tid``, ``size``, ``ptr``, ``result``, ``seq`` are numbers
    (or hex strings), ``backtrace`` a list of ``{pc, function}``.  Backtraces are kept
    once each and referred to by index.
    """
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read trace {path!r}: {e.strerror}") from None
    ops = array("B")
    nums: dict[str, array] = {k: array("d") for k in ("tid", "size", "ptr", "result", "seq")}
    bt_index: dict[str, int] = {}
    bts: list[list] = []
    bt_of = array("i")
    with f:
        for ln, raw in enumerate(f, 1):
            raw = raw.strip()
            if not raw:
                continue
            try:
                ev = json.loads(raw)
            except ValueError as e:
                raise UsageError(f"trace line {ln} is not JSON: {e}") from None
            if not isinstance(ev, dict):
                raise UsageError(f"trace line {ln} is not a JSON object")
            op = ev.get("op")
            if op not in OPS and "ptr" not in ev and "result" not in ev:
                continue  # not a call: the tracer's summary or another record kind
            if op not in OPS:
                raise UsageError(f"trace line {ln}: unknown op {str(op)[:40]!r} "
                                 f"(known: {', '.join(OPS)})")
            if len(ops) >= TRACE_LIMIT:
                raise UsageError(f"trace has more than {TRACE_LIMIT} calls")
            ops.append(OPS.index(op))
            for k, arr in nums.items():
                arr.append(_int(ev.get(k, len(ops) - 1 if k == "seq" else 0), k, ln))
            frames = ev.get("backtrace") or []
            if not isinstance(frames, list):
                raise UsageError(f"trace line {ln}: backtrace is not a list")
            bt = [[_int(fr.get("pc"), "pc", ln), str(fr.get("function") or "")]
                  if isinstance(fr, dict) else [0, str(fr)] for fr in frames[:64]]
            key = json.dumps(bt)
            i = bt_index.get(key)
            if i is None:
                i = bt_index[key] = len(bts)
                bts.append(bt)
            bt_of.append(i)
    if not ops:
        raise UsageError(f"trace {path!r} has no calls")
    packed = {k: _b64(v.tobytes()) for k, v in nums.items()}
    return {"count": len(ops), "ops": list(OPS), "op": _b64(ops.tobytes()),
            "bt": _b64(bt_of.tobytes()), "backtraces": bts, **packed}


def template() -> str:
    """The page: HTML, style and script, with a placeholder for the data."""
    return resources.files("multiheap").joinpath("assets/ptmap.html").read_text("utf-8")


def page_parts(data: MapData, trace: Optional[dict[str, Any]] = None,
               title: str = "") -> Iterator[str]:
    """The HTML page for ``data`` (and ``trace``), a piece at a time: the packed
    columns are base64-encoded as they are read back, never held whole."""
    page = template()
    if _PLACEHOLDER not in page:
        raise MultiheapError("assets/ptmap.html has no data placeholder")
    head, tail = page.split(_PLACEHOLDER, 1)
    cols: list[SpillBytes] = []
    nonce = secrets.token_hex(8)

    def mark(v: Any) -> Any:  # a column's place in the JSON text: a unique string
        if isinstance(v, SpillBytes):
            cols.append(v)
            return f"@mh-{nonce}-{len(cols) - 1}@"
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v

    doc = mark(dict(data.meta, trace=trace, title=title))
    text = json.dumps(doc, separators=(",", ":")).replace("</", "<\\/")
    yield head
    for k, col in enumerate(cols):
        before, text = text.split(f'"@mh-{nonce}-{k}@"', 1)
        yield before + '"'
        for piece in col.pieces(3 << 20):  # a multiple of 3: base64 pieces join
            yield base64.b64encode(piece).decode("ascii")
        yield '"'
    yield text
    yield tail


def write_page(path: str, page: Union[str, Iterable[str]],
               opener: Callable[..., Any] = open) -> int:
    """Write the page, whole or piece by piece (through a temporary file, then
    renamed); returns its size."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with opener(tmp, "w", encoding="utf-8") as f:
            for piece in ([page] if isinstance(page, str) else page):
                f.write(piece)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"cannot write {path!r}: {e.strerror}") from None
    return os.path.getsize(path)
