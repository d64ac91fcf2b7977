"""Reading a trace file back: records, a chunk's history, filters, one-line texts."""

from __future__ import annotations

import json
from typing import Iterator, Optional

from multiheap.errors import UsageError


def records(path: str) -> Iterator[dict]:
    """Every record of a trace file, in file order (a torn last line is skipped)."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read trace {path}: {e.strerror}") from None
    with f:
        for line in f:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def history(path: str, addr: int) -> list[dict]:
    """Every record about a chunk holding ``addr``: the calls that returned it (or a
    block containing it), freed or reallocated it, and errors naming it."""
    sizes: dict[int, int] = {}  # start -> size, for blocks that contain addr
    out = []
    for r in records(path):
        ptr, res = r.get("ptr"), r.get("result")
        hit = False
        if ptr and (ptr == addr or (ptr in sizes and ptr <= addr < ptr + sizes[ptr])):
            hit = True
            if r.get("error") is None and r.get("op") != "write":
                sizes.pop(ptr, None)
        if r.get("op") == "write" and r.get("addr") is not None and ptr in sizes:
            hit = True
        if res and res <= addr < res + max(r.get("size") or 0, 1):
            sizes[res] = max(r.get("size") or 0, 1)
            hit = True
        if hit and r.get("op") != "summary":
            out.append(r)
    return out


def select(path: str, op: Optional[str] = None, tid: Optional[int] = None,
           count: Optional[int] = None, errors: bool = False) -> list[dict]:
    """Records matching the filters; with ``count``, the last ``count`` of them."""
    out: list[dict] = []
    for r in records(path):
        if r.get("op") == "summary":
            continue
        if op and r.get("op") != op and not (op == "error" and r.get("error")):
            continue
        if tid is not None and r.get("tid") != tid:
            continue
        if errors and not r.get("error"):
            continue
        out.append(r)
        if count is not None and len(out) > count * 2 + 1024:
            del out[:len(out) - count]
    return out[-count:] if count is not None else out


def _hex(v: Optional[int]) -> str:
    return "-" if v is None else f"{v:#x}"


def where(bt: list[dict]) -> str:
    for f in bt:
        if f.get("function"):
            return f["function"]
    return f"{bt[0]['pc']:#x}" if bt else "?"


def describe(r: dict) -> str:
    """One record in one line (for ``pttrace show`` and ``pthistory``)."""
    op = r.get("op", "?")
    if op == "summary":
        return summary_line(r)
    if op == "free":
        call = f"free({_hex(r.get('ptr'))})"
    elif op == "write":
        call = f"write at {_hex(r.get('addr'))} into {_hex(r.get('ptr'))}"
    elif op in ("realloc", "reallocarray"):
        call = f"{op}({_hex(r.get('ptr'))}, {r.get('size', 0):#x}) = {_hex(r.get('result'))}"
    else:
        call = f"{op}({r.get('size', 0):#x}) = {_hex(r.get('result'))}"
    text = f"#{r.get('seq')} [{r.get('tid')}] {call} in {where(r.get('backtrace') or [])}"
    if r.get("depth"):
        text += " (inside the allocator)"
    if r.get("error"):
        text += f"  ERROR: {r['error']}"
        fb = r.get("freed_by")
        if fb:
            text += f" (freed by #{fb['seq']} in {where(fb.get('backtrace') or [])})"
        if r.get("chunk") is not None:
            text += f" (chunk {r['chunk']:#x} + {r.get('offset', 0):#x})"
    return text


def summary_line(s: dict) -> str:
    key = "leaked" if "leaks" in s else "live"
    return (f"{s.get('calls', 0)} calls, {s.get('errors', 0)} errors, "
            f"{s.get(key + '_chunks', 0)} chunks {'leaked' if key == 'leaked' else 'live'} "
            f"({s.get(key + '_bytes', 0)} bytes); end: {s.get('end')}")


def summary_lines(s: dict, groups: int = 10) -> list[str]:
    """The summary, then the largest leak groups with their allocation sites."""
    lines = [summary_line(s)]
    for g in (s.get("leaks") or s.get("live") or [])[:groups]:
        bt = " <- ".join(f.get("function") or f"{f['pc']:#x}" for f in g["backtrace"][:4])
        lines.append(f"  {g['bytes']} bytes in {g['count']} chunks from {bt or '?'}")
    return lines
