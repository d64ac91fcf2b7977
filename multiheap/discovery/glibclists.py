"""libc's static TLS through ld.so's ``link_map``, read with the host's type layouts.

ld.so's ``link_map`` of a module holds ``l_tls_offset``; a TLS variable of that module
is ``tp - l_tls_offset + st_value`` (variant II: x86_64 and i386; variant I puts the
block above the thread pointer).  It needs the layouts of glibc's structs from debug
info; without them it answers nothing and the next route is tried.  Glibc's thread
lists are read in :mod:`.pthreads`.  Only reads.
"""

from __future__ import annotations

import os
from typing import Optional

from multiheap import arch, debugfile, glibc
from multiheap.errors import MultiheapError
from multiheap.target import Target

_MAPS = 4096


class _Reader:
    def __init__(self, target: Target) -> None:
        self.t = target
        self.sz = target.pointer_size
        self.order = target.endianness

    def word(self, addr: int, signed: bool = False) -> int:
        return int.from_bytes(self.t.read(addr, self.sz), self.order, signed=signed)

    def cstring(self, addr: int, limit: int = 4096) -> str:
        out = b""
        while addr and len(out) < limit:
            at = addr + len(out)
            part = self.t.read(at, min(64, 0x1000 - at % 0x1000))  # not past its page
            end = part.find(b"\0")
            if end >= 0:
                return (out + part[:end]).decode(errors="replace")
            out += part
        return out.decode(errors="replace")


def struct_offsets(target: Target, struct: str, *names: str) -> Optional[tuple[int, ...]]:
    """Offsets of fields ``names`` in ``struct struct`` (host debug info), or None."""
    try:
        lay = target.type_layout(struct)
    except MultiheapError:
        return None
    if lay is None or not all(n in lay.fields for n in names):
        return None
    return tuple(lay.fields[n][0] for n in names)


def _tls_symbol_value(target: Target, name: str) -> Optional[int]:
    """``st_value`` of libc's TLS symbol ``name``: its debug file's, else its own
    ``.symtab``'s (an unstripped libc)."""
    lib = debugfile.libc_debug(target)
    if lib is not None and lib.file.tls_value(name) is not None:
        return lib.file.tls_value(name)
    try:
        libc = glibc.find_libc(target)
    except MultiheapError:
        return None
    own = debugfile.read_debug_file(libc.path) if libc is not None and libc.path else None
    return own.tls_value(name) if own is not None else None


def libc_tls_offset(target: Target) -> Optional[int]:
    """libc's ``link_map.l_tls_offset`` (its static TLS block ends that far below each
    thread pointer), or None without ld.so's debug info."""
    offs = struct_offsets(target, "link_map", "l_name", "l_next", "l_tls_offset")
    r_debug = target.symbol("_r_debug")
    if offs is None or r_debug is None:
        return None
    try:
        libc = glibc.find_libc(target)
    except MultiheapError:
        return None
    if libc is None:
        return None
    rmap = struct_offsets(target, "r_debug", "r_map")
    name_off, next_off, tls_off = offs
    rd = _Reader(target)
    want = os.path.basename(os.path.realpath(libc.path))
    try:
        lm = rd.word(r_debug + (rmap[0] if rmap else rd.sz))
        seen: set[int] = set()
        while lm and lm not in seen and len(seen) < _MAPS:
            seen.add(lm)
            lname = rd.cstring(rd.word(lm + name_off))
            if lname and os.path.basename(os.path.realpath(lname)) == want:
                return rd.word(lm + tls_off, signed=True)
            lm = rd.word(lm + next_off)
    except MultiheapError:
        return None
    return None


def static_tls_offset(target: Target, name: str) -> Optional[int]:
    """How far below each thread pointer libc's thread-local ``name`` lies (link_map),
    or None."""
    value = _tls_symbol_value(target, name)
    if value is None:
        return None
    block = libc_tls_offset(target)
    if block is None or block <= 0:
        return None
    if arch.tls_variant(target.arch) == 1:  # arm, aarch64: the block is at the tcb + offset
        return -(block + value + arch.tcb_offset(target.arch, target.pointer_size))
    return block - value
