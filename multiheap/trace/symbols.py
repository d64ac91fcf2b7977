"""Where the allocator's entry points are: libc's dynamic symbols plus its load base.

Read from libc's own file (multiheap.elffile), so every host finds the same addresses with or
without debug info, and aliases (``aligned_alloc`` = ``memalign`` on some versions)
collapse to one breakpoint.
"""

from __future__ import annotations

import os

from multiheap.debugfile import module_base
from multiheap.elffile import SHT_DYNSYM, STT_FUNC, BadInputError, read_file, symbols
from multiheap.errors import MultiheapError, UsageError
from multiheap.glibc import find_libc
from multiheap.target import Target
from multiheap.trace.records import OPS


def entry_points(target: Target) -> tuple[dict[int, str], list[tuple[int, int]]]:
    """Address -> op for each allocator entry point the running libc has (the first
    name in :data:`OPS` order wins for aliases), and libc's mapped address ranges."""
    try:
        libc = find_libc(target)
    except MultiheapError:
        libc = None
    if libc is None:
        raise UsageError("libc is not loaded yet (break at main, or run, first)")
    base = module_base(target, libc)
    if base is None:
        raise UsageError(f"cannot tell where {libc.path} is loaded")
    values = dynamic_symbols(libc.path)
    out: dict[int, str] = {}
    for op in OPS:
        v = values.get(op)
        if v and base + v not in out:
            out[base + v] = op
    if not any(op == "malloc" for op in out.values()):
        raise UsageError(f"no malloc in {libc.path}'s dynamic symbols")
    ranges = [(r.start, r.end) for r in target.regions()
              if r.name and os.path.realpath(r.name) == os.path.realpath(libc.path)]
    return out, ranges


def dynamic_symbols(path: str) -> dict[str, int]:
    """Function symbols of an ELF file's .dynsym (value relative to the load base).
    Versioned duplicates: the default version (the one the dynamic linker binds)."""
    out: dict[str, int] = {}
    try:
        elf, data = read_file(path)
    except BadInputError as e:
        raise UsageError(str(e)) from None
    for sym in symbols(elf, data, SHT_DYNSYM, names=OPS):
        if sym.type == STT_FUNC and sym.value and sym.shndx != 0:
            out.setdefault(sym.name, sym.value)
    return out


def page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 4096
