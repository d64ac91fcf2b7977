"""The Target protocol over lldb's SB API (inside lldb, or an SBDebugger of our own).

lldb 16 on Linux shows neither ``fs_base`` nor TLS variables: discovery finds thread
pointers and TLS slots through glibc's own lists (multiheap/discovery/pthreads.py and
glibclists.py) with the type layouts this adapter gives.  Only reads: nothing here writes
to the target.
"""

from __future__ import annotations

import os
from typing import Optional

from multiheap.adapters.lldb_expr import evaluate as evaluate_in
from multiheap.adapters.lldb_import import lldb
from multiheap.errors import NoTargetError, TargetMemoryError
from multiheap.target import Module, Region, Thread, TypeLayout, covered_until

_TLS_SECTIONS = (".tbss", ".tdata", "PT_TLS")
# reads from this size up go through /proc/PID/mem when possible: faster, and lldb's
# own memory cache keeps every read of a live process until it runs again (a heap
# check reading a 1M-chunk heap in 64 KB pieces grew lldb by 100 MB)
_FAST_MIN = 1 << 12


class LldbTarget:
    """The selected target and process of an SBDebugger."""

    name = "lldb"

    def __init__(self, debugger) -> None:
        self.debugger = debugger
        self._gen_key: Optional[tuple] = None
        self._gen = 0
        self._cache: dict[str, object] = {}
        self._mem_file = None
        self._mem_pid: Optional[int] = None
        self._owned: Optional[str] = None  # core, attach or launch: a target we opened
        self._stdio = None  # the launched program's ProgramStdio

    # the machine ------------------------------------------------------------------
    def _target(self):
        t = self.debugger.GetSelectedTarget()
        if not t or not t.IsValid():
            raise NoTargetError("no target (file PROG, then run, attach or load a core)")
        return t

    def _process(self):
        p = self._target().GetProcess()
        if not p or not p.IsValid() or p.GetState() in (lldb.eStateInvalid,
                                                        lldb.eStateUnloaded,
                                                        lldb.eStateDetached):
            raise NoTargetError("no process or core file (run the program, attach, or "
                                "load a core first)")
        if p.GetState() in (lldb.eStateRunning, lldb.eStateStepping, lldb.eStateLaunching,
                            lldb.eStateAttaching):
            raise NoTargetError("the process is running: stop it first")
        if p.GetState() == lldb.eStateExited:
            raise NoTargetError("the process has exited")
        return p

    @property
    def pointer_size(self) -> int:
        return self._target().GetAddressByteSize()

    @property
    def endianness(self) -> str:
        return "big" if self._target().GetByteOrder() == lldb.eByteOrderBig else "little"

    @property
    def arch(self) -> str:
        cpu = (self._target().GetTriple() or "").split("-")[0]
        return "i386" if cpu in ("i386", "i486", "i586", "i686") else cpu

    @property
    def state(self) -> str:
        t = self.debugger.GetSelectedTarget()
        p = t.GetProcess() if t and t.IsValid() else None
        if p is None or not p.IsValid():
            return "none"
        st = p.GetState()
        if st == lldb.eStateExited:
            return "exited"
        if st in (lldb.eStateInvalid, lldb.eStateUnloaded, lldb.eStateDetached):
            return "none"
        return "core" if p.GetPluginName() == "elf-core" else "live"

    @property
    def pid(self) -> Optional[int]:
        t = self.debugger.GetSelectedTarget()
        p = t.GetProcess() if t and t.IsValid() else None
        return (p.GetProcessID() or None) if p is not None and p.IsValid() else None

    def generation(self) -> int:
        """Bumps when the target, process, stop or module list changed."""
        t = self.debugger.GetSelectedTarget()
        key: tuple = (None,)
        if t and t.IsValid():
            p = t.GetProcess()
            key = (self.debugger.GetIndexOfTarget(t), t.GetNumModules(),
                   p.GetUniqueID() if p.IsValid() else None,
                   p.GetStopID(True) if p.IsValid() else None,
                   p.GetState() if p.IsValid() else None)
        if key != self._gen_key:
            self._gen_key = key
            self._gen += 1
            self._cache = {}
        return self._gen

    def _cached(self, key: str, make):
        self.generation()
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # memory --------------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        p = self._process()
        if size <= 0:
            return b""
        if addr < 0 or addr + size > 1 << (8 * self.pointer_size):
            raise TargetMemoryError(addr, size, "address out of range")
        if size >= _FAST_MIN:
            data = self._read_proc_mem(p, addr, size)
            if data is not None:
                return data
        err = lldb.SBError()
        data = p.ReadMemory(addr, size, err)
        if err.Fail() or data is None or len(data) != size:
            reason = (err.GetCString() or "").splitlines()[0] if err.Fail() else "short read"
            raise TargetMemoryError(addr, size, reason)
        return bytes(data)

    def _read_proc_mem(self, p, addr: int, size: int) -> Optional[bytes]:
        """Reads of a page or more of a local live process straight from /proc/PID/mem.

        Only for ranges that lie in non-executable mappings: lldb's breakpoints patch
        code, and its own reads hide them, so code always goes through lldb.
        ``MULTIHEAP_LLDB_NO_PROC_MEM=1`` turns this off (everything through lldb).
        """
        if os.environ.get("MULTIHEAP_LLDB_NO_PROC_MEM") or self.state != "live" or \
                self._target().GetPlatform().GetName() != "host":
            return None
        if covered_until(self.regions(), addr, addr + size,
                         lambda r: "r" in r.perms and "x" not in r.perms) < addr + size:
            return None
        pid = p.GetProcessID()
        try:
            if self._mem_pid != pid or self._mem_file is None:
                if self._mem_file is not None:
                    self._mem_file.close()
                self._mem_file = open(f"/proc/{pid}/mem", "rb", buffering=0)
                self._mem_pid = pid
            data = os.pread(self._mem_file.fileno(), size, addr)
        except OSError:
            return None
        return data if len(data) == size else None

    def regions(self) -> list[Region]:
        return self._cached("regions", self._regions)  # type: ignore[return-value]

    def _regions(self) -> list[Region]:
        p = self._process()
        core = self.state == "core"
        named = self._module_ranges() if core else []
        out = []
        infos = p.GetMemoryRegions()
        for i in range(infos.GetSize()):
            r = lldb.SBMemoryRegionInfo()
            if not infos.GetMemoryRegionAtIndex(i, r) or not r.IsMapped():
                continue
            start, end = r.GetRegionBase(), r.GetRegionEnd()
            perms = ("r" if r.IsReadable() else "-") + ("w" if r.IsWritable() else "-") + \
                ("x" if r.IsExecutable() else "-") + "p"
            name = r.GetName() or ""
            if not name and core:
                # a core names no mapping: take the module whose file covers it
                name = next((n for lo, hi, n in named if lo < end and start < hi), "")
            out.append(Region(start, end, perms, name))
        return sorted(out, key=lambda r: r.start)

    def _module_ranges(self) -> list[tuple[int, int, str]]:
        t = self._target()
        out = []
        for m in t.module_iter():
            path = m.GetFileSpec().fullpath or ""
            for sec in m.section_iter():
                if not sec.GetName().startswith("PT_LOAD"):
                    continue
                lo = sec.GetLoadAddress(t)
                if lo != lldb.LLDB_INVALID_ADDRESS and sec.GetByteSize():
                    out.append((lo, lo + sec.GetByteSize(), path))
        return out

    def modules(self) -> list[Module]:
        t = self._target()
        out = []
        for m in t.module_iter():
            path = m.GetFileSpec().fullpath
            if not path:
                continue
            base = m.GetObjectFileHeaderAddress().GetLoadAddress(t)
            uuid = (m.GetUUIDString() or "").replace("-", "").lower() or None
            out.append(Module(path, 0 if base == lldb.LLDB_INVALID_ADDRESS else base, uuid))
        return out

    # symbols and types ---------------------------------------------------------------
    def _module_matches(self, m, module: Optional[str]) -> bool:
        if module is None:
            return True
        return os.path.basename(m.GetFileSpec().fullpath or "") == os.path.basename(module)

    def symbol(self, name: str, module: Optional[str] = None) -> Optional[int]:
        t = self._target()
        bad = lldb.LLDB_INVALID_ADDRESS
        for v in t.FindGlobalVariables(name, 8):
            addr = v.GetLoadAddress()
            if addr not in (bad, None) and v.GetName() == name and \
                    self._module_matches(v.GetAddress().GetModule(), module):
                return addr
        for sc in t.FindSymbols(name):
            sym = sc.GetSymbol()
            if not sym.IsValid() or self._is_tls(sym) or \
                    not self._module_matches(sc.GetModule(), module):
                continue
            addr = sym.GetStartAddress().GetLoadAddress(t)
            if addr != bad:
                return addr
        return None

    def type_layout(self, name: str) -> Optional[TypeLayout]:
        t = self._target()
        types = t.FindTypes(name)
        for i in range(types.GetSize()):
            ty = types.GetTypeAtIndex(i).GetCanonicalType()
            if ty.GetTypeClass() not in (lldb.eTypeClassStruct, lldb.eTypeClassUnion) or \
                    not ty.GetNumberOfFields():
                continue
            fields = {f.GetName(): (f.GetOffsetInBytes(), f.GetType().GetByteSize())
                      for f in ty.get_fields_array() if f.GetName()}
            return TypeLayout(name, ty.GetByteSize(), fields)
        return None

    # threads -----------------------------------------------------------------------
    def threads(self) -> list[Thread]:
        p = self._process()
        return sorted((Thread(th.GetIndexID(), th.GetThreadID(), th.GetName() or "")
                       for th in p), key=lambda t: t.num)

    def _lldb_thread(self, thread: Thread):
        p = self._process()
        th = p.GetThreadByIndexID(thread.num)
        return th if th.IsValid() else None

    def thread_pointer(self, thread: Thread) -> Optional[int]:
        th = self._lldb_thread(thread)
        if th is None:
            return None
        reg = "fs_base" if self.arch == "x86_64" else "gs_base"
        v = th.GetFrameAtIndex(0).FindRegister(reg)
        if v.IsValid() and v.GetValue() is not None:
            return v.GetValueAsUnsigned()
        return None  # lldb 16 on Linux shows no fs_base: discovery's routes find it

    def _is_tls(self, sym) -> bool:
        sec = sym.GetStartAddress().GetSection()
        while sec.IsValid():
            if sec.GetName().startswith(_TLS_SECTIONS):
                return True
            sec = sec.GetParent()
        return False

    def tls_symbol(self, name: str, thread: Thread) -> Optional[int]:
        """lldb 16 on Linux resolves no TLS variable: discovery's routes find them."""
        return None

    def evaluate(self, text: str) -> int:
        """An address argument in the selected thread's selected frame (lldb_expr)."""
        t = self._target()
        p = t.GetProcess()
        th = p.GetSelectedThread() if p.IsValid() else None
        frame = th.GetSelectedFrame() if th is not None and th.IsValid() else None
        return evaluate_in(t, frame, text)

    # lifetime (targets this adapter opened itself) ---------------------------------
    def close(self) -> None:
        """Leave the target as found: detach from an attached process, kill a launched one."""
        if self._mem_file is not None:
            self._mem_file.close()
            self._mem_file = None
        owned, stdio = self._owned, self._stdio
        if stdio is not None:  # what the program wrote to a spool reaches the user
            stdio.close()
            self._stdio = None
        if owned is None:
            return
        t = self.debugger.GetSelectedTarget()
        if t and t.IsValid():
            p = t.GetProcess()
            if p.IsValid() and p.GetState() not in (lldb.eStateExited, lldb.eStateDetached):
                if owned == "attach":
                    p.Detach()
                elif owned == "launch":
                    p.Kill()
        lldb.SBDebugger.Destroy(self.debugger)
        self._owned = None


def wait_until_stopped(dbg, process) -> None:
    """Pull the process's events until it stops or ends, a second at a time."""
    listener, event = dbg.GetListener(), lldb.SBEvent()
    done = (lldb.eStateStopped, lldb.eStateExited, lldb.eStateCrashed,
            lldb.eStateDetached, lldb.eStateSuspended)
    while True:
        if not listener.WaitForEvent(1, event):
            if process.GetState() in (lldb.eStateExited, lldb.eStateDetached):
                return
            continue
        if not lldb.SBProcess.EventIsProcessEvent(event):
            continue
        state = lldb.SBProcess.GetStateFromEvent(event)
        # a stop lldb resumes by itself (the loader's breakpoint) is not ours
        if state in done and not lldb.SBProcess.GetRestartedFromEvent(event):
            return
