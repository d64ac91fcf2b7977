"""Read-only checks shared by every host's test: what a process looks like from outside.

A test stops ``victim`` (tests/programs/victim.c) in a debugger, takes a
:func:`snapshot`, runs :data:`BATTERY` through multiheap's commands, takes another,
and requires :func:`differences` to be empty: every writable mapping byte for byte,
the mapping list itself (no new mapping, no changed permission) and the registers
the host reports.  Memory is read from ``/proc/PID/mem`` by the test process, not
through the debugger under test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Arguments an address parameter might receive: writes of every C form, calls,
# register assignments, and plain bad input.  ``{reg}`` is the host's spelling of a
# general register ($rbx in gdb and lldb, rbx in r2).
BATTERY = [
    "nkeep=8", "keep[3]=0", "nkeep++", "++nkeep", "nkeep--", "nkeep+=1", "nkeep|=1",
    "*(long*)p=0x4242", "p[0]=7", "*p=1", "{reg}=0x4141", "{reg}++",
    "malloc(16)", "abort()", "(long)malloc(16)", "free(p)", "checkpoint()",
    "(char*)keep[1]+16", "keep[2]", "&keep", "*(long*)&keep", "global_ptr", "p",
    "1+", "0x", ")", "keep[", "nosuchname", "'x'", "x" * 500,
]


@dataclass
class Snapshot:
    """A stopped process as the kernel shows it."""

    maps: str
    memory: dict[str, bytes] = field(default_factory=dict)
    registers: str = ""


_MAP = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) .*$")


def snapshot(pid: int, registers: str = "") -> Snapshot:
    """Every writable mapping of ``pid`` and its mapping list (``registers``: as the
    host printed them, taken by the test at the same stop)."""
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    snap = Snapshot(maps, registers=registers)
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps.splitlines():
            m = _MAP.match(line)
            if not m or "w" not in m.group(3) or line.endswith("[vvar]"):
                continue
            start, end = int(m.group(1), 16), int(m.group(2), 16)
            try:
                mem.seek(start)
                snap.memory[line] = mem.read(end - start)
            except OSError:
                snap.memory[line] = b"<unreadable>"
    return snap


def differences(before: Snapshot, after: Snapshot) -> list[str]:
    """What changed between two snapshots, one line each (empty: nothing)."""
    out = []
    if before.maps != after.maps:
        old, new = set(before.maps.splitlines()), set(after.maps.splitlines())
        out += [f"mapping gone: {ln}" for ln in sorted(old - new)]
        out += [f"mapping new: {ln}" for ln in sorted(new - old)]
    for line, data in before.memory.items():
        other = after.memory.get(line)
        if other is not None and other != data:
            at = next(i for i, (a, b) in enumerate(zip(data, other)) if a != b) \
                if len(data) == len(other) else 0
            out.append(f"memory changed in {line} at +{at:#x}")
    if before.registers != after.registers:
        out.append("registers changed:\n" + "\n".join(
            f"  {a!r} -> {b!r}" for a, b in zip(before.registers.splitlines(),
                                                 after.registers.splitlines()) if a != b))
    return out


def battery(reg: str) -> list[str]:
    """:data:`BATTERY` with the host's register spelling."""
    return [a.replace("{reg}", reg) for a in BATTERY]


def evaluated_address(ptchunk_doc: dict) -> int:
    """The address a ``ptchunk ARG --json`` argument evaluated to: the chunk's address,
    or its user pointer when ptchunk took ARG as one (its note says ``-m assumed``)."""
    first = ptchunk_doc["chunks"][0]
    assumed = any("-m assumed" in n.get("message", "") for n in ptchunk_doc.get("notes", []))
    return first["mem"] if assumed else first["addr"]
