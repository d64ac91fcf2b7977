"""The Target protocol over radare2, through r2pipe (or r2's ``#!pipe`` channel).

Inside r2 (``#!pipe``), :class:`PipeLink` speaks r2pipe's pipe protocol on the two
descriptors r2 hands over; from the CLI, r2pipe spawns r2 on a core or a program.
Memory: when r2 debugs a local process, ``/proc/PID/mem`` read directly (r2 stops the
process, so this is the same memory r2 sees, at memory speed); otherwise r2's own
reads (``p6e`` base64 for small reads, ``wtf`` into a private file for bulk ones).
Thread pointers of a core come from its notes (read by multiheap.elffile through
multiheap.startup): r2 does not show fs_base.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from typing import Any, Optional, Protocol

from multiheap.errors import MultiheapError, NoTargetError, TargetMemoryError
from multiheap.startup import core_info
from multiheap.target import Module, Region, Thread, TypeLayout, covered_until

SMALL_READ = 0x10000  # up to this: base64 through the pipe; above: wtf to a file
# r2 math only: no command separators, pipes, greps, temporary seeks, redirections,
# substitutions ($(..), `..`), quotes or comments can reach r2 with an address
_EXPR_OK = re.compile(r"^[A-Za-z0-9_.+\-*/%()&^\[\] ]+$")
_SYM_OK = re.compile(r"^[A-Za-z0-9_.@$]+$")


class R2Error(MultiheapError):
    """radare2 did not answer as expected."""


class Link(Protocol):
    def cmd(self, command: str) -> str: ...


class PipeLink:
    """r2pipe's ``#!pipe`` protocol on R2PIPE_IN/R2PIPE_OUT, without importing r2pipe.

    Importing r2pipe costs ~60 ms (urllib, http) on every ``$pt*`` command; this is the
    same protocol: write the command, read up to the NUL that ends the answer.
    """

    def __init__(self) -> None:
        try:
            self.fd_in = int(os.environ["R2PIPE_IN"])
            self.fd_out = int(os.environ["R2PIPE_OUT"])
        except (KeyError, ValueError):
            raise NoTargetError("not running inside radare2 (#!pipe sets R2PIPE_IN/OUT)"
                                ) from None

    def cmd(self, command: str) -> str:
        os.write(self.fd_out, command.strip().replace("\n", ";").encode())
        parts: list[bytes] = []
        while True:
            chunk = os.read(self.fd_in, 1 << 16)
            if not chunk:
                raise R2Error("radare2 closed the pipe")
            nul = chunk.find(b"\0")
            if nul != -1:
                parts.append(chunk[:nul])
                break
            parts.append(chunk)
        return b"".join(parts).decode("utf-8", "replace")


class R2Target:
    """The file, core or process the r2 session behind ``link`` has open."""

    name = "r2"

    def __init__(self, link: Link, core: Optional[str] = None) -> None:
        self.link = link
        self._core_path = core
        self._cache: dict[str, Any] = {}
        self._mem: Optional[int] = None  # fd of /proc/PID/mem
        self._mem_checked = False
        self._tmpdir: Optional[str] = None
        self.read_path = ""  # how memory is read, for benchmarks and ptconfig-like reports

    # talking to r2 ---------------------------------------------------------------
    def cmd(self, command: str) -> str:
        try:
            out = self.link.cmd(command)
        except MultiheapError:
            raise
        except Exception as e:  # r2pipe raises plain exceptions when r2 is gone
            raise R2Error(f"radare2 does not answer ({type(e).__name__}: {e})") from None
        return out if out is not None else ""

    def cmdj(self, command: str) -> Any:
        text = self.cmd(command).strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None

    def _once(self, key: str, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # the machine ------------------------------------------------------------------
    @property
    def pointer_size(self) -> int:
        bits = self._once("bits", lambda: int(self.cmd("e asm.bits").strip() or 64))
        # r2 sets asm.bits 16 at a Thumb address (32-bit arm): the word is still 4 bytes
        return 4 if bits == 16 else bits // 8

    @property
    def endianness(self) -> str:
        big = self._once("big", lambda: self.cmd("e cfg.bigendian").strip() == "true")
        return "big" if big else "little"

    @property
    def arch(self) -> str:
        a = self._once("arch", lambda: self.cmd("e asm.arch").strip())
        if a == "x86":
            return "x86_64" if self.pointer_size == 8 else "i386"
        if a == "arm" and self.pointer_size == 8:  # r2 names both arm and arm64 "arm"
            return "aarch64"
        return a

    def _info(self) -> dict:
        return self._once("ij", lambda: self.cmdj("ij") or {})

    @property
    def state(self) -> str:
        return self._once("state", self._state)

    def _state(self) -> str:
        if self.cmd("e cfg.debug").strip() == "true":
            pid = self._debug_pid()
            return "live" if pid and os.path.exists(f"/proc/{pid}") else "exited"
        core = self._info().get("core", {})
        if "CORE" in str(core.get("type", "")) or self._core_path:
            return "core"
        return "none"

    def _debug_pid(self) -> Optional[int]:
        def find() -> Optional[int]:
            for p in self.cmdj("dpj") or []:
                if isinstance(p, dict) and p.get("current"):
                    return int(p["pid"])
            return None
        return self._once("pid", find)

    @property
    def pid(self) -> Optional[int]:
        return self._debug_pid() if self.state == "live" else None

    def generation(self) -> int:
        return 0  # one r2 answer per command; the CLI's r2 never resumes the target

    def _require(self) -> str:
        st = self.state
        if st == "none":
            raise NoTargetError("r2 has no process or core open (use r2 -d PROG, or r2 CORE)")
        if st == "exited":
            raise NoTargetError("the process r2 was debugging has exited")
        return st

    # memory -------------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        st = self._require()
        if size <= 0:
            return b""
        if addr < 0 or addr + size > 1 << (8 * self.pointer_size):
            raise TargetMemoryError(addr, size, "outside the address space")
        if st == "live":
            fd = self._proc_mem()
            if fd is not None:
                try:
                    data = os.pread(fd, size, addr)
                except OverflowError:  # beyond what the kernel takes as an offset
                    raise TargetMemoryError(addr, size, "unmapped") from None
                except OSError as e:
                    raise TargetMemoryError(addr, size, e.strerror or "") from None
                if len(data) != size:
                    raise TargetMemoryError(addr, size, "unmapped")
                return data
        return self._r2_read(addr, size)

    def _proc_mem(self) -> Optional[int]:
        """/proc/PID/mem of the process r2 debugs here, when it is really that one."""
        if self._mem_checked:
            return self._mem
        self._mem_checked = True
        pid = self._debug_pid()
        uri = " ".join(str(f.get("uri", "")) for f in self.cmdj("oj") or []
                       if isinstance(f, dict))
        if not pid or not re.search(r"(^|\s)(dbg|ptrace|native)://", uri):
            return None  # remote debugging (gdb://, ...): r2 reads only
        try:
            exe = os.path.realpath(f"/proc/{pid}/exe")
            want = self._info().get("core", {}).get("file") or ""
            if want and os.path.realpath(want) != exe:
                return None
            fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:  # readable for us (same user / root, ptrace rules)?
            probe = next((r.start for r in self.regions() if "r" in r.perms), None)
            if probe is None or len(os.pread(fd, 8, probe)) != 8:
                raise OSError
        except OSError:
            os.close(fd)
            return None
        self._mem = fd
        self.read_path = f"/proc/{pid}/mem"
        return fd

    def _r2_read(self, addr: int, size: int) -> bytes:
        end = addr + size
        pos = covered_until(self.regions(), addr, end, lambda r: "r" in r.perms)
        if pos < end:
            raise TargetMemoryError(addr, size, f"{max(pos, addr):#x} is not mapped")
        if size <= SMALL_READ:
            self.read_path = self.read_path or "r2 p6e"
            text = self.cmd(f"p6e {size} @ {addr:#x}").strip()
            try:
                data = base64.b64decode(text, validate=False)
            except ValueError:
                data = b""
        else:
            self.read_path = self.read_path or "r2 wtf"
            if self._tmpdir is None:
                self._tmpdir = tempfile.mkdtemp(prefix="multiheap-r2-")
            path = os.path.join(self._tmpdir, "dump")
            self.cmd(f"wtf {path} {size} @ {addr:#x} 2>/dev/null")
            try:
                with open(path, "rb") as f:
                    data = f.read()
                os.unlink(path)
            except OSError:
                data = b""
        if len(data) != size:
            raise TargetMemoryError(addr, size, "radare2 returned a short read")
        return data

    def regions(self) -> list[Region]:
        return self._once("regions", self._regions)

    def _regions(self) -> list[Region]:
        st = self._require()
        out = []
        if st == "live":
            for m in self.cmdj("dmj") or []:
                perm = str(m.get("perm", "---"))[:3]
                out.append(Region(int(m["addr"]), int(m["addr_end"]), perm,
                                  str(m.get("file") or m.get("name") or "")))
        else:
            for m in self.cmdj("omj") or []:
                perm = str(m.get("sperm") or m.get("perm") or "---")[:3]
                name = str(m.get("name") or "")
                out.append(Region(int(m["from"]), int(m["to"]) + 1, perm,
                                  name if name.startswith("/") else ""))
        return sorted(out, key=lambda r: r.start)

    def modules(self) -> list[Module]:
        return self._once("modules", self._modules)

    def _modules(self) -> list[Module]:
        st = self._require()
        if st == "live":
            mods = [Module(str(m.get("file") or m.get("name")), int(m["addr"]))
                    for m in self.cmdj("dmmj") or []]
        else:
            bases: dict[str, int] = {}
            for r in self.regions():
                if r.name and (r.name not in bases or r.start < bases[r.name]):
                    bases[r.name] = r.start
            mods = [Module(n, b) for n, b in bases.items()]
        return sorted(mods, key=lambda m: m.base)

    # symbols and types --------------------------------------------------------------
    def symbol(self, name: str, module: Optional[str] = None) -> Optional[int]:
        """A symbol r2 has a flag for (``sym.NAME``); r2 reads no separate debug files."""
        self._require()
        if not _SYM_OK.match(name):
            return None
        flag = f"sym.{name}"
        if self.cmd(f"fd {flag}").strip() != flag:
            return None
        try:
            addr = int(self.cmd(f"?v {flag}").strip(), 16)
        except ValueError:
            return None
        return addr or None

    def type_layout(self, name: str) -> Optional[TypeLayout]:
        return None  # r2 does not load libc's DWARF

    # threads ------------------------------------------------------------------------
    def threads(self) -> list[Thread]:
        st = self._require()
        if st == "live":
            tids = [int(t["pid"]) for t in self.cmdj("dptj") or [] if "pid" in t]
            if not tids and self._debug_pid():
                tids = [self._debug_pid()]
        else:
            tids = list(self._core_threads())
        return [Thread(i + 1, tid) for i, tid in enumerate(tids)]

    def thread_pointer(self, thread: Thread) -> Optional[int]:
        st = self._require()
        if st == "core":
            return self._core_threads().get(thread.tid)
        return self._once(f"tp:{thread.tid}", lambda: self._live_tp(thread.tid))

    def _live_tp(self, tid: int) -> Optional[int]:
        cur = self.cmd("dpt.").strip()
        switch = cur.isdigit() and int(cur) != tid
        if switch:
            self.cmd(f"dpt={tid}")
        try:
            # r2 6.1's x86_64 register profile labels ptrace's fs_base slot "fs"
            names = ("fs_base", "fs") if self.arch == "x86_64" else ("gs_base", "gs")
            for reg in names:
                try:
                    v = int(self.cmd(f"dr {reg}").strip() or "0", 16)
                except ValueError:
                    continue
                if v > 0xFFFF:
                    return v  # discovery checks that a tcbhead is there
            return None
        finally:
            if switch:
                self.cmd(f"dpt={cur}")

    def _core_file(self) -> Optional[str]:
        if self._core_path:
            return self._core_path
        for f in self.cmdj("oj") or []:
            uri = str(f.get("uri", "")) if isinstance(f, dict) else ""
            if uri and os.path.isfile(uri):
                return uri
        path = self._info().get("core", {}).get("file")
        return path if path and os.path.isfile(path) else None

    def _core_threads(self) -> dict[int, Optional[int]]:
        """tid -> thread pointer, from the core's notes (multiheap.elffile reads them)."""
        return self._once("core_threads", self._read_core_threads)

    def _read_core_threads(self) -> dict[int, Optional[int]]:
        path = self._core_file()
        if path is None:
            return {}
        try:
            return core_info(path).threads
        except MultiheapError:
            return {}

    def tls_symbol(self, name: str, thread: Thread) -> Optional[int]:
        """r2 reads no DWARF: discovery's build-id debug-file route finds TLS variables."""
        return None

    def evaluate(self, expr: str) -> int:
        """An address argument in r2's own math (numbers, registers, flags), checked
        first so that nothing else reaches r2 (ValueError: the command says why)."""
        try:
            return int(expr, 0)
        except ValueError:
            pass
        if not _EXPR_OK.match(expr):
            raise ValueError("not an address expression for r2 (numbers, registers, flags, "
                             "+ - * / % & ^ ( ) [ ] only)")
        # r2 prints errors for unknown names on its own stderr and answers 0, so every name
        # is checked first: a register (drl) or a flag r2 knows (f?NAME sets $? to 1)
        regs: Optional[set[str]] = None
        for name in re.findall(r"(?<![\w.])[A-Za-z_][\w.]*", expr):  # (never 0x.. digits)
            if regs is None:
                regs = set(self.cmd("drl").split())
            if name not in regs and self.cmd(f"f?{name};?v $?").strip() != "0x1":
                raise ValueError(f"r2 knows no register or flag {name!r}")
        answer = self.cmd(f"?v {expr}").strip()
        try:
            return int(answer, 16)
        except ValueError:
            raise ValueError(f"r2 cannot evaluate {expr!r}") from None

    def close(self) -> None:
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None
        if self._tmpdir is not None:
            try:
                os.rmdir(self._tmpdir)
            except OSError:
                pass
            self._tmpdir = None
