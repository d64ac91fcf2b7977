"""The crash as a core file's own notes tell it: signal, faulting address, crashing thread.

The kernel writes the thread that took the signal first (NT_PRSTATUS), and the signal's
details in NT_SIGINFO.  A core written by gdb's ``gcore`` of a running or stopped process
has no signal (0) and usually no NT_SIGINFO.  Read with multiheap.elffile, no debugger.
"""

from __future__ import annotations

import signal
import struct
from typing import Optional

from multiheap.elffile import PT_NOTE, iter_notes, read_elf

NT_PRSTATUS, NT_SIGINFO = 1, 0x53494749
EM_386, EM_X86_64 = 3, 62
# signals whose siginfo carries the faulting address (si_addr)
_FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP}
# (offset of pr_pid, offset of pr_reg, index of the pc, index of the sp) in elf_prstatus
_PRSTATUS = {EM_X86_64: (32, 112, 16, 19), EM_386: (24, 72, 12, 15)}


def signal_name(signo: Optional[int]) -> Optional[str]:
    """``SIGSEGV`` for 11; None for no signal."""
    if not signo:
        return None
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"signal {signo}"


def crash_notes(path: str) -> dict:
    """{signal, signal_name, si_code, fault_addr, tid, pc, sp} of a core's crashing thread.

    Values the notes do not hold are None.  Raises BadInputError for a file that is not
    a readable ELF file (the caller checks the core first with inspect_core).
    """
    elf = read_elf(path)
    e = elf.fmt
    w = 8 if elf.bits == 64 else 4
    out: dict = {"signal": None, "signal_name": None, "si_code": None, "fault_addr": None,
                 "tid": None, "pc": None, "sp": None}
    with open(path, "rb") as f:
        machine = struct.unpack(e + "H", f.read(20)[18:20])[0]
        prstatus = siginfo = None
        for pt, off, _va, fs, _ms in elf.phdrs:
            if pt != PT_NOTE or fs > 1 << 24:
                continue
            f.seek(off)
            for ntype, name, desc in iter_notes(f.read(fs), elf.endian):
                if name != b"CORE":
                    continue
                if ntype == NT_PRSTATUS and prstatus is None:
                    prstatus = desc  # the first thread: the one the signal was for
                elif ntype == NT_SIGINFO and siginfo is None:
                    siginfo = desc
    if prstatus is not None and len(prstatus) >= 14:
        cursig = struct.unpack_from(e + "h", prstatus, 12)[0]
        out["signal"] = cursig or None
        layout = _PRSTATUS.get(machine)
        if layout is not None:
            pid_off, reg_off, pc_i, sp_i = layout
            word = "Q" if w == 8 else "I"
            if len(prstatus) >= reg_off + (sp_i + 1) * w:
                out["tid"] = struct.unpack_from(e + "i", prstatus, pid_off)[0]
                out["pc"] = struct.unpack_from(e + word, prstatus, reg_off + pc_i * w)[0]
                out["sp"] = struct.unpack_from(e + word, prstatus, reg_off + sp_i * w)[0]
    if siginfo is not None and len(siginfo) >= 12:
        signo, _errno, code = struct.unpack_from(e + "iii", siginfo, 0)
        if signo:
            out["signal"], out["si_code"] = signo, code
            addr_off = 16 if w == 8 else 12
            if signo in _FAULTS and len(siginfo) >= addr_off + w:
                out["fault_addr"] = struct.unpack_from(e + ("Q" if w == 8 else "I"),
                                                       siginfo, addr_off)[0]
    out["signal_name"] = signal_name(out["signal"])
    return out
