"""The tracer's gdb part: breakpoints on the allocator, on callers' return addresses,
hardware watchpoints, backtraces, and the end of the program (runs inside gdb).

Entry breakpoints read the arguments from the registers (x86_64 System V) and the
return address from the stack; the return address gets one permanent internal
breakpoint, made the first time a call site is seen, which matches a pending call by
thread and stack pointer (cheaper than a FinishBreakpoint per call, and immune to
frames gdb cannot identify).  All decisions are the engine's (multiheap.trace).
"""

from __future__ import annotations

from typing import Optional

import gdb  # type: ignore[import-not-found]

from multiheap.errors import UsageError
from multiheap.trace import Frame, TraceControl
from multiheap.trace.records import RETURNS
from multiheap.trace.symbols import entry_points

_REGS = ("rdi", "rsi", "rdx")


class _Entry(gdb.Breakpoint):
    def __init__(self, tracer: GdbTracer, addr: int, op: str) -> None:
        super().__init__(f"*{addr:#x}", internal=True)
        self.tracer, self.op = tracer, op
        self.silent = True

    def stop(self) -> bool:
        return self.tracer.on_entry(self.op)


class _Return(gdb.Breakpoint):
    def __init__(self, tracer: GdbTracer, addr: int) -> None:
        super().__init__(f"*{addr:#x}", internal=True)
        self.tracer = tracer
        self.silent = True

    def stop(self) -> bool:
        self.tracer.on_return()
        return False


class _Watch(gdb.Breakpoint):
    def __init__(self, tracer: GdbTracer, addr: int) -> None:
        super().__init__(f"*(long *){addr:#x}", gdb.BP_WATCHPOINT, gdb.WP_WRITE,
                         internal=True)
        self.tracer, self.addr = tracer, addr
        self.silent = True

    def stop(self) -> bool:
        return self.tracer.on_watch(self.addr)


class GdbTracer(TraceControl):
    """``session.tracer`` in the gdb plugin (and in the gdb the CLI drives over MI)."""

    host = "gdb"

    def __init__(self) -> None:
        super().__init__()
        self._bps: list[gdb.Breakpoint] = []
        self._returns: dict[int, _Return] = {}
        self._watches: dict[int, _Watch] = {}
        self._names: dict[int, Optional[str]] = {}
        self._connected = False
        self._signal: Optional[str] = None
        self.watch_slots = 0

    # set-up -----------------------------------------------------------------------
    def _check_target(self) -> None:
        inf = gdb.selected_inferior()
        if inf is None or inf.pid == 0:
            raise UsageError("no process to trace (run the program or attach first)")
        conn = getattr(inf, "connection", None)
        if conn is not None and conn.type == "core":
            raise UsageError("a core file cannot be traced: run the program")
        arch = inf.architecture().name()
        if "x86-64" not in arch:
            raise UsageError(f"tracing supports x86_64 programs only (this is {arch})")

    def _install(self) -> None:
        from multiheap.adapters.gdb import GdbTarget  # public: the Target protocol

        points, self.libc_ranges = entry_points(GdbTarget())
        self._bps = [_Entry(self, addr, op) for addr, op in points.items()]
        self.watch_slots = 4 if self.opts.watch else 0
        if not self._connected:
            gdb.events.exited.connect(self._on_exit)
            gdb.events.stop.connect(self._on_stop)
            self._connected = True

    def _remove(self) -> None:
        for bp in [*self._bps, *self._returns.values(), *self._watches.values()]:
            try:
                if bp.is_valid():
                    bp.delete()
            except (gdb.error, RuntimeError):
                pass
        self._bps, self._returns, self._watches = [], {}, {}
        if self._connected:
            gdb.events.exited.disconnect(self._on_exit)
            gdb.events.stop.disconnect(self._on_stop)
            self._connected = False

    # events -----------------------------------------------------------------------
    def _on_exit(self, event) -> None:
        code = getattr(event, "exit_code", None)
        end = f"exited {code}" if code is not None else (
            f"killed by {self._signal}" if self._signal else "killed")
        self.ended(end)

    def _on_stop(self, event) -> None:
        sig = getattr(event, "stop_signal", None)
        if sig and sig != "SIGTRAP":
            self._signal = sig
            self.flush()  # the program may be about to die

    # stops --------------------------------------------------------------------------
    def _frames(self, frame) -> list[Frame]:
        out: list[Frame] = []
        names = self._names
        f = frame
        for _ in range(self.opts.backtrace):
            try:
                f = f.older()
            except gdb.error:
                break
            if f is None:
                break
            pc = f.pc()
            name = names.get(pc, "")
            if name == "":
                try:
                    name = names[pc] = f.name()
                except gdb.error:
                    name = names[pc] = None
            out.append(Frame(pc, name))
        return out

    def on_entry(self, op: str) -> bool:
        frame = gdb.newest_frame()
        tid = gdb.selected_thread().ptid[1]
        sp = int(frame.read_register("rsp"))
        n = 1 if op in ("malloc", "free", "valloc", "pvalloc") else (
            3 if op in ("posix_memalign", "reallocarray") else 2)
        values = tuple(int(frame.read_register(r)) & 0xFFFFFFFFFFFFFFFF for r in _REGS[:n])
        ret = int.from_bytes(gdb.selected_inferior().read_memory(sp, 8).tobytes(), "little")
        stop = self.entry(tid, op, values, self._frames(frame), sp + 8, ret)
        if op in RETURNS:
            if ret not in self._returns:
                self._returns[ret] = _Return(self, ret)
        return stop

    def _say(self, text: str) -> None:
        gdb.write(text)

    def on_return(self) -> None:
        frame = gdb.newest_frame()
        tid = gdb.selected_thread().ptid[1]
        call = self.match_return(tid, int(frame.read_register("rsp")))
        if call is None:
            return
        result = int(frame.read_register("rax")) & 0xFFFFFFFFFFFFFFFF
        memptr = None
        if call.op == "posix_memalign":
            result &= 0xFFFFFFFF
            if result == 0:
                memptr = int.from_bytes(gdb.selected_inferior().read_memory(
                    call.args["memptr"], 8).tobytes(), "little")
        self.returned(call, result, memptr)

    def on_watch(self, addr: int) -> bool:
        frame = gdb.newest_frame()
        tid = gdb.selected_thread().ptid[1]
        frames = [Frame(frame.pc(), frame.name())] + self._frames(frame)[:max(
            0, self.opts.backtrace - 1)]
        hit = self.watch_hit(tid, addr, frames)
        return hit and self.opts.break_on_error

    # watchpoints -------------------------------------------------------------------
    def _watch(self, addr: int) -> bool:
        try:
            self._watches[addr] = _Watch(self, addr)
            return True
        except (gdb.error, RuntimeError):
            return False

    def _unwatch_addr(self, addr: int) -> None:
        wp = self._watches.pop(addr, None)
        if wp is not None and wp.is_valid():
            wp.delete()
