"""The Target protocol over a gdb subprocess driven through gdb/MI (``--interpreter=mi3``).

Requests carry a token and return as soon as the matching ``^done``/``^error`` record
arrives (pygdbmi's ``GdbController.write()`` waits out its timeout instead).  Bulk
memory goes through ``dump binary memory`` into a private file, small reads through
``-data-read-memory-bytes``.  gdb runs in its own session (the terminal's Ctrl-C
reaches only us) and is told to die with us (PR_SET_PDEATHSIG); :meth:`close`
detaches from an attached process, kills a program we started, and reaps gdb.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Optional

from multiheap.adapters import gdbtext
from multiheap.adapters.gdbmi_process import TIMEOUT, GdbMiError, MiProcess, mi_quote
from multiheap.elffile import file_build_id
from multiheap.errors import MultiheapError, NoTargetError, TargetMemoryError, UsageError
from multiheap.startup import core_segments
from multiheap.target import Module, Region, Thread, TypeLayout

SMALL_READ = 0x4000  # up to this many bytes: hex through MI; above: dump to a file
_HEXREAD = re.compile(r'begin="0x([0-9a-f]+)",offset="0x([0-9a-f]+)",end="0x([0-9a-f]+)",'
                      r'contents="([0-9a-f]*)"')
_LWP = re.compile(r"LWP (\d+)|process (\d+)")


class GdbMiTarget:
    """A core file, an attached process or a started program, seen through gdb/MI."""

    name = "gdb-mi"

    def __init__(self, mi: MiProcess, how: str) -> None:
        self.mi = mi
        self.how = how  # core, attach or run
        self._state = "core" if how == "core" else "live"
        self._tmp = tempfile.mkdtemp(prefix="multiheap-mi-", dir=_tmp_base())
        self._dump = os.path.join(self._tmp, "mem")
        self._maps: Optional[list[Region]] = None
        self._ptr: Optional[int] = None
        self._arch: Optional[str] = None
        self._endian: Optional[str] = None
        self._pid: Optional[int] = None
        self._core_fd: Optional[int] = None
        self._core_segments: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
        self._closed = False
        self.guarded = False  # gdb refuses writes to memory and registers (forbid_writes)

    def use_core_file(self, path: str) -> None:
        """Let bulk reads come from the core file itself (sorted PT_LOAD segments)."""
        self._core_segments = core_segments(path)
        self._core_fd = os.open(path, os.O_RDONLY)

    # the machine --------------------------------------------------------------------
    def _eval(self, expr: str, thread: Optional[int] = None) -> str:
        opt = f"--thread {thread} " if thread is not None else ""
        payload, _ = self.mi.request(f"-data-evaluate-expression {opt}{mi_quote(expr)}")
        return payload.get("value", "")

    @property
    def pointer_size(self) -> int:
        if self._ptr is None:
            self._ptr = int(self._eval("sizeof(void *)"))
        return self._ptr

    @property
    def endianness(self) -> str:
        if self._endian is None:  # fixed for the session, like the word size
            self._endian = "big" if "big" in self.mi.console("show endian") else "little"
        return self._endian

    @property
    def arch(self) -> str:
        if self._arch is None:
            text = self.mi.console("show architecture")
            m = re.search(r'currently "([^"]+)"', text) or re.search(r'set to "([^"]+)"', text)
            name = m.group(1) if m else ""
            self._arch = "x86_64" if "x86-64" in name else \
                ("i386" if name.startswith("i386") else name)
        return self._arch

    @property
    def state(self) -> str:
        return "exited" if self.mi.exited is not None else self._state

    @property
    def pid(self) -> Optional[int]:
        if self._pid is None:
            payload, _ = self.mi.request("-list-thread-groups")
            for g in payload.get("groups", []):
                if g.get("pid"):
                    self._pid = int(g["pid"])
                    break
        return self._pid

    def generation(self) -> int:
        return 0  # the program never runs while we look at it

    # memory ---------------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        if self._closed:
            raise NoTargetError("the gdb/MI session is closed")
        if size <= 0:
            return b""
        if size <= SMALL_READ:
            return self._read_hex(addr, size)
        if self._core_fd is not None:
            data = self._read_core(addr, size)
            if data is not None:
                return data
        return self._read_dump(addr, size)

    def _read_core(self, addr: int, size: int) -> Optional[bytes]:
        """Bulk bytes straight from the core file's segments (what gdb would read from
        it too), when they hold the whole range; None sends the read through gdb."""
        parts = []
        want, end = addr, addr + size
        for va, fs, off in self._core_segments:
            if va <= want < va + fs:
                n = min(end, va + fs) - want
                parts.append(os.pread(self._core_fd, n, off + want - va))
                want += n
                if want >= end:
                    data = b"".join(parts)
                    return data if len(data) == size else None
        return None

    def _read_hex(self, addr: int, size: int) -> bytes:
        self.mi._finish_pending(TIMEOUT)
        tok = self.mi.send(f"-data-read-memory-bytes {addr:#x} {size}")
        try:
            payload, _ = self.mi.wait_result(tok, TIMEOUT, raw=True)
        except GdbMiError as e:
            raise TargetMemoryError(addr, size, str(e)) from None
        blocks = _HEXREAD.findall(payload["line"])
        if len(blocks) != 1 or int(blocks[0][0], 16) + int(blocks[0][1], 16) != addr \
                or len(blocks[0][3]) != 2 * size:
            have = sum(len(b[3]) // 2 for b in blocks)
            raise TargetMemoryError(addr, size, f"only {have} bytes readable")
        return bytes.fromhex(blocks[0][3])

    def _read_dump(self, addr: int, size: int) -> bytes:
        try:
            self.mi.console(f"dump binary memory {self._dump} {addr:#x} {addr + size:#x}")
            with open(self._dump, "rb") as f:
                data = f.read()
        except GdbMiError as e:
            raise TargetMemoryError(addr, size, str(e)) from None
        finally:
            try:
                os.unlink(self._dump)
            except OSError:
                pass
        if len(data) != size:
            raise TargetMemoryError(addr, size, f"only {len(data)} bytes readable")
        return data

    # regions and modules --------------------------------------------------------------
    def regions(self) -> list[Region]:
        if self._maps is None:
            try:
                named = gdbtext.proc_mappings(self.mi.console("info proc mappings"))
            except GdbMiError:
                named = []
            if self._state == "core" or not named:
                sections = gdbtext.core_sections(
                    self.mi.console("maintenance info sections -all-objects"))
                named = gdbtext.merge_core_regions(named, sections) if named else sections
            self._maps = named
        return self._maps

    def modules(self) -> list[Module]:
        out = []  # gdb/MI names no build-id: read from the file, as gdb itself does
        payload, _ = self.mi.request("-list-thread-groups")
        for g in payload.get("groups", []):
            exe = g.get("executable")
            if exe:
                out.append(Module(exe, 0, file_build_id(exe)))
        payload, _ = self.mi.request("-file-list-shared-libraries")
        for lib in payload.get("shared-libraries", []):
            path = lib.get("host-name") or lib.get("target-name") or ""
            ranges = lib.get("ranges") or [{}]
            base = int(ranges[0].get("from", "0"), 16) if ranges[0] else 0
            out.append(Module(path, base, file_build_id(path)))
        return out

    # symbols and types ----------------------------------------------------------------
    def symbol(self, name: str, module: Optional[str] = None) -> Optional[int]:
        try:
            return gdbtext.parse_value(self._eval(f"&'{name}'"), 8 * self.pointer_size)
        except GdbMiError:
            return None

    def type_layout(self, name: str) -> Optional[TypeLayout]:
        try:
            text = self.mi.console(f"ptype/o struct {name}")
        except GdbMiError:
            return None
        return gdbtext.ptype_layout(name, text)

    def evaluate(self, expr: str) -> int:
        """An address expression as gdb reads it (``ptchunk $rax``, ``demo_ptrs[3]``),
        with gdb's guards against writes and calls on (:func:`forbid_writes`); an
        assignment or increment is refused before gdb sees it."""
        try:
            return int(expr, 0)  # the engine masks a negative one, refuses a huge one
        except ValueError:
            pass
        op = gdbtext.write_operator(expr)
        if op is not None:
            raise UsageError(gdbtext.write_refusal(expr))
        bits = 8 * self.pointer_size
        if not self.guarded:
            raise UsageError(f"cannot evaluate {expr[:60]!r}: gdb would not forbid writes "
                             "to the target, so only numbers are taken as addresses")
        try:
            v = gdbtext.parse_value(self._eval(expr), bits)
            if v is None:  # an array or struct: its address
                v = gdbtext.parse_value(self._eval(f"&({expr})"), bits)
        except GdbMiError as e:
            refusal = gdbtext.guard_refusal(expr, str(e))
            if refusal:
                raise UsageError(refusal) from None
            raise MultiheapError(str(e)) from None
        if v is None:
            raise MultiheapError(f"{expr} is not a number or an address")
        return v

    def forbid_writes(self) -> None:
        """Turn gdb's ``may-write-memory`` and ``may-write-registers`` off for the rest of
        the session: this gdb only reads (a detach or kill at the end writes neither).

        gdb 13 will not change ``may-write-registers`` while a process is live ("Cannot
        change this setting while the inferior is running"; it checks only the current
        inferior), so that one is set from an empty inferior added for the purpose and
        removed again; the selected thread is restored.  Until both are off,
        :meth:`evaluate` takes only numbers.
        """
        for name in ("may-write-memory", "may-write-registers"):
            try:
                self.mi.console(f"set {name} off")
            except GdbMiError:
                self._from_empty_inferior(f"set {name} off")
        self.guarded = all(" is off" in self.mi.console(f"show {name}")
                           for name in ("may-write-memory", "may-write-registers"))

    def _from_empty_inferior(self, command: str) -> None:
        payload, _ = self.mi.request("-thread-info")
        current = payload.get("current-thread-id")
        payload, _ = self.mi.request("-add-inferior --no-connection")
        empty = payload.get("inferior", "")
        try:
            self.mi.request(f"-interpreter-exec --thread-group {empty} console "
                            f"{mi_quote(command)}")
        except GdbMiError:
            pass  # forbid_writes() then finds the setting still on
        finally:
            if current:
                self.mi.request(f"-thread-select {current}")
            self.mi.request(f"-remove-inferior {empty}")

    # threads --------------------------------------------------------------------------
    def threads(self) -> list[Thread]:
        payload, _ = self.mi.request("-thread-info")
        out = []
        for t in payload.get("threads", []):
            target_id = t.get("target-id", "")
            m = _LWP.search(target_id)
            tid = int(m.group(1) or m.group(2)) if m else (self.pid or 0)
            out.append(Thread(int(t["id"]), tid, t.get("name", "")))
        return sorted(out, key=lambda t: t.num)

    def thread_pointer(self, thread: Thread) -> Optional[int]:
        """$fs_base / $gs_base (i386 gdb has none: discovery finds it another way);
        $tpidr, $tpidruro, $tp on aarch64, arm and riscv64."""
        reg = {"x86_64": "$fs_base", "aarch64": "$tpidr", "riscv:rv64": "$tp"}.get(
            self.arch, "$tpidruro" if self.arch.startswith("arm") else "$gs_base")
        try:
            return gdbtext.parse_value(self._eval(reg, thread.num), 8 * self.pointer_size)
        except GdbMiError:
            return None

    def tls_symbol(self, name: str, thread: Thread) -> Optional[int]:
        try:
            return gdbtext.parse_value(self._eval(f"&'{name}'", thread.num),
                                       8 * self.pointer_size)
        except GdbMiError:
            return None

    # ending ---------------------------------------------------------------------------
    def close(self) -> None:
        """Detach (attached process) or kill (started program), end gdb, drop files."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.mi.alive() and self.how == "attach" and self.mi.exited is None:
                self.mi.request("-target-detach", timeout=10)
        except MultiheapError:
            pass
        finally:
            self.mi.terminate()
            shutil.rmtree(self._tmp, ignore_errors=True)
            if self._core_fd is not None:
                os.close(self._core_fd)
                self._core_fd = None

    def __enter__(self) -> GdbMiTarget:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tmp_base() -> Optional[str]:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
