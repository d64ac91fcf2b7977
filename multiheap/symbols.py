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
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional

from multiheap.elffile import (
    SHT_DYNSYM,
    SHT_SYMTAB,
    STT_FUNC,
    STT_GNU_IFUNC,
    STT_OBJECT,
    BadInputError,
    read_file,
    symbols,
)
from multiheap.errors import MultiheapError
from multiheap.memory import same_file
from multiheap.target import Region, Target

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


@lru_cache(maxsize=64)
def read_symbols(path: str) -> Optional[SymbolTable]:
    """The data and code symbols of the ELF file ``path`` (None if unreadable)."""
    try:  # the project's one ELF reader: headers, sections, symbol tables
        elf, data = read_file(path)
    except BadInputError:
        return None
    vaddrs = [vaddr for ptype, _off, vaddr, _fs, _ms in elf.phdrs if ptype == PT_LOAD]
    table = SymbolTable(min_vaddr=min(vaddrs, default=0) & ~0xFFF,
                        exec_file=elf.etype == ET_EXEC)
    best: dict[int, tuple[tuple, int, str]] = {}
    for kind in (SHT_SYMTAB, SHT_DYNSYM):
        for sym in symbols(elf, data, kind):
            if sym.shndx == 0 or sym.value == 0 or not sym.name or sym.type not in (
                    STT_OBJECT, STT_FUNC, STT_GNU_IFUNC):
                continue
            old = best.get(sym.value)
            # one name per address: sized over unsized, global over local, the
            # name without leading underscores over its aliases
            rank = (sym.size > 0, sym.bind != 0, not sym.name.startswith("__"),
                    -len(sym.name))
            if old is None or rank > old[0]:
                best[sym.value] = (rank, sym.size, sym.name)
        if best and kind == SHT_SYMTAB:
            break  # .symtab holds .dynsym's symbols too
    for value in sorted(best):
        _rank, sz, name = best[value]
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
