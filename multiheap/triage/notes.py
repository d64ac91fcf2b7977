"""The crash as a core file's own notes tell it: signal, faulting address, crashing thread.

The kernel writes the thread that took the signal first (its status note), and the
signal's details in a note of their own (siginfo).  A core written by gdb's ``gcore`` of a
running or stopped process has no signal (0) and usually no siginfo.  The notes are
decoded by elffile.inspect_core (CoreInfo.prstatus, CoreInfo.siginfo); no debugger.
"""

from __future__ import annotations

import signal
from typing import Optional

from multiheap.elffile import CoreInfo, inspect_core

# signals whose siginfo carries the faulting address (si_addr)
_FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP}


def signal_name(signo: Optional[int]) -> Optional[str]:
    """``SIGSEGV`` for 11; None for no signal."""
    if not signo:
        return None
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"signal {signo}"


def crash_notes(path: str, info: Optional[CoreInfo] = None) -> dict:
    """{signal, signal_name, si_code, fault_addr, tid, pc, sp} of a core's crashing thread
    (``info``: the core's CoreInfo when the caller has read it already).

    Values the notes do not hold are None.  Raises BadInputError for a file that is not
    a complete core file (elffile.inspect_core reads its notes).
    """
    info = info if info is not None else inspect_core(path)
    out: dict = {"signal": None, "signal_name": None, "si_code": None, "fault_addr": None,
                 "tid": None, "pc": None, "sp": None}
    if info.prstatus:  # the first thread: the one the signal was for
        first = info.prstatus[0]
        out["signal"] = first.signal or None
        if first.pc is not None:
            out["tid"], out["pc"], out["sp"] = first.tid, first.pc, first.sp
    if info.siginfo is not None and info.siginfo[0]:
        signo, _errno, code, addr = info.siginfo
        out["signal"], out["si_code"] = signo, code
        if signo in _FAULTS:
            out["fault_addr"] = addr
    out["signal_name"] = signal_name(out["signal"])
    return out
