"""This process's memory, for the scale benchmark: RSS now, peak RSS, peak reset."""

from __future__ import annotations


def status(field: str, pid: str = "self") -> int:
    """A /proc/PID/status size field (VmRSS, VmHWM) in bytes; 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak(pid: str = "self") -> None:
    """VmHWM starts again from the RSS now (/proc/PID/clear_refs, Linux 4.0+)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
