"""libc's separate debug file, found by build-id, for hosts that do not read it.

radare2 (and gdb/MI on some cores) cannot resolve ``main_arena``, ``mp_`` or the
thread-local ``tcache`` when libc is stripped, although the machine has its debug
file at ``/usr/lib/debug/.build-id/xx/rest.debug``.  This module reads that file
directly with multiheap.elffile (sections, then only the wanted names of ``.symtab``,
found by their string-table offsets: naming every symbol of libc costs half a second).
Besides ``/usr/lib/debug`` it searches ``MULTIHEAP_DEBUG_DIRS`` (colon-separated,
searched first; the CLI's ``--debug-dir`` sets it for r2).  No debugger is imported here.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

from multiheap import arch, linkmap
from multiheap.elffile import (
    PT_TLS,
    SHT_SYMTAB,
    STT_OBJECT,
    STT_TLS,
    BadInputError,
    file_build_id,
    loaded_build_id,
    read_file,
    sections,
    symbols,
)
from multiheap.errors import MultiheapError
from multiheap.glibc import find_libc
from multiheap.memory import lowest_mapping
from multiheap.target import Module, Target, Thread

DEBUG_DIRS_ENV = "MULTIHEAP_DEBUG_DIRS"  # extra debug roots, ':'-separated


def extra_debug_dirs() -> list[str]:
    """The user's extra debug-file directories (``MULTIHEAP_DEBUG_DIRS``), in order."""
    return [_debug_root(d) for d in os.environ.get(DEBUG_DIRS_ENV, "").split(":") if d]


def _debug_root(path: str) -> str:
    """The directory holding ``.build-id``: ``path``, or a sysroot's ``usr/lib/debug``."""
    sub = os.path.join(path, "usr", "lib", "debug")
    if not os.path.isdir(os.path.join(path, ".build-id")) and \
            os.path.isdir(os.path.join(sub, ".build-id")):
        return sub
    return path


def add_debug_dirs(dirs: list[str]) -> None:
    """Search ``dirs`` first: put them in ``MULTIHEAP_DEBUG_DIRS`` (this process and the
    debuggers it starts, so r2's ``#!pipe`` children see them too)."""
    merged = list(dict.fromkeys([*dirs, *extra_debug_dirs()]))
    if merged:
        os.environ[DEBUG_DIRS_ENV] = ":".join(merged)


def resolve_debug_dir(path: str) -> str:
    """``path`` as debuggers want it: the directory that holds ``.build-id``.

    A sysroot (``ROOT`` with ``ROOT/usr/lib/debug/.build-id``) stands for its
    ``usr/lib/debug``.  Raises MultiheapError when ``path`` is not a directory.
    """
    if not os.path.isdir(path):
        why = "does not exist" if not os.path.exists(path) else "is not a directory"
        raise MultiheapError(f"debug directory {path} {why}")
    return _debug_root(os.path.abspath(path))


def debug_dirs() -> list[str]:
    """Where to look for ``.build-id/xx/rest.debug``: the env's dirs, then the system's.

    ``MULTIHEAP_NO_DEBUG_FILES=1`` turns the search off (tests of the no-debug paths).
    """
    if os.environ.get("MULTIHEAP_NO_DEBUG_FILES"):
        return []
    return extra_debug_dirs() + ["/usr/lib/debug"]


def debug_file_for(build_id: str) -> Optional[Path]:
    """The debug file of ``build_id`` (hex), or None."""
    bid = build_id.lower()
    if len(bid) < 4:
        return None
    for d in debug_dirs():
        p = Path(d) / ".build-id" / bid[:2] / f"{bid[2:]}.debug"
        if p.is_file():
            return p
    return None


# -- build-id: from the module, its file, or its first mapped page ---------------------
def build_id(target: Target, module: Module) -> Optional[str]:
    """The module's GNU build-id: as the host reports it, from its file, or from memory."""
    if module.build_id:
        return module.build_id.lower()
    found = file_build_id(module.path)  # None when unreadable or truncated
    if found:
        return found
    base = module_base(target, module)
    if base is None:
        return None
    try:
        return loaded_build_id(module.path, lambda off, n: target.read(base + off, n))
    except (MultiheapError, struct.error):
        return None


def module_base(target: Target, module: Module) -> Optional[int]:
    """Load address of a module: the host's, else its lowest mapping by file name, else
    ld.so's link_map (a host without a memory map: qemu's stub)."""
    if module.base:
        return module.base
    try:
        regions = target.regions()
    except MultiheapError:
        return None
    found = lowest_mapping(regions, module.path)
    if found is None:
        found = linkmap.link_map_base(target, module.path)
    return found


# -- the debug file's symbols ----------------------------------------------------------
@dataclass
class DebugFile:
    """Symbols of one debug file (values are link-time: add the module's base)."""

    path: Path
    symbols: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (value, type)
    tls_size: Optional[int] = None

    def value(self, name: str) -> Optional[int]:
        s = self.symbols.get(name)
        return None if s is None or s[1] == STT_TLS else s[0]

    def tls_value(self, name: str) -> Optional[int]:
        s = self.symbols.get(name)
        return s[0] if s is not None and s[1] == STT_TLS else None


WANTED = ("main_arena", "mp_", "global_max_fast", "tcache")


@lru_cache(maxsize=8)
def read_debug_file(path: str, names: tuple[str, ...] = WANTED) -> Optional[DebugFile]:
    """Read ``names`` from the ``.symtab`` of ``path``; None if it is not a usable ELF."""
    try:
        elf, data = read_file(path)
    except BadInputError:
        return None
    if not any(sec.type == SHT_SYMTAB for sec in sections(elf, data)):
        return None
    tls = next((ms for pt, _o, _v, _fs, ms in elf.phdrs if pt == PT_TLS), None)
    out = DebugFile(Path(path), tls_size=tls)
    for sym in symbols(elf, data, SHT_SYMTAB, names=names):
        if sym.shndx == 0:  # undefined
            continue
        prev = out.symbols.get(sym.name)
        if prev is None or sym.type in (STT_OBJECT, STT_TLS):  # OBJECT/TLS over FILE etc.
            out.symbols[sym.name] = (sym.value, sym.type)
    return out


@dataclass
class LibcDebug:
    """libc's debug file matched to the running libc: addresses ready to use."""

    file: DebugFile
    module: Module
    base: int

    @property
    def how(self) -> str:
        return f"libc debug file {self.file.path}"

    def address(self, name: str) -> Optional[int]:
        v = self.file.value(name)
        return None if v is None else self.base + v


def libc_debug(target: Target) -> Optional[LibcDebug]:
    """libc's build-id debug file for this target, or None (no libc, no file)."""
    try:
        libc = find_libc(target)
    except MultiheapError:
        return None
    if libc is None:
        return None
    bid = build_id(target, libc)
    path = debug_file_for(bid) if bid else None
    if path is None:
        return None
    dbg = read_debug_file(str(path))
    base = module_base(target, libc)
    if dbg is None or base is None:
        return None
    return LibcDebug(dbg, libc, base)


# -- thread-local variables through the DTV --------------------------------------------
def tls_address(target: Target, name: str, thread: Thread, tp: Optional[int],
                check: Optional[Callable[[int], bool]] = None) -> Optional[int]:
    """Address of libc's thread-local ``name`` in ``thread`` (thread pointer ``tp``),
    from the debug file.

    libc's TLS block is ``dtv[modid]`` of the thread's DTV (``tcbhead_t.dtv``, one
    word after the thread pointer).  libc's module id is not known without ld.so's
    link_map, so each static-TLS entry below the thread pointer is a candidate.  The
    static blocks lie side by side below the pointer (x86's TLS variant II), so a block
    with less room than libc's PT_TLS size before the next block (or the pointer) is
    another module's: a program with its own ``__thread`` variables (perl) has one.
    When several remain, ``check(slot)`` picks the plausible ones, a slot holding a
    pointer before one holding 0 (a 0 is plausible anywhere).
    On arm and aarch64 (TLS variant I) the DTV is the thread pointer's first word and
    the blocks lie above the pointer, side by side upwards.
    """
    lib = libc_debug(target)
    if lib is None:
        return None
    off = lib.file.tls_value(name)
    if off is None:
        return None
    if not tp:  # the thread's pointer, as discovery found it
        return None
    ps = target.pointer_size
    order = "little" if target.endianness == "little" else "big"

    def ptr(addr: int) -> int:
        return int.from_bytes(target.read(addr, ps), order)

    above = arch.tls_variant(target.arch) == 1  # arm: tcbhead_t {dtv, ...} at tp
    try:
        dtv = ptr(tp + arch.tcb_offset(target.arch, ps) if above else tp + ps)
        count = ptr(dtv - 2 * ps)  # dtv[-1].counter: slots allocated
        blocks = []
        for modid in range(1, min(count, 64) + 1):
            block = ptr(dtv + 2 * ps * modid)
            if block in (0, (1 << 8 * ps) - 1) or \
                    not 0 <= (block - tp if above else tp - block - 1) < 1 << 20:
                continue
            blocks.append(block)
    except (MultiheapError, OverflowError):
        return None
    need = max(lib.file.tls_size or 0, off + ps)
    end = tp + (1 << 20) if above else tp  # variant I's last block has no bound above
    cands = [b + off for b in blocks
             if min([x for x in blocks if x > b] + [end]) - b >= need]
    if len(cands) > 1 and check is not None:
        ranked = []
        for c in cands:
            if check(c):
                try:
                    ranked.append((ptr(c) == 0, c))
                except MultiheapError:
                    continue
        if ranked:
            cands = [c for _zero, c in sorted(ranked, key=lambda x: x[0])]
    return cands[0] if cands else None


def libc_symbol(target: Target, name: str) -> Optional[int]:
    """Run-time address of libc's (non-TLS) symbol ``name`` from its debug file, or None."""
    lib = libc_debug(target)
    return None if lib is None else lib.address(name)
