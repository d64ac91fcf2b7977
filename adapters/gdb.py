"""The Target protocol over gdb's Python API (runs inside gdb)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import gdb  # type: ignore[import-not-found]

from multiheap.adapters.gdbtext import (
    core_sections,
    guard_refusal,
    merge_core_regions,
    proc_mappings,
    write_operator,
    write_refusal,
)
from multiheap.errors import NoTargetError, TargetMemoryError, UsageError
from multiheap.target import Module, Region, Thread, TypeLayout

_generation = 0


def bump_generation(*_args) -> None:
    """Event handler: the target ran, stopped, changed or loaded code."""
    global _generation
    _generation += 1


def connect_events() -> None:
    ev = gdb.events
    for name in ("stop", "cont", "exited", "new_objfile", "clear_objfiles",
                 "memory_changed", "inferior_call", "new_inferior", "new_thread"):
        reg = getattr(ev, name, None)
        if reg is not None:
            reg.connect(bump_generation)


# gdb's own guards, off while an address argument is evaluated.  gdb 13 will not change
# may-write-registers while a process is live ("Cannot change this setting while the
# inferior is running"): there, assignments are refused before gdb sees them
# (gdbtext.write_operator), which covers registers and register-held locals too.
_GUARDS = ("may-call-functions", "may-write-memory", "may-write-registers")


@contextmanager
def _read_only() -> Iterator[None]:
    """gdb refuses calls and writes inside; each setting is restored afterwards, also on
    an error or Ctrl-C (a setting the user already turned off is left alone, so observer
    mode stays as it was)."""
    turned_off: list[str] = []
    try:
        for name in _GUARDS:
            if gdb.parameter(name):
                turned_off.append(name)
                try:
                    gdb.execute(f"set {name} off", to_string=True)
                except gdb.error:  # may-write-registers on a live process (gdb 13)
                    turned_off.pop()
        yield
    finally:
        for name in reversed(turned_off):
            gdb.execute(f"set {name} on", to_string=True)


def evaluate(expr: str) -> int:
    """An address argument, as gdb evaluates it, never writing to the target nor calling
    its code.  The value keeps its sign: the engine reads a negative one as two's
    complement at the pointer size, as in every host (``ptchunk -1`` is all ones), where
    masking to the C type's size would make it 0xffffffff."""
    op = write_operator(expr)
    if op is not None:
        raise UsageError(write_refusal(expr))
    with _read_only():
        try:
            v = gdb.parse_and_eval(expr)
            if v.type.strip_typedefs().code in (gdb.TYPE_CODE_ARRAY, gdb.TYPE_CODE_FUNC):
                v = v.address
            return int(v)
        except gdb.error as e:
            refusal = guard_refusal(expr, str(e))
            if refusal:
                raise UsageError(refusal) from None
            raise


class GdbTarget:
    """The selected inferior of the gdb this code runs in."""

    name = "gdb"

    def __init__(self) -> None:
        self._maps: Optional[tuple[int, list[Region]]] = None

    # the machine ------------------------------------------------------------------
    def _inferior(self):
        inf = gdb.selected_inferior()
        if inf is None or inf.pid == 0:
            raise NoTargetError("no process or core file (run the program, attach, or "
                                "load a core first)")
        return inf

    @property
    def pointer_size(self) -> int:
        return gdb.lookup_type("void").pointer().sizeof

    @property
    def endianness(self) -> str:
        return "big" if "big" in gdb.execute("show endian", to_string=True) else "little"

    @property
    def arch(self) -> str:
        name = gdb.selected_inferior().architecture().name()
        if "x86-64" in name:
            return "x86_64"
        return "i386" if name.startswith("i386") else name

    @property
    def state(self) -> str:
        inf = gdb.selected_inferior()
        if inf.pid == 0:
            return "none"
        conn = getattr(inf, "connection", None)
        return "core" if conn is not None and conn.type == "core" else "live"

    @property
    def pid(self) -> Optional[int]:
        pid = gdb.selected_inferior().pid
        return pid or None

    def generation(self) -> int:
        return _generation

    # memory --------------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        inf = self._inferior()
        try:
            return inf.read_memory(addr, size).tobytes()
        except (gdb.MemoryError, OverflowError, ValueError) as e:
            raise TargetMemoryError(addr, size, str(e).splitlines()[0] if str(e) else "")\
                from None

    def regions(self) -> list[Region]:
        if self._maps is not None and self._maps[0] == _generation:
            return self._maps[1]
        self._inferior()
        regions = self._proc_mappings() or self._core_sections()
        self._maps = (_generation, regions)
        return regions

    def _proc_mappings(self) -> list[Region]:
        try:
            out = proc_mappings(gdb.execute("info proc mappings", to_string=True))
        except gdb.error:
            return []
        if self.state == "core":  # a core's mapping list names only files
            out = merge_core_regions(out, self._core_sections())
        return out

    def _core_sections(self) -> list[Region]:
        try:
            return core_sections(gdb.execute("maintenance info sections -all-objects",
                                              to_string=True))
        except gdb.error:
            return []

    def modules(self) -> list[Module]:
        out = []
        for obj in gdb.objfiles():
            if not obj.filename or obj.owner is not None:
                continue
            out.append(Module(obj.filename, 0, getattr(obj, "build_id", None)))
        return out

    # symbols and types ---------------------------------------------------------------
    def symbol(self, name: str, module: Optional[str] = None) -> Optional[int]:
        self._inferior()
        for look in (gdb.lookup_static_symbol, gdb.lookup_global_symbol):
            try:
                sym = look(name)
            except gdb.error:
                sym = None
            if sym is not None and sym.is_variable:
                try:
                    return int(sym.value().address)
                except gdb.error:
                    continue
        try:
            return int(gdb.parse_and_eval(f"&'{name}'"))
        except gdb.error:
            return None

    def type_layout(self, name: str) -> Optional[TypeLayout]:
        try:
            t = gdb.lookup_type("struct " + name)
        except gdb.error:
            return None
        fields = {}
        for f in t.fields():
            if f.name and hasattr(f, "bitpos"):
                fields[f.name] = (f.bitpos // 8, f.type.sizeof)
        return TypeLayout(name, t.sizeof, fields)

    # threads -----------------------------------------------------------------------
    def threads(self) -> list[Thread]:
        inf = self._inferior()
        return sorted((Thread(t.num, t.ptid[1] or t.ptid[0], t.name or "")
                       for t in inf.threads()), key=lambda t: t.num)

    @contextmanager
    def _in_thread(self, thread: Thread):
        inf = self._inferior()
        before = gdb.selected_thread()
        frame = None
        try:
            frame = gdb.selected_frame()
        except gdb.error:
            pass
        target = next((t for t in inf.threads() if t.num == thread.num), None)
        if target is None:
            yield False
            return
        try:
            target.switch()
            yield True
        finally:
            if before is not None and before.is_valid():
                before.switch()
                if frame is not None and frame.is_valid():
                    frame.select()

    def thread_pointer(self, thread: Thread) -> Optional[int]:
        # gdb's name for each machine's thread pointer (qemu's stub gives only riscv's)
        reg = {"x86_64": "$fs_base", "aarch64": "$tpidr", "riscv:rv64": "$tp"}.get(
            self.arch, "$tpidruro" if self.arch.startswith("arm") else "$gs_base")
        with self._in_thread(thread) as ok:
            if not ok:
                return None
            try:
                v = gdb.parse_and_eval(reg)
                if v.type.code != gdb.TYPE_CODE_VOID:
                    return int(v)
            except gdb.error:
                pass
        return None  # (discovery's routes find it another way)

    def tls_symbol(self, name: str, thread: Thread) -> Optional[int]:
        with self._in_thread(thread) as ok:
            if not ok:
                return None
            try:
                return int(gdb.parse_and_eval(f"&'{name}'"))
            except gdb.error:
                return None

    # address arguments and lifetime ----------------------------------------------------
    def evaluate(self, text: str) -> int:
        """An address argument as gdb evaluates it, with writes and calls refused."""
        return evaluate(text)

    def close(self) -> None:
        """Nothing to release: the target is gdb's own."""
