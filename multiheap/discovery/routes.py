"""Routes to the glibc version, main_arena, mp_ and global_max_fast.

Each fact goes through one ordered chain, first answer wins, every rejection kept:
the user's ``ptconfig`` override; the host's debug info; libc's build-id debug file;
libc's (or a static executable's) own ELF file, where the structure's initialiser
sits in ``.data``; a memory scan.  Routes that find a structure by *where* it is
(symbol, debug file, ELF initialiser) are not refused because its fields look wrong:
damage is a warning.  Only the memory scan finds by content, so only its guesses
must pass the invariants of :mod:`multiheap.discovery.evidence`.
"""

from __future__ import annotations

import os
from typing import Optional

from multiheap import debugfile, glibc
from multiheap.discovery import evidence
from multiheap.discovery.facts import Chain, Fact, LibcFile, Overrides
from multiheap.errors import MultiheapError, NotFoundError
from multiheap.layouts import Params, Version, layout
from multiheap.target import Module, Region, Target

OVERRIDE_HINT = "ptconfig --main-arena ADDR --mp ADDR (and --glibc X.Y) set them by hand"
FORCED = "set with ptconfig"


def version(target: Target, ov: Overrides) -> tuple[Version, Fact]:
    """The glibc version: override, libc's banner (file, memory), the executable's."""
    chain = Chain()
    found: Optional[Version] = None
    how = ""
    if ov.version is not None:
        found, how = ov.version, FORCED
    libc = glibc.find_libc(target) if found is None else None
    if found is None and libc is not None:
        found = glibc.version_from_file(libc.path)
        how = f"banner in {libc.path}"
        if found is None:
            chain.reject(how, "no banner (file unreadable or stripped of it)")
    if found is None:
        found = glibc.version_from_memory(target, libc)
        how = "banner in libc's memory"
        if found is None:
            chain.reject("banner in memory", "not in any readable region")
    if found is None and libc is None:
        exe = _main_module(target)
        if exe is not None:
            found = glibc.version_from_file(exe.path)
            how = f"banner in the executable {exe.path} (static)"
            if found is None:
                chain.reject(f"banner in {exe.path}", "none in the file")
    if found is None:
        raise NotFoundError(f"glibc not detected: {_no_glibc(target, libc)}; "
                            "if it is glibc, set it with: ptconfig --glibc X.Y")
    lo, hi = glibc.SUPPORTED
    if not lo <= found <= hi:
        raise NotFoundError(
            f"glibc {glibc.format_version(found)} is outside what multiheap knows "
            f"({glibc.format_version(lo)} to {glibc.format_version(hi)}); "
            "ptconfig --glibc X.Y forces a layout")
    return found, Fact(found[0] << 16 | found[1], how, tuple(chain.rejected))


def _main_module(target: Target) -> Optional[Module]:
    mods = target.modules()
    return mods[0] if mods else None


def _no_glibc(target: Target, libc: Optional[Module]) -> str:
    if libc is not None:
        return f"no glibc version banner in {libc.path}"
    musl = next((m.path for m in target.modules()
                 if "ld-musl" in os.path.basename(m.path)
                 or "libc.musl" in os.path.basename(m.path)), None)
    if musl:
        return (f"this program runs on musl libc ({musl}), not glibc: "
                "multiheap reads glibc's ptmalloc heaps only")
    return "no libc.so.6 among the target's modules and no banner in the executable"


def libc_file(target: Target) -> Optional[LibcFile]:
    """libc's file and load bias; a static executable's when there is no libc."""
    mod: Optional[Module] = glibc.find_libc(target)
    static = False
    if mod is None:
        mod, static = _main_module(target), True
        if mod is None:
            return None
    facts = evidence.read_elf(mod.path)
    if facts is None:
        return LibcFile(mod.path, None, None, "file unreadable", static)
    bias, how = evidence.load_bias(target, facts, mod.path)
    return LibcFile(mod.path, facts, bias, how, static)


def _libc_regions(target: Target, lf: Optional[LibcFile]) -> list[Region]:
    """libc's writable mappings (with the .bss after them), or every writable one."""
    regs = evidence.regions_of(target, lf.path if lf else None)
    return regs or [r for r in target.regions() if "w" in r.perms and r.size <= 16 << 20]


class Structures:
    """The chains for main_arena, mp_ and global_max_fast of one target."""

    def __init__(self, target: Target, p: Params, endian: str) -> None:
        self.target, self.p, self.endian = target, p, endian
        self.warnings: list[str] = []
        self._lf: Optional[LibcFile] = None
        self._lf_read = False

    @property
    def lf(self) -> Optional[LibcFile]:
        if not self._lf_read:
            self._lf, self._lf_read = libc_file(self.target), True
        return self._lf

    def symbol(self, chain: Chain, name: str) -> Optional[tuple[int, str]]:
        """Routes by name: the host's debug info, then libc's build-id debug file."""
        try:
            addr = self.target.symbol(name)
        except MultiheapError:
            addr = None
        if addr is not None:
            return addr, f"debug info (symbol {name})"
        chain.reject("host debug info", f"no symbol {name}")
        lib = debugfile.libc_debug(self.target)
        addr = lib.address(name) if lib is not None else None
        if addr is not None:
            return addr, f"debug info (symbol {name})"
        chain.reject("build-id debug file", "none for this libc" if lib is None
                     else f"no {name} in {lib.file.path}")
        return None

    def _file_route(self, chain: Chain, what: str, cands: list[int],
                    check) -> Optional[tuple[int, str]]:
        """A structure's initialiser in the ELF file: one place, found by where it is."""
        lf = self.lf
        if lf is None or lf.facts is None or lf.bias is None:
            chain.reject("libc's ELF file", "no file" if lf is None else
                         ("unreadable" if lf.facts is None else lf.bias_how))
            return None
        name = "the executable" if lf.static else "libc"
        addrs = [c + lf.bias for c in cands]
        if len(addrs) > 1:  # several initialisers look alike: the checks choose
            good = [a for a in addrs if check(a, None) is None]
            addrs = good[:1] if good else []
        if not addrs:
            chain.reject(f"{name}'s .data", f"no single {what} initialiser")
            return None
        addr = addrs[0]
        soft: list[str] = []
        bad = check(addr, soft)
        for w in ([bad] if bad else []) + soft:
            self.warnings.append(f"{what} at {addr:#x} (found by its initialiser): {w} "
                                 "(a corrupted heap?)")
        return addr, f"heuristic: {name}'s .data, {what}'s initialiser (load bias from " \
                     f"{lf.bias_how})"

    def main_arena(self, forced: Optional[int]) -> Fact:
        chain = Chain()
        if forced is not None:
            return chain.found(forced, FORCED)
        hit = self.symbol(chain, "main_arena")
        if hit is None:
            L = layout("malloc_state", self.p.version, self.p.ptr_size, self.endian,
                       self.p.arch)
            lf = self.lf
            cands = evidence.arena_candidates_in_file(lf.facts, L, self.p.ptr_size) \
                if lf is not None and lf.facts is not None else []
            hit = self._file_route(chain, "main_arena", cands, self._check_arena)
        if hit is None:
            hit = self._scan_arena(chain)
        return chain.found(*hit) if hit else chain.failed(
            "; ".join(chain.rejected[-1:]) or "not found")

    def _check_arena(self, addr: int, soft: Optional[list[str]]) -> Optional[str]:
        if soft is not None and not initialised(self.target, addr, self.p, self.endian):
            return None
        return evidence.check_arena(self.target, addr, self.p, self.endian, soft=soft)

    def _scan_arena(self, chain: Chain) -> Optional[tuple[int, str]]:
        L = layout("malloc_state", self.p.version, self.p.ptr_size, self.endian,
                       self.p.arch)
        tried = []
        for addr in evidence.arena_candidates_in_memory(
                self.target, _libc_regions(self.target, self.lf), L, self.p.ptr_size):
            soft: list[str] = []
            bad = evidence.check_arena(self.target, addr, self.p, self.endian, soft=soft)
            if bad is None:
                self.warnings += [f"main_arena at {addr:#x}: {w} (a corrupted heap?)"
                                  for w in soft]
                return addr, ("heuristic: memory scan for self-linked empty bins; " +
                              ("invariants hold" if not soft else
                               "arena list checked, heap looks damaged"))
            tried.append(f"{addr:#x}: {bad}")
        chain.reject("memory scan", "candidates failed the arena checks (" +
                     "; ".join(tried[:3]) + ")" if tried else "no self-linked bins found")
        return None

    def mp(self, forced: Optional[int], arena: int) -> Fact:
        chain = Chain()
        if forced is not None:
            return chain.found(forced, FORCED)
        hit = self.symbol(chain, "mp_")
        L = layout("malloc_par", self.p.version, self.p.ptr_size, self.endian,
                       self.p.arch)
        if hit is None:
            lf = self.lf
            cands = evidence.mp_candidates_in_file(lf.facts, L, self.p) \
                if lf is not None and lf.facts is not None else []
            hit = self._file_route(
                chain, "mp_", cands,
                lambda a, soft: evidence.check_mp(self.target, a, arena, self.p, self.endian))
        if hit is None:
            tried = []
            for addr in evidence.mp_candidates_in_memory(
                    self.target, _libc_regions(self.target, self.lf), L, self.p):
                bad = evidence.check_mp(self.target, addr, arena, self.p, self.endian)
                if bad is None:
                    hit = addr, "heuristic: memory scan for mp_'s fields; sbrk_base agrees"
                    break
                tried.append(f"{addr:#x}: {bad}")
            if hit is None:
                chain.reject("memory scan", "candidates failed the checks (" +
                             "; ".join(tried[:3]) + ")" if tried else "no candidate")
        return chain.found(*hit) if hit else chain.failed(
            "; ".join(chain.rejected[-1:]) or "not found")

    def global_max_fast(self) -> Fact:
        chain = Chain()
        if not self.p.has_fastbins:
            return chain.failed("glibc has no fastbins")
        hit = self.symbol(chain, "global_max_fast")
        return chain.found(*hit) if hit else chain.failed("no symbol (default assumed)")


def _struct_at(target: Target, name: str, addr: int, p: Params, endian: str) -> dict:
    """The fields of glibc's struct ``name`` at ``addr`` (MultiheapError if unreadable)."""
    L = layout(name, p.version, p.ptr_size, endian, p.arch)
    return L.parse(target.read(addr, L.size))


def initialised(target: Target, arena: int, p: Params, endian: str) -> bool:
    """False while malloc_init_state has not run: top and every bin still zero."""
    try:
        f = _struct_at(target, "malloc_state", arena, p, endian)
    except MultiheapError:
        return True  # unreadable: the walks say so
    return not (f["top"] == 0 and not any(f["bins"]) and f["system_mem"] == 0)


def damaged_fields(target: Target, cfg_mp: int, p: Params, endian: str) -> list[str]:
    """Fields of mp_ a corrupted heap changed beyond what glibc allows (warnings)."""
    try:
        f = _struct_at(target, "malloc_par", cfg_mp, p, endian)
    except MultiheapError as e:
        return [f"mp_ at {cfg_mp:#x} is unreadable: {e}"]
    out = []
    bins_name = "tcache_small_bins" if "tcache_small_bins" in f else "tcache_bins"
    if p.has_tcache and bins_name in f and not 0 <= f[bins_name] <= p.tcache_max_bins:
        out.append(f"mp_.{bins_name} is {f[bins_name]:#x}, more than glibc allows "
                   f"({p.tcache_max_bins}): damaged (tcache_relative_write?)")
    if p.has_tcache and "tcache_count" in f and not 0 <= f["tcache_count"] <= 65535:
        out.append(f"mp_.tcache_count is {f['tcache_count']:#x}: damaged")
    return out


def damaged_arena(target: Target, arena: int, p: Params, endian: str) -> list[str]:
    """Fields of main_arena a corrupted heap changed beyond what glibc keeps (warnings):
    ``system_mem <= max_system_mem`` (not whole pages: a foreign sbrk's correction is not)."""
    try:
        f = _struct_at(target, "malloc_state", arena, p, endian)
    except MultiheapError as e:
        return [f"main_arena at {arena:#x} is unreadable: {e}"]
    out = []
    sysm, peak = f.get("system_mem"), f.get("max_system_mem")
    if sysm is not None and peak is not None and sysm > peak:
        out.append(f"main_arena.system_mem is {sysm:#x} (max_system_mem {peak:#x}): "
                   "damaged")
    return out


def cross_check(target: Target, version_: Version, ptr_size: int) -> list[str]:
    """Compare our layouts with the host's debug info, when it has any."""
    out = []
    for name in ("malloc_state", "malloc_par"):
        try:
            theirs = target.type_layout(name)
        except MultiheapError:
            theirs = None
        if theirs is None:
            continue
        mine = layout(name, version_, ptr_size)
        if theirs.size != mine.size:
            out.append(f"struct {name} is {theirs.size} bytes in the debug info but "
                       f"{mine.size} for glibc {glibc.format_version(version_)}: "
                       "the version may be wrong (ptconfig --glibc)")
    return out
