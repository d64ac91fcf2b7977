"""What every host's tracer shares: start/stop/status/save and the call bookkeeping.

A host subclass installs its breakpoints in :meth:`TraceControl._install`, removes
them in :meth:`TraceControl._remove`, and reports each stop through
:meth:`TraceControl.entry`, :meth:`TraceControl.match_return` /
:meth:`TraceControl.returned`, :meth:`TraceControl.watch_hit` and
:meth:`TraceControl.ended`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Optional

from multiheap.errors import UsageError
from multiheap.trace.records import Frame, frames_json
from multiheap.trace.state import Call, Tracker
from multiheap.trace.symbols import page_size
from multiheap.trace.writer import TraceWriter

WATCH_OFFSET = 16  # glibc's free lists write the first two words (and large bins a third
                   # and fourth, inside the allocator); user data from here on is watched
ALLOCATOR_FUNCTIONS = ("_int_", "malloc", "free", "calloc", "realloc", "memalign",
                       "__libc_", "tcache", "unlink", "sysmalloc", "_mid_memalign",
                       "posix_memalign", "aligned_alloc", "valloc", "pvalloc")


@dataclass
class TraceOptions:
    """``pttrace start`` / ``multiheap trace`` options."""

    backtrace: int = 8
    break_on_error: bool = False
    watch: bool = False
    output: Optional[str] = None
    complete: bool = False  # the trace began before the program's first allocation


class TraceControl:
    """One host's tracer; lives in the session as ``session.tracer``."""

    host = "?"

    def __init__(self) -> None:
        self.tracker: Optional[Tracker] = None
        self.writer: Optional[TraceWriter] = None
        self.opts = TraceOptions()
        self.running = False
        self.path: Optional[str] = None
        self.end: Optional[str] = None
        self.summary: Optional[dict] = None
        self._own_tmp: Optional[str] = None
        self._pending: dict[int, list[tuple[int, Call]]] = {}
        self.watched: list[int] = []  # user pointers under a watchpoint, oldest first
        self.watch_slots = 0
        self.libc_ranges: list[tuple[int, int]] = []  # calls from here are libc's own

    # the user's verbs ---------------------------------------------------------------
    def start(self, opts: TraceOptions) -> None:
        if self.running:
            raise UsageError("a trace is already running (pttrace stop first)")
        if opts.backtrace < 0 or opts.backtrace > 256:
            raise UsageError("--backtrace must be between 0 and 256")
        self._check_target()
        self._drop_tmp()
        path = opts.output
        if path is None:
            fd, path = tempfile.mkstemp(prefix="multiheap-trace-", suffix=".jsonl")
            os.close(fd)
            self._own_tmp = path
        try:
            writer = TraceWriter(path)
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror}") from None
        self.writer, self.path, self.opts = writer, path, opts
        self.tracker = Tracker(writer, complete=opts.complete, align=self._alignment(),
                               page=page_size())
        self._pending.clear()
        self.watched.clear()
        self.end = self.summary = None
        self.running = True
        try:
            self._install()
        except BaseException:
            self.running = False
            writer.close()
            raise

    def stop(self, end: str = "stopped") -> dict:
        if not self.running:
            raise UsageError("no trace is running (pttrace start)")
        self._remove()
        return self._close(end, exited=False)

    def ended(self, end: str) -> None:
        """The program exited or was killed: the live chunks are its leaks."""
        if self.running:
            try:
                self._remove()
            except Exception:  # the process is gone; its breakpoints go with it
                pass
            self._close(end, exited=True)

    def _close(self, end: str, exited: bool) -> dict:
        assert self.tracker is not None and self.writer is not None
        self.running = False
        self.end = end
        self.watched.clear()  # the watchpoints went with the breakpoints
        self.summary = self.tracker.summary(end, exited)
        self.writer.write(self.summary)
        self.writer.close()
        return self.summary

    def status(self) -> dict[str, Any]:
        t = self.tracker
        return {"running": self.running, "host": self.host, "file": self.path,
                "calls": t.calls if t else 0, "errors": t.errors if t else 0,
                "live_chunks": len(t.live) if t else 0, "end": self.end,
                "backtrace": self.opts.backtrace, "break_on_error": self.opts.break_on_error,
                "watch": self.opts.watch, "watched": list(self.watched)}

    def save(self, dest: str) -> int:
        """Copy the trace so far to ``dest``; returns the number of records."""
        if self.writer is None or self.path is None:
            raise UsageError("no trace yet (pttrace start)")
        self.writer.flush()
        if os.path.abspath(dest) != os.path.abspath(self.path):
            try:
                shutil.copyfile(self.path, dest)
            except OSError as e:
                raise UsageError(f"cannot write {dest}: {e.strerror or e}") from None
        return self.writer.lines

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def one_line(self, mem: int) -> Optional[str]:
        """For ptchunk: the traced story of the chunk at user pointer ``mem``."""
        return self.tracker.one_line(mem) if self.tracker is not None else None

    def _drop_tmp(self) -> None:
        if self._own_tmp:
            try:
                os.unlink(self._own_tmp)
            except OSError:
                pass
            self._own_tmp = None

    # what the host reports -------------------------------------------------------
    def entry(self, tid: int, op: str, values: tuple[int, ...], frames: list[Frame],
              ret_sp: int, caller: int = 0) -> bool:
        """An allocator entry point was hit; ``ret_sp`` is the stack pointer the caller
        will have after the return, ``caller`` the return address.  True: stop here (an
        error, with --break-on-error)."""
        assert self.tracker is not None
        stack = self._pending.setdefault(tid, [])
        while stack and stack[-1][0] <= ret_sp:  # left by longjmp or a lost return
            stack.pop()
        before = self.tracker.errors
        check = not any(lo <= caller < hi for lo, hi in self.libc_ranges)
        call = self.tracker.enter(tid, op, values, tuple(frames), len(stack), check)
        error = self.tracker.errors != before
        if call is not None:
            stack.append((ret_sp, call))
        if error:
            self.writer.flush()  # type: ignore[union-attr]  # on disk before glibc runs
        if op == "free" and not error and self.opts.watch and values[0]:
            self._rewatch(values[0])
        stop = bool(error and self.opts.break_on_error)
        if stop and self.tracker.last_error is not None:
            e = self.tracker.last_error
            self._say(f"multiheap: {e['error']}: {op}({e['ptr']:#x}) in thread {tid}, "
                      "stopped before glibc runs (pttrace show --errors)\n")
        return stop

    def match_return(self, tid: int, sp: int) -> Optional[Call]:
        """The pending call of thread ``tid`` that returns to stack pointer ``sp``."""
        stack = self._pending.get(tid)
        if not stack:
            return None
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] == sp:
                call = stack[i][1]
                del stack[i:]
                return call
            if stack[i][0] > sp:
                break
        return None

    def returned(self, call: Call, result: int, memptr: Optional[int] = None) -> None:
        assert self.tracker is not None
        self.tracker.leave(call, result, memptr)
        if self.opts.watch and self.watched:
            rec_ptr = call.args.get("ptr", 0) if result == call.args.get("ptr") else 0
            for p in (result, rec_ptr, memptr or 0):
                if p and p in self.watched:
                    self._unwatch(p)  # handed out again: its writes are legitimate

    def watch_hit(self, tid: int, addr: int, frames: list[Frame]) -> bool:
        """A watched word was written.  True when this is a write after free (the
        program's, not the allocator's own bookkeeping): recorded."""
        assert self.tracker is not None and self.writer is not None
        if frames and frames[0].function and frames[0].function.startswith(
                ALLOCATOR_FUNCTIONS):
            return False
        if self._pending.get(tid):
            return False
        ptr = addr - WATCH_OFFSET
        a = self.tracker.freed.get(ptr)
        rec = {"seq": self.tracker._next(), "op": "write", "tid": tid, "size": 8,
               "ptr": ptr, "result": None, "addr": addr, "error": "write after free",
               "backtrace": frames_json(tuple(frames))}
        if a is not None:
            rec["freed_by"] = {"seq": a.free_seq, "backtrace": frames_json(a.free_bt)}
        self.tracker.errors += 1
        self.tracker.last_error = rec
        self.writer.write(rec)
        self.writer.flush()
        where = frames[0].function or f"{frames[0].pc:#x}" if frames else "?"
        self._say(f"multiheap: write after free at {addr:#x} in {where} (thread {tid})\n")
        return True

    def _rewatch(self, ptr: int) -> None:
        assert self.tracker is not None
        a = self.tracker.freed.get(ptr)
        if a is None or a.size < WATCH_OFFSET + 8 or self.watch_slots <= 0:
            return
        if ptr in self.watched:
            return
        if len(self.watched) >= self.watch_slots:
            self._unwatch(self.watched[0])
        if self._watch(ptr + WATCH_OFFSET):
            self.watched.append(ptr)

    def _unwatch(self, ptr: int) -> None:
        if ptr in self.watched:
            self.watched.remove(ptr)
            self._unwatch_addr(ptr + WATCH_OFFSET)

    # the host's part ---------------------------------------------------------------
    def _say(self, text: str) -> None:
        """Show a line to the user at a stop (the host's console)."""

    def _check_target(self) -> None:
        """Raise UsageError when there is nothing to trace."""

    def _alignment(self) -> int:
        return 16

    def _install(self) -> None:
        raise NotImplementedError

    def _remove(self) -> None:
        raise NotImplementedError

    def _watch(self, addr: int) -> bool:
        return False

    def _unwatch_addr(self, addr: int) -> None:
        pass
