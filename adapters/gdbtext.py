"""Parsers for gdb's console output (``info proc mappings``, ``ptype/o``, values).

Used by the gdb/MI adapter, which only sees gdb's text.  No debugger module here.
"""

from __future__ import annotations

import re
from typing import Optional

from multiheap.target import Region, TypeLayout

_MAPPING = re.compile(r"\s*(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+"
                      r"(?:\s+([rwxps-]{4}))?\s*(.*)$")
_SECTION = re.compile(r"(0x[0-9a-f]+)->(0x[0-9a-f]+)\s+at\s+\S+:\s+(load\d*\S*)\s+(.*)")


def proc_mappings(text: str) -> list[Region]:
    """Regions from ``info proc mappings`` (live process or core's NT_FILE)."""
    out = []
    for line in text.splitlines():
        m = _MAPPING.match(line)
        if m:
            out.append(Region(int(m.group(1), 16), int(m.group(2), 16),
                              m.group(3) or "rw-p", m.group(4).strip()))
    return out


def core_sections(text: str) -> list[Region]:
    """The core file's load sections from ``maintenance info sections -all-objects``."""
    out = []
    core = False
    for line in text.splitlines():
        if line.startswith("Core file"):
            core = True
        elif line.startswith(("Object file", "Exec file")):
            core = False
        m = _SECTION.search(line)
        if core and m:
            flags = m.group(4)
            perms = "r" + ("-" if "READONLY" in flags else "w") + ("x" if "CODE" in flags else "-")
            out.append(Region(int(m.group(1), 16), int(m.group(2), 16), perms, ""))
    return out


def merge_core_regions(named: list[Region], sections: list[Region]) -> list[Region]:
    """A core's file mappings plus the dumped anonymous parts they do not cover."""
    extra = [r for r in sections
             if not any(n.start < r.end and r.start < n.end for n in named)]
    return sorted(named + extra, key=lambda r: r.start)


_PTYPE_LINE = re.compile(r"^/\*\s*(?:(\d+)(?::\s*\d+)?\s*\|)?\s*(\d+)\s*\*/\s*(.*)$")
_TOTAL = re.compile(r"/\* total size \(bytes\):\s*(\d+)\s*\*/")
_FUNC_PTR = re.compile(r"\(\s*\*\s*(\w+)\s*\)")
_NAME = re.compile(r"(\w+)\s*(?:\[[^\]]*\])*\s*(?::\s*\d+)?\s*;\s*$")


def ptype_layout(name: str, text: str) -> Optional[TypeLayout]:
    """Top-level fields of ``ptype/o struct NAME`` output: {field: (offset, size)}."""
    fields: dict[str, tuple[int, int]] = {}
    depth = 0
    total: Optional[int] = None
    nested = (0, 0)
    for raw in text.splitlines():
        line = raw.strip()
        if depth == 0:
            if "type = " in line and line.endswith("{"):
                depth = 1
            continue
        m = _PTYPE_LINE.match(line)
        if m:
            body = m.group(3)
            here = (int(m.group(1) or 0), int(m.group(2)))
            if body.endswith("{"):
                if depth == 1:
                    nested = here
                depth += 1
            elif depth == 1:
                f = _FUNC_PTR.search(body) or _NAME.search(body)
                if f:
                    fields[f.group(1)] = here
        elif line.startswith("/*"):
            t = _TOTAL.search(line)
            if t and depth == 1:
                total = int(t.group(1))
        elif line.startswith("}"):
            depth -= 1
            if depth == 1:  # "} name;" closes a nested struct or union member
                f = _NAME.search(line)
                if f:
                    fields[f.group(1)] = nested
            elif depth == 0:
                break
    if total is None:
        return None
    return TypeLayout(name, total, fields)


_VALUE = re.compile(r"^(?:\([^)]*\)\s*)?(-?0x[0-9a-fA-F]+|-?\d+)\b")


def parse_value(text: str, bits: int = 64) -> Optional[int]:
    """An integer from gdb's printed value (``(T *) 0x10 <sym>``, ``42``); None if not."""
    m = _VALUE.match(text.strip())
    if not m:
        return None
    v = int(m.group(1), 0)
    return v & ((1 << bits) - 1) if v < 0 else v


# -- read-only evaluation -----------------------------------------------------------------
def write_operator(expr: str) -> Optional[str]:
    """The first assignment (``=``, ``+=``, ``<<=``...), increment or decrement in a gdb
    expression, outside string and character literals; None if it has none.

    Every write a C (or Ada, Pascal, Rust...) expression can make goes through one of
    these operators or a function call.  gdb guards memory writes and calls itself
    (``may-write-memory``, ``may-call-functions``), but gdb 13 refuses to change
    ``may-write-registers`` while a process is live, and a register-held local
    (``i=3``) or ``$rbx=1`` would be written; so assignments are refused before gdb
    sees them, whatever they assign to (gdb's convenience variables too).
    """
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'":  # a literal (or a quoted symbol name): skip to its closing quote
            i += 1
            while i < n and expr[i] != c:
                i += 2 if expr[i] == "\\" else 1
        elif c in "+-" and expr.startswith(c * 2, i):
            return c * 2
        elif c == "=":
            prev = expr[i - 1] if i else ""
            doubled = i >= 2 and expr[i - 2] == prev
            if expr.startswith("==", i):
                i += 1  # ==
            elif prev == "!" or (prev and prev in "<>" and not doubled):
                pass  # !=, <=, >= (but <<= and >>= assign)
            elif prev and prev in "<>":
                return prev * 2 + "="
            else:
                return (prev if prev and prev in "+-*/%&|^:" else "") + "="
        i += 1
    return None


def _shown(expr: str, limit: int = 60) -> str:
    return repr(expr if len(expr) <= limit else expr[:limit - 3] + "...")


def write_refusal(expr: str) -> str:
    """The one line refusing an argument that assigns or increments; the same
    words as the lldb host's (multiheap/expr.py)."""
    return f"{_shown(expr)} would write to the target (multiheap only reads)"


def guard_refusal(expr: str, gdb_error: str) -> Optional[str]:
    """The one line for a write gdb's guards stopped (``may-write-memory`` and
    ``may-write-registers`` off), or None for any other error."""
    for what in ("memory", "registers"):
        if f"Writing to {what} is not allowed" in gdb_error:
            return f"{_shown(expr)} would write to the target's {what} (multiheap only reads)"
    return None
