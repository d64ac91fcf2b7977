"""The tracer's lldb part: breakpoints with Python callbacks on the allocator and on
callers' return addresses, hardware watchpoints, backtraces; and ``CliTrace``, which
runs a program (or attaches) under an SBDebugger of its own for ``multiheap trace
--backend lldb``.  All decisions are the engine's (multiheap.trace).
"""

from __future__ import annotations

import functools
import itertools
import shlex
import sys
from typing import Callable, Optional

from multiheap.adapters.lldb import LldbTarget, lldb, wait_until_stopped
from multiheap.errors import MultiheapError, UsageError
from multiheap.trace import Frame, TraceControl, TraceOptions
from multiheap.trace.records import RETURNS
from multiheap.trace.symbols import entry_points

_REGS = ("rdi", "rsi", "rdx")
_ME = "multiheap.adapters.lldb_trace"
_ARGC = {"free": 1, "malloc": 1, "valloc": 1, "pvalloc": 1, "posix_memalign": 3,
         "reallocarray": 3}
# Each breakpoint's callback gets its handler's number in extra_args: no per-stop
# look-up through SB objects (debugger, target, breakpoint ids).  (A callback *body*
# costs more: lldb wraps it in code copying its session dictionary at every stop.)
_H: dict[int, Callable] = {}
_TOKENS = itertools.count(1)
_BODY = "return __import__('sys').modules['" + _ME + "']._H[{}](frame)"


def _handler(fn: Callable) -> int:
    token = next(_TOKENS)
    _H[token] = fn
    return token


def _hit(frame, bp_loc, extra_args, internal_dict) -> bool:
    return _H[extra_args.GetValueForKey("t").GetIntegerValue()](frame)


class LldbTracer(TraceControl):
    """``session.tracer`` in the lldb plugin, and the tracer of ``CliTrace``.

    Per stop it asks lldb only for what it must: the thread id, the stack pointer
    (``GetSP``, no register value object), the argument registers the call has, the
    frames of the backtrace (lldb's own unwinder, which also loads the stack page the
    return address is then read from), and on return ``rax``."""

    host = "lldb"

    def __init__(self, debugger) -> None:
        super().__init__()
        self.debugger = debugger
        self._bps: dict[int, int] = {}  # breakpoint id -> handler token
        self._returns: dict[int, int] = {}  # return address -> breakpoint id
        self._watches: dict[int, tuple[int, int]] = {}  # addr -> (watchpoint id, token)
        self._names: dict[int, Optional[str]] = {}
        self.signal: Optional[tuple[int, str]] = None  # the last signal the program got

    def _target(self):
        return self.debugger.GetSelectedTarget()

    def _check_target(self) -> None:
        p = self._target().GetProcess()
        if not p.IsValid() or p.GetState() not in (lldb.eStateStopped, lldb.eStateSuspended):
            raise UsageError("no stopped process to trace (run the program or attach first)")
        if "x86_64" not in self._target().GetTriple():
            raise UsageError("tracing supports x86_64 programs only")

    def _breakpoint(self, addr: int, fn: Callable) -> int:
        bp = self._target().BreakpointCreateByAddress(addr)
        token = _handler(fn)
        data = lldb.SBStructuredData()
        data.SetFromJSON(f'{{"t": {token}}}')
        bp.SetScriptCallbackFunction(f"{_ME}._hit", data)
        self._bps[bp.GetID()] = token
        return bp.GetID()

    def _install(self) -> None:
        points, self.libc_ranges = entry_points(LldbTarget(self.debugger))
        self.debugger.HandleCommand(f"script import {_ME}")
        for addr, op in points.items():
            self._breakpoint(addr, functools.partial(self.on_entry, op=op))
        self.watch_slots = 4 if self.opts.watch else 0  # x86_64: four debug registers

    def _remove(self) -> None:
        t = self._target()
        for bid, token in self._bps.items():
            t.BreakpointDelete(bid)
            _H.pop(token, None)
        for wid, token in self._watches.values():
            t.DeleteWatchpoint(wid)
            _H.pop(token, None)
        self._bps, self._returns, self._watches = {}, {}, {}
    def poll(self) -> None:
        """The program ended since the last look: the trace ends with it."""
        if not self.running:
            return
        p = self._target().GetProcess()
        state = p.GetState() if p.IsValid() else lldb.eStateExited
        if state in (lldb.eStateExited, lldb.eStateDetached) or not p.IsValid():
            desc = p.GetExitDescription() if p.IsValid() else None
            code = p.GetExitStatus() if p.IsValid() else -1
            if desc and "signal" in desc:
                self.ended(f"killed by {desc.split()[-1]}")
            elif self.signal is not None and code == self.signal[0]:
                self.ended(f"killed by {self.signal[1]}")  # lldb-16 reports the number
            else:
                self.ended(f"exited {code}")

    def status(self) -> dict:
        self.poll()
        return super().status()

    def flush(self) -> None:
        self.poll()
        super().flush()

    # stops -------------------------------------------------------------------------
    def _frames(self, thread, first: int = 1) -> list[Frame]:
        out: list[Frame] = []
        names = self._names
        for i in range(first, first + self.opts.backtrace):
            f = thread.GetFrameAtIndex(i)
            if not f.IsValid():
                break
            pc = f.GetPC()
            name = names.get(pc, "")
            if name == "":
                name = names[pc] = f.GetFunctionName()
            out.append(Frame(pc, name))
        return out

    def on_entry(self, frame, op: str) -> bool:
        thread = frame.GetThread()
        sp = frame.GetSP()
        if _ARGC.get(op, 2) == 1:
            values: tuple[int, ...] = (frame.FindRegister("rdi").GetValueAsUnsigned(),)
        else:
            values = tuple(frame.FindRegister(r).GetValueAsUnsigned()
                           for r in _REGS[:_ARGC.get(op, 2)])
        frames = self._frames(thread)  # unwinding reads the stack page [sp] is on
        ret = thread.GetProcess().ReadPointerFromMemory(sp, lldb.SBError())
        stop = self.entry(thread.GetThreadID(), op, values, frames, sp + 8, ret)
        if op in RETURNS and ret not in self._returns:
            self._returns[ret] = self._breakpoint(ret, self.on_return)
        return stop

    def _say(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def on_return(self, frame) -> bool:
        call = self.match_return(frame.GetThread().GetThreadID(), frame.GetSP())
        if call is None:
            return False
        result = frame.FindRegister("rax").GetValueAsUnsigned()
        memptr = None
        if call.op == "posix_memalign":
            result &= 0xFFFFFFFF
            if result == 0:
                memptr = frame.GetThread().GetProcess().ReadPointerFromMemory(
                    call.args["memptr"], lldb.SBError())
        self.returned(call, result, memptr)
        return False

    def on_watch(self, frame, addr: int) -> bool:
        thread = frame.GetThread()
        frames = self._frames(thread, 0)
        hit = self.watch_hit(thread.GetThreadID(), addr, frames)
        return hit and self.opts.break_on_error

    # watchpoints -------------------------------------------------------------------
    def _watch(self, addr: int) -> bool:
        err = lldb.SBError()
        wp = self._target().WatchAddress(addr, 8, False, True, err)
        if err.Fail() or not wp.IsValid():
            return False
        token = _handler(functools.partial(self.on_watch, addr=addr))
        # lldb 16's `watchpoint command add -F` drops the function's answer (always
        # stops); a -o body returns it
        res = lldb.SBCommandReturnObject()
        self.debugger.GetCommandInterpreter().HandleCommand(
            f'watchpoint command add -s python -o "{_BODY.format(token)}" {wp.GetID()}',
            res)
        if not res.Succeeded():
            self._target().DeleteWatchpoint(wp.GetID())
            _H.pop(token, None)
            return False
        self._watches[addr] = (wp.GetID(), token)
        return True

    def _unwatch_addr(self, addr: int) -> None:
        found = self._watches.pop(addr, None)
        if found is not None:
            self._target().DeleteWatchpoint(found[0])
            _H.pop(found[1], None)


class CliTrace:
    """``multiheap trace --backend lldb``: the program (or process) under our own lldb."""

    def __init__(self, opts: TraceOptions, run: Optional[str] = None,
                 pid: Optional[int] = None) -> None:
        from multiheap.adapters.lldb_open import _debugserver

        _debugserver()
        self.opts, self.run, self.pid = opts, run, pid
        self.dbg = lldb.SBDebugger.Create(False)
        self.dbg.SetAsync(False)
        self.tracer = LldbTracer(self.dbg)
        self.process = None
        self._stdio = None

    def start(self) -> None:
        from multiheap.progio import ProgramStdio

        err = lldb.SBError()
        if self.pid is not None:
            t = self.dbg.CreateTarget("")
            self.process = t.AttachToProcessWithID(lldb.SBListener(), self.pid, err)
            if err.Fail():
                raise UsageError(f"lldb cannot attach to {self.pid}: {err.GetCString()}")
        else:
            argv = shlex.split(self.run or "")
            t = self.dbg.CreateTarget(argv[0], None, None, True, err)
            if not t.IsValid():
                raise UsageError(f"lldb cannot load {argv[0]}: {err.GetCString()}")
            first = t.BreakpointCreateByName("__libc_start_main")
            info = lldb.SBLaunchInfo(argv[1:])
            self._stdio = stdio = ProgramStdio()
            for fd, path in stdio.paths.items():
                info.AddOpenFileAction(fd, path, fd == 0, fd != 0)
            info.SetEnvironmentEntries(stdio.environment(), False)
            self.process = t.Launch(info, err)
            if err.Fail() or not self.process.IsValid():
                raise UsageError(f"lldb cannot run {argv[0]}: {err.GetCString()}")
            if self.process.GetState() != lldb.eStateStopped:
                raise UsageError(f"{argv[0]} ended before libc started")
            t.BreakpointDelete(first.GetID())
        self.tracer.start(self.opts)

    def wait(self, on_error: Optional[Callable[[dict], None]] = None) -> str:
        p = self.process
        self.dbg.SetAsync(True)
        while True:
            p.Continue()
            wait_until_stopped(self.dbg, p)  # a second at a time, so Ctrl-C is heard
            if self._stdio is not None:
                self._stdio.flush()
            if p.GetState() in (lldb.eStateExited, lldb.eStateDetached):
                self.tracer.poll()
                return "exited"
            t = self.tracer.tracker
            if self.opts.break_on_error and t is not None and t.errors and \
                    any(th.GetStopReason() == lldb.eStopReasonBreakpoint for th in p):
                if on_error is not None:
                    on_error(self.tracer.status())
                if self.tracer.running:  # the shell may have stopped it
                    self.tracer.stop("stopped at an error")
                return "error"
            for th in p:
                if th.GetStopReason() == lldb.eStopReasonSignal:
                    signo = th.GetStopReasonDataAtIndex(0)
                    self.tracer.signal = (signo, p.GetUnixSignals().GetSignalAsCString(signo))
            self.tracer.flush()  # a signal: the program may be about to die

    def shell(self) -> None:
        """--break-on-error on a terminal: multiheap's shell on the program stopped at the
        error, with the running trace (pttrace show, pthistory)."""
        from multiheap.adapters.lldb_expr import evaluate
        from multiheap.session import Session
        from multiheap.shell import run_shell

        target, t = LldbTarget(self.dbg), self.dbg.GetSelectedTarget()

        def address(text: str) -> int:
            th = t.GetProcess().GetSelectedThread()
            return evaluate(t, th.GetSelectedFrame() if th.IsValid() else None, text)

        session = Session(target, address)
        session.tracer = self.tracer  # type: ignore[attr-defined]
        try:
            run_shell(session)
        finally:
            target.close()  # not ours to end: only its files

    def interrupt(self) -> None:
        if self.process is not None and self.process.GetState() == lldb.eStateRunning:
            self.process.Stop()

    def finish(self, detach: bool) -> None:
        try:
            self.dbg.SetAsync(False)
            if self.tracer.running:
                self.tracer.poll()
            if self.tracer.running:
                self.tracer.stop("detached" if detach else "killed")
            p = self.process
            if p is not None and p.IsValid() and p.GetState() not in (
                    lldb.eStateExited, lldb.eStateDetached):
                p.Detach() if detach else p.Kill()
        except MultiheapError:
            pass
        finally:
            if self._stdio is not None:
                self._stdio.close()
            lldb.SBDebugger.Destroy(self.dbg)
