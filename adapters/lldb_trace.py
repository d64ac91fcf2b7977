"""The tracer's lldb part: breakpoints with Python callbacks on the allocator and on
callers' return addresses, hardware watchpoints, backtraces; and ``CliTrace``, which
runs a program (or attaches) under an SBDebugger of its own for ``multiheap trace
--backend lldb``.  All decisions are the engine's (multiheap.trace).
"""

from __future__ import annotations

import shlex
import sys
from typing import Callable, Optional

from multiheap.adapters.lldb import LldbTarget, lldb
from multiheap.errors import MultiheapError, UsageError
from multiheap.trace import Frame, TraceControl, TraceOptions
from multiheap.trace.records import RETURNS
from multiheap.trace.symbols import entry_points

_REGS = ("rdi", "rsi", "rdx")
_BY_BP: dict[tuple[int, int], tuple[LldbTracer, str]] = {}  # (debugger, bp id) -> op
_ME = "multiheap.adapters.lldb_trace"
_ARGC = {"free": 1, "malloc": 1, "valloc": 1, "pvalloc": 1, "posix_memalign": 3,
         "reallocarray": 3}


def _on_entry(frame, bp_loc, internal_dict) -> bool:
    key = (frame.GetThread().GetProcess().GetTarget().GetDebugger().GetID(),
           bp_loc.GetBreakpoint().GetID())
    found = _BY_BP.get(key)
    return found[0].on_entry(frame, found[1]) if found else False


def _on_return(frame, bp_loc, internal_dict) -> bool:
    key = (frame.GetThread().GetProcess().GetTarget().GetDebugger().GetID(),
           bp_loc.GetBreakpoint().GetID())
    found = _BY_BP.get(key)
    if found:
        found[0].on_return(frame)
    return False


class LldbTracer(TraceControl):
    """``session.tracer`` in the lldb plugin, and the tracer of ``CliTrace``."""

    host = "lldb"

    def __init__(self, debugger) -> None:
        super().__init__()
        self.debugger = debugger
        self._bps: list[int] = []
        self._returns: dict[int, int] = {}
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

    def _install(self) -> None:
        points, self.libc_ranges = entry_points(LldbTarget(self.debugger))
        self.debugger.HandleCommand(f"script import {_ME}")
        t = self._target()
        for addr, op in points.items():
            bp = t.BreakpointCreateByAddress(addr)
            bp.SetScriptCallbackFunction(f"{_ME}._on_entry")
            _BY_BP[(self.debugger.GetID(), bp.GetID())] = (self, op)
            self._bps.append(bp.GetID())

    def _remove(self) -> None:
        t = self._target()
        for bid in [*self._bps, *self._returns.values()]:
            t.BreakpointDelete(bid)
            _BY_BP.pop((self.debugger.GetID(), bid), None)
        self._bps, self._returns = [], {}

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
    def _frames(self, thread) -> list[Frame]:
        out: list[Frame] = []
        names = self._names
        for i in range(1, self.opts.backtrace + 1):
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
        tid = thread.GetThreadID()
        sp = frame.FindRegister("rsp").GetValueAsUnsigned()
        values = tuple(frame.FindRegister(r).GetValueAsUnsigned()
                       for r in _REGS[:_ARGC.get(op, 2)])
        err = lldb.SBError()
        ret = thread.GetProcess().ReadPointerFromMemory(sp, err)
        stop = self.entry(tid, op, values, self._frames(thread), sp + 8, ret)
        if op in RETURNS and ret not in self._returns:
            bp = self._target().BreakpointCreateByAddress(ret)
            bp.SetScriptCallbackFunction(f"{_ME}._on_return")
            _BY_BP[(self.debugger.GetID(), bp.GetID())] = (self, "")
            self._returns[ret] = bp.GetID()
        return stop

    def _say(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def on_return(self, frame) -> None:
        thread = frame.GetThread()
        call = self.match_return(thread.GetThreadID(),
                                 frame.FindRegister("rsp").GetValueAsUnsigned())
        if call is None:
            return
        result = frame.FindRegister("rax").GetValueAsUnsigned()
        memptr = None
        if call.op == "posix_memalign":
            result &= 0xFFFFFFFF
            if result == 0:
                err = lldb.SBError()
                memptr = thread.GetProcess().ReadPointerFromMemory(call.args["memptr"], err)
        self.returned(call, result, memptr)


class CliTrace:
    """``multiheap trace --backend lldb``: the program (or process) under our own lldb."""

    def __init__(self, opts: TraceOptions, run: Optional[str] = None,
                 pid: Optional[int] = None) -> None:
        from multiheap.adapters import lldb as adapter

        adapter._debugserver()
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
        listener, event = self.dbg.GetListener(), lldb.SBEvent()
        while True:
            p.Continue()
            while True:  # a second at a time, so Ctrl-C is heard
                if not listener.WaitForEvent(1, event):
                    if p.GetState() in (lldb.eStateExited, lldb.eStateDetached):
                        break
                    continue
                if not lldb.SBProcess.EventIsProcessEvent(event):
                    continue
                state = lldb.SBProcess.GetStateFromEvent(event)
                if state in (lldb.eStateStopped, lldb.eStateExited, lldb.eStateCrashed,
                             lldb.eStateDetached) and \
                        not lldb.SBProcess.GetRestartedFromEvent(event):
                    break
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
                self.tracer.stop("stopped at an error")
                return "error"
            for th in p:
                if th.GetStopReason() == lldb.eStopReasonSignal:
                    signo = th.GetStopReasonDataAtIndex(0)
                    self.tracer.signal = (signo, p.GetUnixSignals().GetSignalAsCString(signo))
            self.tracer.flush()  # a signal: the program may be about to die

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
