"""The allocation state machine: live and freed chunks, errors at the call, leaks.

Errors are decided at a call's entry, before the allocator runs, from what the trace
has seen so far.  A trace that did not start with the program (``complete`` False)
has not seen older allocations, so an unknown pointer is not called invalid there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from multiheap.trace.records import OPS, Frame, call_size, frames_json, where
from multiheap.trace.writer import TraceWriter

Backtrace = tuple[Frame, ...]


class Alloc:
    """A chunk the trace saw returned: by which call (seq, op) with which backtrace."""

    __slots__ = ("seq", "op", "size", "bt", "free_seq", "free_bt")

    def __init__(self, seq: int, op: str, size: int, bt: Backtrace) -> None:
        self.seq, self.op, self.size, self.bt = seq, op, size, bt
        self.free_seq: int = 0
        self.free_bt: Backtrace = ()


@dataclass
class Call:
    """A call whose entry was seen and whose return is awaited."""

    seq: int
    op: str
    tid: int
    args: dict[str, int]
    size: int
    bt: Backtrace
    depth: int
    error: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)


class Tracker:
    """Feeds records to ``writer`` and keeps the heap's story as the calls tell it."""

    def __init__(self, writer: TraceWriter, *, complete: bool, align: int = 16,
                 page: int = 4096) -> None:
        self.writer = writer
        self.complete = complete
        self.align = align
        self.page = page
        self.seq = 0
        self.calls = 0
        self.errors = 0
        self.by_op: dict[str, int] = {}
        self.live: dict[int, Alloc] = {}
        self.freed: dict[int, Alloc] = {}
        self._bts: dict[Backtrace, Backtrace] = {}  # interned backtraces
        self.last_error: Optional[dict] = None

    def _intern(self, bt: Backtrace) -> Backtrace:
        return self._bts.setdefault(bt, bt)

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    # entry -------------------------------------------------------------------------
    def enter(self, tid: int, op: str, values: tuple[int, ...], bt: Backtrace,
              depth: int = 0, check: bool = True) -> Optional[Call]:
        """A call's entry.  Returns the pending call when its return matters (every op
        but free); a free, and an erroneous call, is written here at once.  Calls made
        inside the allocator (``depth``) or by libc itself (``check`` False: e.g. a
        thread's exit handing its tcache back) are recorded but not judged."""
        args = dict(zip(OPS[op], values))
        bt = self._intern(tuple(bt))
        size = call_size(op, args, self.page)
        self.calls += 1
        self.by_op[op] = self.by_op.get(op, 0) + 1
        error, extra = (None, {}) if depth or not check else self._check(op, args.get("ptr", 0))
        if op == "free":
            rec = self._record(self._next(), op, tid, args, size, None, bt, depth)
            if error:
                self._error(rec, error, extra)
            else:
                self._release(args["ptr"], rec["seq"], bt)
            self.writer.write(rec)
            return None
        call = Call(0, op, tid, args, size, bt, depth, error, extra)
        if error:  # written before the allocator runs
            call.seq = self._next()
            rec = self._record(call.seq, op, tid, args, size, None, bt, depth)
            self._error(rec, error, extra)
            self.writer.write(rec)
        return call

    def _check(self, op: str, ptr: int) -> tuple[Optional[str], dict]:
        if op not in ("free", "realloc", "reallocarray") or ptr == 0:
            return None, {}
        if ptr in self.live:
            return None, {}
        if ptr % self.align:
            return "misaligned pointer", {}
        prev = self.freed.get(ptr)
        if prev is not None:
            what = "double free" if op == "free" else "realloc of freed pointer"
            return what, {"freed_by": {"seq": prev.free_seq,
                                       "backtrace": frames_json(prev.free_bt)},
                          "allocated_by": {"seq": prev.seq, "op": prev.op,
                                           "backtrace": frames_json(prev.bt)}}
        owner = self.chunk_holding(ptr)
        if owner is not None:
            start, a = owner
            return f"{'free' if op == 'free' else 'realloc'} inside a chunk", {
                "chunk": start, "offset": ptr - start,
                "allocated_by": {"seq": a.seq, "op": a.op, "backtrace": frames_json(a.bt)}}
        if not self.complete:
            return None, {}  # allocated before the trace began, perhaps
        return ("invalid free" if op == "free" else "invalid realloc"), {}

    def _error(self, rec: dict, error: str, extra: dict) -> None:
        rec["error"] = error
        rec.update(extra)
        self.errors += 1
        self.last_error = rec

    # return ------------------------------------------------------------------------
    def leave(self, call: Call, result: int, memptr: Optional[int] = None) -> dict:
        """A call returned ``result`` (posix_memalign: the value stored at memptr)."""
        ptr = call.args.get("ptr", 0)
        rec = self._record(self._next(), call.op, call.tid, call.args, call.size,
                           result, call.bt, call.depth)
        if call.error:
            rec["after_error"] = call.seq
        if call.op == "posix_memalign":
            rec["status"] = result
            rec["result"] = result = (memptr or 0) if result == 0 else 0
        if call.op in ("realloc", "reallocarray") and ptr:
            if result:
                if result != ptr or ptr not in self.live:
                    self._release(ptr, rec["seq"], call.bt)
            elif call.size == 0:
                self._release(ptr, rec["seq"], call.bt)  # realloc(p, 0) frees p
        if result and (call.op not in ("realloc", "reallocarray")
                       or result != ptr or ptr not in self.live):
            self.live[result] = Alloc(rec["seq"], call.op, call.size, call.bt)
            self.freed.pop(result, None)
        elif result and result in self.live:  # realloc in place: new size, new story
            a = self.live[result]
            a.size, a.seq, a.op, a.bt = call.size, rec["seq"], call.op, call.bt
        self.writer.write(rec)
        return rec

    def _release(self, ptr: int, seq: int, bt: Backtrace) -> None:
        a = self.live.pop(ptr, None)
        if a is None:
            if ptr == 0:
                return
            a = Alloc(0, "?", 0, ())
        a.free_seq, a.free_bt = seq, bt
        self.freed[ptr] = a

    def _record(self, seq: int, op: str, tid: int, args: dict[str, int], size: int,
                result: Optional[int], bt: Backtrace, depth: int) -> dict:
        rec: dict[str, Any] = {"seq": seq, "op": op, "tid": tid, "size": size,
                               "ptr": args.get("ptr"), "result": result}
        if "align" in args:
            rec["align"] = args["align"]
        if depth:
            rec["depth"] = depth  # a call the allocator made inside another one
        rec["backtrace"] = frames_json(bt)
        return rec

    # queries -----------------------------------------------------------------------
    def chunk_holding(self, addr: int) -> Optional[tuple[int, Alloc]]:
        """The live chunk whose user bytes hold ``addr`` (a scan: errors are rare)."""
        for start, a in self.live.items():
            if start <= addr < start + max(a.size, 1):
                return start, a
        return None

    def one_line(self, mem: int) -> Optional[str]:
        """The traced story of the chunk whose user pointer is ``mem``, in one line."""
        a = self.live.get(mem)
        if a is not None:
            return f"traced: #{a.seq} {a.op}({a.size:#x}) in {where(a.bt)}, still allocated"
        a = self.freed.get(mem)
        if a is not None:
            born = f"#{a.seq} {a.op}({a.size:#x}) in {where(a.bt)}" if a.seq else "untraced"
            return f"traced: {born}, freed #{a.free_seq} in {where(a.free_bt)}"
        return None

    def summary(self, end: str, exited: bool) -> dict:
        """The final record: counts, and the chunks still allocated grouped by their
        allocation backtrace, largest total first (``leaks`` when the program ended)."""
        groups: dict[Backtrace, list] = {}
        for ptr, a in self.live.items():
            g = groups.setdefault(a.bt, [0, 0, []])
            g[0] += 1
            g[1] += a.size
            if len(g[2]) < 8:
                g[2].append(ptr)
        rows = sorted(groups.items(), key=lambda kv: (-kv[1][1], -kv[1][0]))
        listed = [{"count": n, "bytes": b, "ptrs": sorted(p), "backtrace": frames_json(bt)}
                  for bt, (n, b, p) in rows]
        return {"seq": self._next(), "op": "summary", "end": end, "complete": self.complete,
                "calls": self.calls, "errors": self.errors, "by_op": self.by_op,
                "leaked_chunks" if exited else "live_chunks": len(self.live),
                "leaked_bytes" if exited else "live_bytes":
                    sum(a.size for a in self.live.values()),
                "leaks" if exited else "live": listed}
