"""What a pointer points at: ``<main_arena+0x60>``, ``<_IO_2_1_stdout_>``, ``[heap]``.

The engine reads the symbol tables (``.symtab``, else ``.dynsym``, plus the build-id
debug file's ``.symtab`` when there is one) of each module the target has loaded, from
the module's file on disk, and places them at the module's load address (its lowest
mapping).  So every host annotates the same pointer the same way, whatever its own
symbol look-up would say.  A pointer into no module is named by its mapping
(``[heap]``, ``[stack]``, any arena's heap), else not at all.
"""

from __future__ import annotations

import bisect
import os
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional

from multiheap.elffile import BadInputError, read_elf
from multiheap.errors import MultiheapError
from multiheap.memory import same_file
from multiheap.target import Region, Target

STT_OBJECT, STT_FUNC, STT_TLS, STT_GNU_IFUNC = 1, 2, 6, 10
ET_EXEC, PT_LOAD = 2, 1


@dataclass
class SymbolTable:
    """One file's symbols at link-time values, sorted by value."""

    values: list[int] = field(default_factory=list)
    entries: list[tuple[int, int, str]] = field(default_factory=list)  # (value, size, name)
    min_vaddr: int = 0
    exec_file: bool = False

    def find(self, value: int) -> Optional[tuple[str, int]]:
        """(name, offset) of the symbol holding link-time ``value``, or None."""
        i = bisect.bisect_right(self.values, value) - 1
        # symbols may nest (an alias of zero size after a sized one): look back a little
        for j in range(i, max(i - 8, -1), -1):
            start, size, name = self.entries[j]
            if start <= value < start + max(size, 1):
                return name, value - start
        return None


def _sections(data: bytes, e: str, is64: bool) -> list[tuple[str, int, int, int, int]]:
    """(name, type, offset, size, link) of each section header."""
    if is64:
        shoff = struct.unpack_from(e + "Q", data, 0x28)[0]
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, 0x3A)
        fmt = e + "IIQQQQIIQQ"
    else:
        shoff = struct.unpack_from(e + "I", data, 0x20)[0]
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, 0x2E)
        fmt = e + "IIIIIIIIII"
    heads = []
    for i in range(shnum):
        off = shoff + i * shentsize
        if off + struct.calcsize(fmt) > len(data):
            return []
        name, stype, _fl, _addr, offset, size, link, _info, _al, _es = \
            struct.unpack_from(fmt, data, off)
        heads.append((name, stype, offset, size, link))
    if not heads or shstrndx >= len(heads):
        return []
    names = heads[shstrndx]
    strs = data[names[2]:names[2] + names[3]]
    out = []
    for name, stype, offset, size, link in heads:
        end = strs.find(b"\0", name)
        out.append((strs[name:end].decode(errors="replace"), stype, offset, size, link))
    return out


@lru_cache(maxsize=64)
def read_symbols(path: str) -> Optional[SymbolTable]:
    """The data and code symbols of the ELF file ``path`` (None if unreadable)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:  # the header and program headers: the project's one ELF reader
        elf = read_elf(path, data)
    except BadInputError:
        return None
    is64, e = elf.bits == 64, elf.fmt
    try:
        secs = _sections(data, e, is64)
    except struct.error:
        return None
    vaddrs = [vaddr for ptype, _off, vaddr, _fs, _ms in elf.phdrs if ptype == PT_LOAD]
    table = SymbolTable(min_vaddr=min(vaddrs, default=0) & ~0xFFF,
                        exec_file=elf.etype == ET_EXEC)
    fmt, size = (e + "IBBHQQ", 24) if is64 else (e + "IIIBBH", 16)
    best: dict[int, tuple[int, int, str]] = {}
    for kind in (2, 11):  # SHT_SYMTAB, then SHT_DYNSYM
        for _name, stype, offset, length, link in secs:
            if stype != kind or link >= len(secs):
                continue
            strtab = data[secs[link][2]:secs[link][2] + secs[link][3]]
            raw = data[offset:offset + length]
            for ent in struct.iter_unpack(fmt, raw[:len(raw) - len(raw) % size]):
                if is64:
                    nm, info, shndx, value, sz = ent[0], ent[1], ent[3], ent[4], ent[5]
                else:
                    nm, value, sz, info, shndx = ent[0], ent[1], ent[2], ent[3], ent[5]
                if shndx == 0 or value == 0 or info & 0xF not in (
                        STT_OBJECT, STT_FUNC, STT_GNU_IFUNC):
                    continue
                end = strtab.find(b"\0", nm)
                name = strtab[nm:end].decode(errors="replace")
                if not name:
                    continue
                glob = info >> 4 != 0
                old = best.get(value)
                # one name per address: sized over unsized, global over local, the
                # name without leading underscores over its aliases
                rank = (sz > 0, glob, not name.startswith("__"), -len(name))
                if old is None or rank > old[0]:
                    best[value] = (rank, sz, name)  # type: ignore[assignment]
        if best and kind == 2:
            break  # .symtab holds .dynsym's symbols too
    for value in sorted(best):
        _rank, sz, name = best[value]  # type: ignore[misc]
        table.values.append(value)
        table.entries.append((value, sz, name))
    return table


def _debug_table(path: str) -> Optional[SymbolTable]:
    """The build-id debug file's symbols of ``path`` (libc6-dbg's, say), if installed."""
    from multiheap.debugfile import debug_file_for
    from multiheap.elffile import file_build_id

    bid = file_build_id(path)
    found = debug_file_for(bid) if bid else None
    return read_symbols(str(found)) if found is not None else None


@dataclass
class _Placed:
    start: int
    end: int
    bias: int
    name: str
    tables: list[SymbolTable]


class Symbolizer:
    """Names the targets of pointers, for the text builder (built once per stop)."""

    def __init__(self, target: Target, heap: Any = None) -> None:
        try:
            regions = sorted(target.regions(), key=lambda r: r.start)
        except MultiheapError:
            regions = []
        self.regions: list[Region] = regions
        self._starts = [r.start for r in regions]
        self.placed: list[_Placed] = []
        try:
            modules = target.modules()
        except MultiheapError:
            modules = []
        for m in modules:
            mine = [r for r in regions if same_file(r.name, m.path)]
            table = read_symbols(m.path) if m.path and os.path.isfile(m.path) else None
            if table is None:
                continue
            tables = [table]
            debug = _debug_table(m.path)
            if debug is not None:
                tables.append(debug)
            if table.exec_file:
                bias = 0
            else:
                low = min((r.start for r in mine), default=m.base or 0)
                bias = low - table.min_vaddr
            start = min((r.start for r in mine), default=bias)
            end = max((r.end for r in mine), default=bias)
            name = os.path.basename(m.path)
            self.placed.append(_Placed(start, end, bias, name, tables))
        self.heaps: list[tuple[int, int]] = []
        if heap is not None:
            try:
                self.heaps = [(s.start, s.end) for a in heap.arenas() for s in a.heaps]
            except MultiheapError:
                pass
        self._cache: dict[int, Optional[str]] = {}

    def __call__(self, addr: Any) -> Optional[str]:
        """``<sym+off>``, ``[heap]``, ``[stack]`` ... for ``addr``, or None."""
        if not isinstance(addr, int) or isinstance(addr, bool) or addr < 0x1000:
            return None
        if addr in self._cache:
            return self._cache[addr]
        found = self._name(addr)
        if len(self._cache) < 100_000:
            self._cache[addr] = found
        return found

    def _name(self, addr: int) -> Optional[str]:
        # Only symbols name a module's memory: hosts split and name its mappings
        # (.bss, relro) differently, and the answer must be the same in every host.
        for p in self.placed:
            for t in p.tables:
                hit = t.find(addr - p.bias)
                if hit is not None:
                    name, off = hit
                    return f"<{name}+{off:#x}>" if off else f"<{name}>"
        for lo, hi in self.heaps:
            if lo <= addr < hi:
                return "[heap]"
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr in self.regions[i]:
            name = self.regions[i].name
            if name.startswith("["):
                return name
        return None


def for_session(session: Any) -> Optional[Symbolizer]:
    """The session's symbolizer for the target's current stop (made on first use)."""
    try:
        gen = session.target.generation()
    except Exception:  # a host without a target: no annotations
        return None
    kept = getattr(session, "_multiheap_symbols", None)
    if kept is not None and kept[0] == gen:
        return kept[1]
    try:
        heap = session.heap()
    except Exception:
        heap = None
    sym = Symbolizer(session.target, heap)
    session._multiheap_symbols = (gen, sym)
    return sym


class LazySymbols:
    """A symbolizer made only when a builder first asks (plain commands pay nothing)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        try:
            self.pointer_size = int(session.target.pointer_size)
        except Exception:  # no target yet
            self.pointer_size = 8
        self._sym: Optional[Symbolizer] = None
        self._made = False

    def __call__(self, addr: Any) -> Optional[str]:
        if not self._made:
            self._made = True
            self._sym = for_session(self.session)
        return self._sym(addr) if self._sym is not None else None
