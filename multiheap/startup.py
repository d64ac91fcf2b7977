"""Starting a debugger on a target (``--core``, ``--pid``, ``--run``, ``--exe``): checked
once, here, into one :class:`StartRequest` that every backend (gdb-mi, lldb, r2) takes.

So a missing, truncated or foreign core, a dead PID or a program that is not there is
the same one line whichever debugger was asked for.  No debugger module is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

from multiheap.arch import ARCHES
from multiheap.debugfile import add_debug_dirs, resolve_debug_dir
from multiheap.elffile import (
    PT_LOAD,
    BadInputError,
    CoreInfo,
    check_core_matches,
    ident,
    inspect_core,
    read_elf,
)
from multiheap.progio import program_argv

__all__ = ["BadInputError", "CoreInfo", "StartRequest", "core_info", "core_segments",
           "export_debug_dirs", "validate"]


@dataclass(frozen=True)
class StartRequest:
    """A checked request: exactly one of a core, a PID or a program to run."""

    core: Optional[str] = None          # absolute path of a checked core file
    exe: Optional[str] = None           # its executable (given, or the one the core names)
    pid: Optional[int] = None
    argv: tuple[str, ...] = ()          # --run: [absolute program path, args...]
    brk: Optional[str] = None           # --break (with --run only)
    debug_dirs: tuple[str, ...] = ()    # directories holding .build-id
    core_info: Optional[CoreInfo] = None
    sysroot: Optional[str] = None       # the target's libraries under DIR (another machine's)

    @property
    def kind(self) -> str:
        """``core``, ``attach`` or ``run``."""
        return "core" if self.core else "attach" if self.pid is not None else "run"

    @property
    def run(self) -> str:
        """The --run text as given back for messages: PROG ARGS."""
        return " ".join(self.argv)


def validate(core: Optional[str] = None, exe: Optional[str] = None,
             pid: Optional[int] = None, run: Optional[str] = None,
             brk: Optional[str] = None, debug_dirs: Sequence[str] = (),
             request: Optional[StartRequest] = None, sysroot: Optional[str] = None,
             **_options) -> StartRequest:
    """Check the options once; raise BadInputError (one line) when unusable.
    An already checked ``request`` is returned as it is."""
    if request is not None:
        return request
    if sum(x is not None for x in (core, pid, run)) != 1:
        raise BadInputError("give exactly one of --core, --pid or --run")
    if exe is not None and core is None:
        raise BadInputError("--exe goes with --core")
    if brk is not None and run is None:
        raise BadInputError("--break goes with --run")
    dirs = tuple(resolve_debug_dir(d) for d in debug_dirs)
    if sysroot is not None and not os.path.isdir(sysroot):
        raise BadInputError(f"--sysroot {sysroot}: not a directory")
    root = os.path.abspath(sysroot) if sysroot else None
    if core is not None:
        info = core_info(core)
        if exe is None:
            exe = info.exe
            if exe is None or not os.path.isfile(exe):
                raise BadInputError(f"cannot find the executable of {core} "
                                    f"({exe or 'not named in the core'}): give --exe")
        check_core_matches(info, exe)
        _check_machine(info, exe)
        return StartRequest(core=os.path.abspath(core), exe=os.path.abspath(exe),
                            debug_dirs=dirs, core_info=info, sysroot=root)
    if pid is not None:
        check_pid(int(pid))
        return StartRequest(pid=int(pid), debug_dirs=dirs, sysroot=root)
    assert run is not None
    return StartRequest(argv=tuple(program_argv(run)), brk=brk, debug_dirs=dirs,
                        sysroot=root)


def core_info(path: str) -> CoreInfo:
    """A complete, readable core file's own account (its executable, its threads)."""
    info = inspect_core(path)
    if not os.access(path, os.R_OK):
        raise BadInputError(f"core file {path} is not readable (permission denied)")
    return info


_MACHINES = {a.machine: a.name for a in ARCHES}  # i386, x86_64, aarch64, arm


def _machine(path: str) -> Optional[int]:
    found = ident(path)
    return found[1] if found else None


def foreign_machine(path: str) -> bool:
    """Is ``path`` an ELF file of another machine than this one (an aarch64 program on
    x86_64: gdb-multiarch reads it, Debian's gdb does not)?"""
    import platform

    m = _machine(path)
    here = {"x86_64": 62, "i686": 3, "aarch64": 183}.get(platform.machine())
    return m is not None and here is not None and m != here and {m, here} != {3, 62}


def _check_machine(info: CoreInfo, exe: str) -> None:
    """A core of a machine multiheap does not know, or of another machine than EXE."""
    core_m, exe_m = _machine(info.path), _machine(exe)
    if core_m is not None and core_m not in _MACHINES:
        raise BadInputError(f"core file {info.path} is for an unsupported machine "
                            f"(ELF machine {core_m}; known: "
                            + ", ".join(_MACHINES.values()) + ")")
    if core_m is not None and exe_m is not None and core_m != exe_m:
        raise BadInputError(f"core file {info.path} is {_MACHINES.get(core_m, core_m)} but "
                            f"{exe} is {_MACHINES.get(exe_m, f'ELF machine {exe_m}')}")


def check_pid(pid: int) -> None:
    """A process we may attach to: exists, is not us, has not exited, is not traced."""
    if pid <= 0:
        raise BadInputError(f"bad process id {pid}")
    if pid == os.getpid():
        raise BadInputError("multiheap cannot attach to itself")
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        raise BadInputError(f"no process {pid}") from None
    state = status.get("State", "").strip()
    if state.startswith(("Z", "X")):
        raise BadInputError(f"process {pid} has exited (state {state})")
    tracer = int(status.get("TracerPid", "0").strip() or 0)
    if tracer:
        raise BadInputError(f"process {pid} is already traced by process {tracer}")


def ptrace_hint() -> str:
    """Why attaching may have failed, when the kernel's ptrace scope restricts it."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = f.read().strip()
    except OSError:
        return ""
    if scope != "0":
        return f" (kernel.yama.ptrace_scope is {scope}: run as root or lower it)"
    return ""


def core_segments(path: str) -> list[tuple[int, int, int]]:
    """(vaddr, filesz, offset) of a core's PT_LOAD segments, sorted (for bulk reads)."""
    elf = read_elf(path)
    return sorted((va, fs, off) for pt, off, va, fs, _ms in elf.phdrs if pt == PT_LOAD and fs)


def export_debug_dirs(dirs: Sequence[str]) -> None:
    """Hand ``dirs`` to multiheap's own build-id reader (and to debuggers we start)."""
    add_debug_dirs(list(dirs))
