"""The Target protocol over lldb's SB API (inside lldb, or an SBDebugger of our own).

lldb 16 on Linux shows neither ``fs_base`` nor TLS variables, so each thread's thread
pointer is found the way libthread_db does it: glibc's lists of ``struct pthread``
(``_rtld_global._dl_stack_user``/``_dl_stack_used``), matched by ``tid``; a TLS
variable of a module is then ``tp - link_map.l_tls_offset + st_value`` (static TLS,
variant II: x86_64 and i386).  Only reads: nothing here writes to the target.
"""

from __future__ import annotations

import glob
import os
import shlex
import subprocess
import sys
from typing import NoReturn, Optional, Sequence


def import_lldb():
    """Import lldb's Python module, finding it outside lldb too (lldb-16 preferred)."""
    try:
        import lldb  # type: ignore[import-not-found]

        return lldb
    except ImportError:
        pass
    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    cands = [os.environ.get("MULTIHEAP_LLDB_PYTHONPATH", "")]
    cands += sorted(glob.glob(f"/usr/lib/llvm-*/lib/{ver}/site-packages"),
                    key=lambda p: -int(p.split("llvm-")[1].split("/")[0]))
    for tool in ("lldb-16", "lldb"):
        try:
            out = subprocess.run([tool, "-P"], capture_output=True, text=True, timeout=10)
            cands.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    for path in cands:
        if path and os.path.isfile(os.path.join(path, "lldb", "__init__.py")):
            sys.path.insert(0, path)
            try:
                import lldb  # type: ignore[import-not-found]

                return lldb
            except ImportError:
                sys.path.remove(path)
    raise ImportError("lldb's Python module not found: install lldb-16 and python3-lldb-16 "
                      "(bash scripts/install/lldb.sh)")


lldb = import_lldb()

from multiheap import expr  # noqa: E402
from multiheap.errors import NoTargetError, TargetMemoryError  # noqa: E402
from multiheap.expr import ExprError  # noqa: E402
from multiheap.memory import covered_until  # noqa: E402
from multiheap.progio import ProgramStdio  # noqa: E402
from multiheap.target import Module, Region, Thread, TypeLayout  # noqa: E402

_TLS_SECTIONS = (".tbss", ".tdata", "PT_TLS")
_LIST_STEPS = 100_000
_FAST_MIN = 1 << 20  # reads from this size up go through /proc/PID/mem when possible


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
        """Large reads of a local live process straight from /proc/PID/mem.

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

    def _field_offsets(self, struct: str, *names: str) -> Optional[tuple[int, ...]]:
        """Offsets of fields of ``struct`` (first definition that has them all)."""
        t = self._target()
        types = t.FindTypes(struct)
        for i in range(types.GetSize()):
            ty = types.GetTypeAtIndex(i).GetCanonicalType()
            offs = {f.GetName(): f.GetOffsetInBytes() for f in ty.get_fields_array()}
            if all(n in offs for n in names):
                return tuple(offs[n] for n in names)
        return None

    # threads -----------------------------------------------------------------------
    def threads(self) -> list[Thread]:
        p = self._process()
        return sorted((Thread(th.GetIndexID(), th.GetThreadID(), th.GetName() or "")
                       for th in p), key=lambda t: t.num)

    def _ptr(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, self.pointer_size), self.endianness)

    def _pthreads(self) -> dict[int, int]:
        """tid -> address of its ``struct pthread`` (= thread pointer on x86)."""
        return self._cached("pthreads", self._walk_pthreads)  # type: ignore[return-value]

    def _walk_pthreads(self) -> dict[int, int]:
        offs = self._field_offsets("pthread", "list", "tid")
        if offs is None:
            return {}
        list_off, tid_off = offs
        heads = []
        t = self._target()
        for v in t.FindGlobalVariables("_rtld_global", 1):  # glibc 2.34+
            for field in ("_dl_stack_user", "_dl_stack_used"):
                c = v.GetChildMemberWithName(field)
                if c.IsValid() and c.GetLoadAddress() != lldb.LLDB_INVALID_ADDRESS:
                    heads.append(c.GetLoadAddress())
        if not heads:
            heads = [a for a in (self.symbol("__stack_user"), self.symbol("stack_used"))
                     if a is not None]
        out: dict[int, int] = {}
        for head in heads:
            seen = set()
            try:
                node = self._ptr(head)
                while node and node != head and node not in seen and len(seen) < _LIST_STEPS:
                    seen.add(node)
                    pd = node - list_off
                    tid = int.from_bytes(self.read(pd + tid_off, 4), self.endianness,
                                         signed=True)
                    out.setdefault(tid, pd)
                    node = self._ptr(node)
            except TargetMemoryError:
                continue
        return out

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
        tp = self._pthreads().get(th.GetThreadID())
        if tp is None:
            return None
        try:  # tcbhead_t starts {tcb, dtv, self}; tcb and self point at itself
            if self._ptr(tp) != tp and self._ptr(tp + 2 * self.pointer_size) != tp:
                return None
        except TargetMemoryError:
            return None
        return tp

    def _is_tls(self, sym) -> bool:
        sec = sym.GetStartAddress().GetSection()
        while sec.IsValid():
            if sec.GetName().startswith(_TLS_SECTIONS):
                return True
            sec = sec.GetParent()
        return False

    def _tls_offset(self, name: str) -> Optional[tuple[int, str]]:
        """(offset in its module's TLS block, module path) of a TLS symbol."""
        for sc in self._target().FindSymbols(name):
            sym = sc.GetSymbol()
            if sym.IsValid() and self._is_tls(sym):
                return (sym.GetStartAddress().GetFileAddress(),
                        sc.GetModule().GetFileSpec().fullpath or "")
        return None

    def _l_tls_offset(self, path: str) -> Optional[int]:
        """The ``l_tls_offset`` of the link_map whose l_name is ``path``."""
        offs = self._field_offsets("link_map", "l_name", "l_next", "l_tls_offset")
        rmap = self._field_offsets("r_debug", "r_map")
        r_debug = self.symbol("_r_debug")
        if offs is None or r_debug is None:
            return None
        name_off, next_off, tls_off = offs
        lm = self._ptr(r_debug + (rmap[0] if rmap else self.pointer_size))
        want = os.path.basename(os.path.realpath(path))
        seen = set()
        while lm and lm not in seen and len(seen) < 4096:
            seen.add(lm)
            lname = self._cstring(self._ptr(lm + name_off))
            if lname and os.path.basename(os.path.realpath(lname)) == want:
                return int.from_bytes(self.read(lm + tls_off, self.pointer_size),
                                      self.endianness, signed=True)
            lm = self._ptr(lm + next_off)
        return None

    def _cstring(self, addr: int, limit: int = 4096) -> str:
        if not addr:
            return ""
        err = lldb.SBError()
        s = self._process().ReadCStringFromMemory(addr, limit, err)
        return s or "" if err.Success() else ""

    def tls_symbol(self, name: str, thread: Thread) -> Optional[int]:
        try:
            found = self._cached("tls:" + name, lambda: self._tls_offset(name))
            if found is None:
                return None
            off, path = found  # type: ignore[misc]
            block = self._cached("ltls:" + path, lambda: self._l_tls_offset(path))
            tp = self.thread_pointer(thread)
            if block is None or tp is None or block <= 0:
                return None
            return tp - block + off  # type: ignore[operator]
        except TargetMemoryError:
            return None

    # lifetime (targets this adapter opened itself) ---------------------------------
    def close(self) -> None:
        """Leave the target as found: detach from an attached process, kill a launched one."""
        if self._mem_file is not None:
            self._mem_file.close()
            self._mem_file = None
        owned = getattr(self, "_owned", None)
        stdio = getattr(self, "_stdio", None)
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



# address arguments -------------------------------------------------------------------
_BASIC_TYPES = {
    "void": "eBasicTypeVoid", "char": "eBasicTypeChar", "signed char": "eBasicTypeSignedChar",
    "unsigned char": "eBasicTypeUnsignedChar", "short": "eBasicTypeShort",
    "unsigned short": "eBasicTypeUnsignedShort", "int": "eBasicTypeInt",
    "unsigned": "eBasicTypeUnsignedInt", "long": "eBasicTypeLong",
    "unsigned long": "eBasicTypeUnsignedLong", "long long": "eBasicTypeLongLong",
    "unsigned long long": "eBasicTypeUnsignedLongLong", "_Bool": "eBasicTypeBool",
    "bool": "eBasicTypeBool", "float": "eBasicTypeFloat", "double": "eBasicTypeDouble",
}


def _basic_name(name: str) -> str:
    """C's spellings of one builtin type as one: ``long int`` and ``signed long`` are
    ``long``, ``unsigned int`` is ``unsigned``."""
    words = name.split()
    if "int" in words and len(words) > 1:
        words.remove("int")
    if words[:1] == ["signed"] and words[1:] != ["char"]:
        words = words[1:] or ["int"]
    return " ".join(words)


class _Symbol:
    """A symbol without debug info: an address and no type."""

    def __init__(self, name: str, addr: int, code: bool) -> None:
        self.name, self.addr, self.code = name, addr, code


class LldbResolver:
    """The leaves of an address argument (multiheap.expr) from lldb's look-ups only:
    variables, registers, types, and memory read through values lldb makes locally
    (``CreateValueFromAddress``/``CreateValueFromData``).  Unlike lldb's expression
    evaluator, nothing is allocated in, written to or run in the target."""

    def __init__(self, target, frame=None) -> None:
        self.t = target
        self.frame = frame if frame is not None and frame.IsValid() else None
        self.pointer_size = target.GetAddressByteSize()

    # names ---------------------------------------------------------------------------
    def variable(self, name: str):
        if self.frame is not None:
            v = self.frame.FindVariable(name, lldb.eNoDynamicValues)
            if v.IsValid():
                return v
        v = self.t.FindFirstGlobalVariable(name)
        if v.IsValid():
            return v
        for sc in self.t.FindSymbols(name):
            sym = sc.GetSymbol()
            addr = sym.GetStartAddress().GetLoadAddress(self.t) if sym.IsValid() else None
            if addr not in (None, lldb.LLDB_INVALID_ADDRESS):
                return _Symbol(name, addr, sym.GetType() in (lldb.eSymbolTypeCode,
                                                             lldb.eSymbolTypeResolver))
        raise ExprError(f"no variable or symbol named {_short(name)}")

    def register(self, name: str) -> int:
        if self.frame is None:
            raise ExprError(f"no frame to read ${_short(name)} from")
        v = self.frame.FindRegister(name)
        if not v.IsValid():
            raise ExprError(f"no register ${_short(name)}")
        err = lldb.SBError()
        n = v.GetValueAsUnsigned(err, 0)
        if err.Fail():
            raise ExprError(f"${name} is not a number")
        return n

    def _type(self, name: str):
        basic = _BASIC_TYPES.get(_basic_name(name))
        if basic is not None:
            return self.t.GetBasicType(getattr(lldb, basic))
        for cand in (name, name.split(" ", 1)[-1]):
            ty = self.t.FindFirstType(cand)
            if ty.IsValid():
                return ty
        return None

    def is_type(self, name: str) -> bool:
        return self._type(name) is not None

    # values --------------------------------------------------------------------------
    def _make(self, ty, value: int):
        """A value of type ``ty`` held by lldb only (nothing in the target)."""
        size = ty.GetByteSize()
        value &= (1 << (8 * size)) - 1
        order = self.t.GetByteOrder()
        # SBData.SetData keeps a pointer to a Python buffer that is then freed, and
        # lldb 16 crashes (double free) on an unsigned array item with the top bit set:
        # the signed array constructors, with the same bits.
        if size == 8:
            value -= (value >> 63) << 64
            data = lldb.SBData.CreateDataFromSInt64Array(order, self.pointer_size, [value])
        else:
            if order == lldb.eByteOrderBig:
                value <<= 8 * (4 - size)
            value -= (value >> 31) << 32
            data = lldb.SBData.CreateDataFromSInt32Array(order, self.pointer_size, [value])
        return self.t.CreateValueFromData("value", data, ty)

    def cast(self, type_name: str, stars: int, value: int):
        ty = self._type(type_name)
        if ty is None:
            raise ExprError(f"no type named {_short(type_name)}")
        for _ in range(stars):
            ty = ty.GetPointerType()
        flags = ty.GetCanonicalType().GetTypeFlags()
        if not flags & (lldb.eTypeIsPointer | lldb.eTypeIsEnumeration) and \
                (not flags & lldb.eTypeIsScalar or flags & lldb.eTypeIsFloat or
                 ty.GetByteSize() == 0):
            raise ExprError(f"cannot cast to {type_name} (not an integer or a pointer type)")
        return self._make(ty, value)

    def _unreadable(self, v) -> ExprError:
        addr = v.GetLoadAddress()
        where = f" at {addr:#x}" if addr != lldb.LLDB_INVALID_ADDRESS else ""
        return ExprError(f"cannot read {v.GetType().GetByteSize()} bytes{where}")

    def number(self, v) -> tuple[int, Optional[int]]:
        if isinstance(v, _Symbol):
            if v.code:
                return v.addr, None
            raise ExprError(f"{_short(v.name)} has no debug info: take its address "
                            f"(&{v.name}) or cast it, as in *(long *)&{v.name}")
        ty = v.GetType().GetCanonicalType()
        flags = ty.GetTypeFlags()
        if ty.IsArrayType() or ty.GetTypeClass() == lldb.eTypeClassFunction:
            addr = v.GetLoadAddress()
            if addr == lldb.LLDB_INVALID_ADDRESS:
                raise ExprError(f"{_short(v.GetName() or 'value')} has no address")
            step = ty.GetArrayElementType().GetByteSize() if ty.IsArrayType() else None
            return addr, step or (1 if ty.IsArrayType() else None)
        if not flags & (lldb.eTypeIsPointer | lldb.eTypeIsScalar | lldb.eTypeIsEnumeration) \
                or flags & lldb.eTypeIsFloat:
            raise ExprError(f"{_short(v.GetName() or 'value')} is a {v.GetTypeName()}, "
                            "not a number or an address")
        err = lldb.SBError()
        if flags & lldb.eTypeIsSigned:
            n = v.GetValueAsSigned(err, 0)
        else:
            n = v.GetValueAsUnsigned(err, 0)
        if err.Fail() or v.GetError().Fail():
            raise self._unreadable(v)
        if flags & lldb.eTypeIsPointer:
            return n, ty.GetPointeeType().GetByteSize() or 1
        return n, None

    def pointer(self, v, address: int):
        if isinstance(v, _Symbol):
            return self._make(self.t.GetBasicType(lldb.eBasicTypeVoid).GetPointerType(),
                              address)
        ty = v.GetType()
        if ty.GetCanonicalType().IsArrayType():
            ty = ty.GetCanonicalType().GetArrayElementType().GetPointerType()
        return self._make(ty, address)

    def deref(self, p):
        pointee = p.GetType().GetPointeeType()
        canon = pointee.GetCanonicalType()
        if canon.GetBasicType() == lldb.eBasicTypeVoid or \
                canon.GetTypeClass() == lldb.eTypeClassFunction or not pointee.IsValid():
            raise ExprError(f"cannot dereference a {p.GetTypeName()}: cast it first")
        addr = p.GetValueAsUnsigned()
        err = lldb.SBError()
        proc = self.t.GetProcess()
        if proc.IsValid():
            proc.ReadMemory(addr, 1, err)
        else:
            self.t.ReadMemory(lldb.SBAddress(addr, self.t), 1, err)
        if err.Fail():
            raise ExprError(f"cannot read memory at {addr:#x}")
        return self.t.CreateValueFromAddress("*", lldb.SBAddress(addr, self.t), pointee)

    def address_of(self, v):
        if isinstance(v, _Symbol):
            return self.pointer(v, v.addr)
        addr = v.GetLoadAddress()
        if addr == lldb.LLDB_INVALID_ADDRESS:
            raise ExprError(f"{_short(v.GetName() or 'value')} is not in memory: "
                            "it has no address")
        return self._make(v.GetType().GetPointerType(), addr)

    def member(self, v, name: str):
        if isinstance(v, _Symbol):
            raise ExprError(f"{_short(v.name)} has no debug info: no members")
        ty = v.GetType().GetCanonicalType()
        if ty.GetTypeClass() not in (lldb.eTypeClassStruct, lldb.eTypeClassUnion,
                                     lldb.eTypeClassClass):
            raise ExprError(f"'.{_short(name)}' on a {v.GetTypeName()}, which has no members")
        m = v.GetChildMemberWithName(name, lldb.eNoDynamicValues)
        if not m.IsValid():
            raise ExprError(f"{v.GetTypeName()} has no member {_short(name)}")
        return m


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def evaluate(target, frame, text: str) -> int:
    """An address argument read by multiheap.expr with lldb's look-ups (never lldb's
    expression evaluator: it maps memory into the target and writes there)."""
    return expr.evaluate(text, LldbResolver(target, frame))


def _debugserver() -> None:
    if "LLDB_DEBUGSERVER_PATH" not in os.environ:
        for cand in sorted(glob.glob("/usr/lib/llvm-*/bin/lldb-server"), reverse=True):
            os.environ["LLDB_DEBUGSERVER_PATH"] = cand
            break


def add_debug_dirs(debugger, dirs: Sequence[str]) -> None:
    """Append ``dirs`` to ``target.debug-file-search-paths`` (before targets are made).

    lldb-16 then finds ``DIR/.build-id/xx/rest.debug`` for a module with that build-id
    (checked with another glibc's libc under /opt: main_arena and mp_ resolve).
    """
    ci = debugger.GetCommandInterpreter()
    for d in dirs:
        ret = lldb.SBCommandReturnObject()
        quoted = '"' + d.replace("\\", "\\\\").replace('"', '\\"') + '"'
        ci.HandleCommand(f"settings append target.debug-file-search-paths {quoted}", ret)


def _wait_until_stopped(dbg, process) -> None:
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


def open_target(core: Optional[str] = None, exe: Optional[str] = None,
                pid: Optional[int] = None, run: Optional[str] = None,
                brk: Optional[str] = None, debug_dirs: Sequence[str] = (),
                **_options) -> LldbTarget:
    """An SBDebugger of our own on a core file, an attached PID or a launched program."""
    from multiheap.errors import MultiheapError

    _debugserver()
    dbg = lldb.SBDebugger.Create(False)
    dbg.SetAsync(False)
    add_debug_dirs(dbg, debug_dirs)
    tgt = LldbTarget(dbg)

    def fail(msg: str) -> NoReturn:
        lldb.SBDebugger.Destroy(dbg)
        raise MultiheapError(msg)

    err = lldb.SBError()
    argv: list[str] = []
    if run is not None:
        try:
            argv = shlex.split(run)
        except ValueError as e:
            fail(f"--run: {e}")
        if not argv:
            fail("--run needs a program")
        exe = exe or argv[0]
    t = dbg.CreateTarget(exe or "", None, None, True, err)
    if not t.IsValid():
        fail(f"lldb cannot load {exe!r}: {err.GetCString() or 'invalid target'}")
    if core:
        if not os.path.isfile(core):
            fail(f"no such core file: {core}")
        p = t.LoadCore(core, err)
        if not p.IsValid() or err.Fail():
            fail(f"lldb cannot load core {core}: {err.GetCString() or 'not a core file'}")
        tgt._owned = "core"  # type: ignore[attr-defined]
    elif pid is not None:
        p = t.AttachToProcessWithID(lldb.SBListener(), int(pid), err)
        if err.Fail() or not p.IsValid():
            fail(f"lldb cannot attach to {pid}: {err.GetCString()}")
        tgt._owned = "attach"  # type: ignore[attr-defined]
    elif run:
        if brk:
            t.BreakpointCreateByName(brk)
        info = lldb.SBLaunchInfo(argv[1:])
        stdio = ProgramStdio()  # the program's streams are the user's, not a pty of lldb's
        for fd, path in stdio.paths.items():
            info.AddOpenFileAction(fd, path, fd == 0, fd != 0)
        info.SetEnvironmentEntries(stdio.environment(), False)  # lldb passes none itself
        tgt._stdio = stdio  # type: ignore[attr-defined]
        dbg.SetAsync(True)  # wait in short steps, so Ctrl-C and SIGTERM are heard
        p = t.Launch(info, err)
        if err.Fail() or not p.IsValid():
            dbg.SetAsync(False)
            stdio.close()
            fail(f"lldb cannot run {run!r}: {err.GetCString()}")
        tgt._owned = "launch"  # type: ignore[attr-defined]
        try:
            _wait_until_stopped(dbg, p)
        except BaseException:
            tgt.close()
            raise
        dbg.SetAsync(False)
        stdio.flush()
        if p.GetState() == lldb.eStateExited:
            status = p.GetExitStatus()
            tgt.close()
            raise MultiheapError(f"{argv[0]} exited (status {status}) before stopping")
    else:
        fail("lldb needs a core file, a PID or a program to run")
    return tgt
