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
import json
import os
from array import array
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Optional

from multiheap.errors import MultiheapError, TargetMemoryError, UsageError
from multiheap.heap import Heap
from multiheap.heaptypes import IS_MMAPPED, Arena, HeapSegment, Stop

# State codes, as the page knows them (order = legend order).
STATES = ("inuse", "tcache", "fast", "unsorted", "small", "large", "top", "mmapped", "orphan")
CODE = {s: i for i, s in enumerate(STATES)}
FREE_STATES = frozenset(("tcache", "fast", "unsorted", "small", "large", "orphan"))
FLAGGED_BIT = 0x10  # meta byte: bits 0-3 state, bit 4 flagged, bits 5-7 chunk flags
HEX_BYTES = 16  # first bytes of each chunk's user data shown in the hexdump

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


def _lists(heap: Heap, arenas: list[Arena]) -> tuple[list[dict], dict[int, int]]:
    """Every non-empty free list (kind, where, member addresses) and each binned
    chunk's exact bin kind (unsorted / small / large)."""
    lists: list[dict] = []
    bin_kind: dict[int, int] = {}
    for a in arenas:
        for fl in heap.lists.bins(a):
            if fl.chunks:
                bin_kind.update(dict.fromkeys(fl.chunks, CODE[fl.kind]))
                lists.append({"kind": fl.kind, "index": fl.index, "arena": a.addr,
                              "chunks": list(fl.chunks)})
        for fl in heap.lists.fastbins(a):
            if fl.chunks:
                lists.append({"kind": "fast", "index": fl.index, "arena": a.addr,
                              "chunks": list(fl.chunks)})
    for tc in heap.lists.tcaches():
        for fl in tc.bins:
            if fl.chunks:
                lists.append({"kind": "tcache", "index": fl.index, "thread": tc.thread.num,
                              "tid": tc.thread.tid, "chunks": list(fl.chunks)})
    return lists, bin_kind


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


def pack_heap(heap: Heap, arena: Optional[Arena] = None,
              tags: Optional[dict[int, str]] = None) -> MapData:
    """Walk the arenas (``arena`` alone, or all of them and the mmapped chunks)."""
    arenas = [arena] if arena is not None else heap.arenas()
    sz = heap.sz
    hdr = 2 * sz
    lists, bin_kind = _lists(heap, arenas)
    flagged, why = _checks(heap, arena)
    out = MapData()
    if why:
        out.notes.append(why)
    addrs = array("d")
    sizes = array("d")
    meta = bytearray()
    hexes: list[bytes] = []
    segs: list[dict] = []
    stops: list[Stop] = []
    code = CODE
    for a in arenas:
        for st in a.stops:
            out.notes.append(st.message(f"arena {a.addr:#x}"))
        for seg in a.heaps:
            first = len(addrs)
            rows = list(heap.walks.walk(a, seg, stops))
            if not rows:
                continue
            addr_l = [r[0] for r in rows]
            addrs.extend(addr_l)
            sizes.extend([r[1] for r in rows])
            get = bin_kind.get
            meta.extend([(code[s] if s != "free" else get(ad, 3)) | (f << 5)
                         for ad, _s, f, s in rows])
            hexes.append(_hex_rows(heap, seg, addr_l, hdr))
            segs.append({"kind": "heap", "arena": a.addr, "arena_index": a.index,
                         "main": a.is_main, "info": seg.info, "start": seg.start,
                         "end": seg.end, "first": first, "count": len(rows)})
    for st in stops:
        out.notes.append(st.message("walk"))
    if arena is None:
        mm = heap.mmapped.chunks()
        if mm:
            first = len(addrs)
            for a, s, _p in mm:
                addrs.append(a)
                sizes.append(s)
                meta.append(code["mmapped"] | (IS_MMAPPED << 5))
                try:
                    hexes.append(heap.mem.read(a + hdr, HEX_BYTES))
                except TargetMemoryError:
                    hexes.append(bytes(HEX_BYTES))
            segs.append({"kind": "mmapped", "start": mm[0][0],
                         "end": mm[-1][0] + mm[-1][1], "first": first, "count": len(mm)})
        why_mm = heap.mmapped.note()
        if why_mm:
            out.notes.append(why_mm)
    for msg, _data in heap.lists.tcache_notes():
        out.notes.append(msg)
    if flagged:
        index = {int(x): i for i, x in enumerate(addrs)}
        for ad in flagged:
            i = index.get(ad)
            if i is None:
                i = index.get(ad - hdr)  # a finding may name the user pointer
            if i is not None:
                meta[i] |= FLAGGED_BIT
            else:  # e.g. where the walk stopped: no chunk drawn to colour
                out.notes.append(f"check at {ad:#x} (no chunk drawn there): {flagged[ad]}")
    n = len(addrs)
    out.chunks = n
    free_codes = {code[s] for s in FREE_STATES}
    out.free = sum(1 for m in meta if m & 0x0F in free_codes)
    out.meta = {
        "version": 1,
        "ptr_size": sz,
        "glibc": ".".join(map(str, heap.cfg.version)),
        "states": list(STATES),
        "arenas": [{"addr": a.addr, "index": a.index, "main": a.is_main,
                    "top": a.top, "system_mem": a.f["system_mem"]} for a in arenas],
        "segments": segs,
        "lists": [dict(fl, chunks=_b64(array("d", fl["chunks"]).tobytes())) for fl in lists],
        "tags": {f"{k:#x}": v for k, v in (tags or {}).items()},
        "flagged": {f"{k:#x}": v for k, v in flagged.items()},
        "notes": out.notes,
        "count": n,
        "hex_bytes": HEX_BYTES,
        "addr": _b64(addrs.tobytes()),
        "size": _b64(sizes.tobytes()),
        "meta": _b64(bytes(meta)),
        "hex": _b64(b"".join(hexes)),
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


def render(data: MapData, trace: Optional[dict[str, Any]] = None, title: str = "") -> str:
    """The whole HTML page for ``data`` (and ``trace``)."""
    doc = dict(data.meta, trace=trace, title=title)
    text = json.dumps(doc, separators=(",", ":")).replace("</", "<\\/")
    page = template()
    if _PLACEHOLDER not in page:
        raise MultiheapError("assets/ptmap.html has no data placeholder")
    return page.replace(_PLACEHOLDER, text, 1)


def write_page(path: str, page: str,
               opener: Callable[..., Any] = open) -> int:
    """Write the page (through a temporary file, then renamed); returns its size."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with opener(tmp, "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"cannot write {path!r}: {e.strerror}") from None
    return os.path.getsize(path)
