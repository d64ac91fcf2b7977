"""Finding glibc's malloc structures in a target: where, and how we know.

Each structure goes through the same chain of routes, first answer wins: the user's
``ptconfig`` override, the host's debug info, then the heuristics of
:mod:`multiheap.heuristics` (libc's ELF file, then memory alone).  A guess is checked
against the arena's invariants: one that fails what only a wrong guess fails is
refused with the reason, never used; damage a corrupted heap also shows becomes a
warning.  The user's addresses are checked too, with warnings; debug info is trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from multiheap import glibc, heuristics
from multiheap.errors import MultiheapError, NotFoundError
from multiheap.layouts import Params, Version, layout
from multiheap.memory import same_file
from multiheap.target import Module, Region, Target, Thread

OVERRIDE_HINT = "ptconfig --main-arena ADDR --mp ADDR (and --glibc X.Y) set them by hand"


@dataclass
class Overrides:
    """What the user told ``ptconfig`` (kept for the session)."""

    version: Optional[Version] = None
    main_arena: Optional[int] = None
    mp: Optional[int] = None
    tcache_offset: Optional[int] = None  # tcache pointer = thread pointer + offset


@dataclass
class LibcFile:
    """The file that holds malloc (libc.so.6, or a static executable) and its bias."""

    path: str
    facts: Optional[heuristics.ElfFacts]
    bias: Optional[int]
    bias_how: str
    static: bool = False


@dataclass
class Config:
    """Everything the engine needs to know about this target's malloc."""

    version: Version
    ptr_size: int
    arch: str
    endian: str
    main_arena: int
    mp: int
    global_max_fast: Optional[int]
    how: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    libc: Optional[LibcFile] = None
    _tcache_guess: Optional[tuple[Optional[int], str]] = None
    _tps: Optional[dict[int, Optional[int]]] = None

    @property
    def params(self) -> Params:
        return Params(self.version, self.ptr_size)


def _symbol(target: Target, name: str) -> Optional[int]:
    try:
        addr = target.symbol(name)
    except MultiheapError:
        addr = None
    if addr is None:  # hosts that do not read libc's build-id debug file (r2, MI cores)
        from multiheap.debugfile import libc_symbol

        addr = libc_symbol(target, name)
    return addr


def _version(target: Target, ov: Overrides, how: dict[str, str]) -> Version:
    if ov.version is not None:
        version, how["version"] = ov.version, "set with ptconfig"
    else:
        found, reason = glibc.detect_version(target)
        if found is None:
            raise NotFoundError(f"glibc not detected: {reason}; "
                                "if it is glibc, set it with: ptconfig --glibc X.Y")
        version, how["version"] = found, reason
    lo, hi = glibc.SUPPORTED
    if not lo <= version <= hi:
        raise NotFoundError(
            f"glibc {glibc.format_version(version)} is outside what multiheap knows "
            f"({glibc.format_version(lo)} to {glibc.format_version(hi)}); "
            "ptconfig --glibc X.Y forces a layout")
    return version


def libc_file(target: Target) -> Optional[LibcFile]:
    """libc's file and load bias; a static executable's when there is no libc."""
    mod: Optional[Module] = glibc.find_libc(target)
    static = False
    if mod is None:
        mods = target.modules()
        if not mods:
            return None
        mod, static = mods[0], True
    facts = heuristics.read_elf(mod.path)
    if facts is None:
        return LibcFile(mod.path, None, None, "file unreadable", static)
    bias, how = heuristics.load_bias(target, facts, mod.path)
    return LibcFile(mod.path, facts, bias, how, static)


def _libc_regions(target: Target, lf: Optional[LibcFile]) -> list[Region]:
    """libc's writable mappings (with the .bss after them), or every writable one."""
    regs = heuristics.regions_of(target, lf.path if lf else None)
    return regs or [r for r in target.regions() if "w" in r.perms and r.size <= 16 << 20]


def _guess_arena(target: Target, p: Params, endian: str, lf: Optional[LibcFile],
                 warnings: list[str]) -> tuple[Optional[int], str]:
    L = layout("malloc_state", p.version, p.ptr_size, endian)
    tried: list[str] = []
    routes: list[tuple[list[int], str]] = []
    if lf is not None and lf.facts is not None and lf.bias is not None:
        name = "the executable" if lf.static else "libc"
        routes.append(([c + lf.bias for c in heuristics.arena_candidates_in_file(
            lf.facts, L, p.ptr_size)], f"heuristic: {name}'s .data, where next == "
            f"&main_arena (load bias from {lf.bias_how})"))
    routes.append((heuristics.arena_candidates_in_memory(
        target, _libc_regions(target, lf), L, p.ptr_size),
        "heuristic: memory scan for self-linked empty bins"))
    for cands, how in routes:
        for addr in cands:
            soft: list[str] = []
            bad = heuristics.check_arena(target, addr, p, endian, soft=soft)
            if bad is None:
                warnings += [f"main_arena at {addr:#x}: {w} (a corrupted heap?)"
                             for w in soft]
                return addr, how + ("; invariants hold" if not soft else
                                    "; arena list checked, heap looks damaged")
            tried.append(f"{addr:#x}: {bad}")
    return None, ("candidates failed the arena checks (" + "; ".join(tried[:3]) + ")"
                  if tried else "no candidate found in libc's data or memory")


def _guess_mp(target: Target, p: Params, endian: str, arena: int,
              lf: Optional[LibcFile]) -> tuple[Optional[int], str]:
    L = layout("malloc_par", p.version, p.ptr_size, endian)
    tried: list[str] = []
    if lf is not None and lf.facts is not None and lf.bias is not None:
        name = "the executable" if lf.static else "libc"
        for c in heuristics.mp_candidates_in_file(lf.facts, L, p):
            addr = c + lf.bias
            bad = heuristics.check_mp(target, addr, arena, p, endian)
            if bad is None:
                return addr, (f"heuristic: {name}'s .data, mp_'s default values; "
                              "sbrk_base agrees with main_arena")
            tried.append(f"{addr:#x}: {bad}")
    for addr in heuristics.mp_candidates_in_memory(target, _libc_regions(target, lf), L, p):
        bad = heuristics.check_mp(target, addr, arena, p, endian)
        if bad is None:
            return addr, "heuristic: memory scan for mp_'s fields; sbrk_base agrees"
        tried.append(f"{addr:#x}: {bad}")
    return None, ("candidates failed the checks (" + "; ".join(tried[:3]) + ")"
                  if tried else "no candidate found in libc's data or memory")


def locate(target: Target, overrides: Optional[Overrides] = None) -> Config:
    """Detect the glibc version and find main_arena and mp_ (and how they were found)."""
    ov = overrides or Overrides()
    how: dict[str, str] = {}
    warnings: list[str] = []
    version = _version(target, ov, how)
    ptr_size, endian = target.pointer_size, target.endianness
    p = Params(version, ptr_size)
    lf: Optional[LibcFile] = None
    found: dict[str, Optional[int]] = {}
    for name, sym, forced in (("main_arena", "main_arena", ov.main_arena),
                              ("mp_", "mp_", ov.mp)):
        if forced is not None:
            found[name], how[name] = forced, "set with ptconfig"
            continue
        addr = _symbol(target, sym)
        if addr is not None:
            found[name], how[name] = addr, f"debug info (symbol {sym})"
            continue
        if lf is None:
            lf = libc_file(target)
        if name == "main_arena":
            found[name], how[name] = _guess_arena(target, p, endian, lf, warnings)
        elif found.get("main_arena") is not None:
            found[name], how[name] = _guess_mp(target, p, endian, found["main_arena"], lf)
        else:
            found[name], how[name] = None, "needs main_arena first"
    main_arena, mp = found["main_arena"], found["mp_"]
    if main_arena is None or mp is None:
        missing = "; ".join(f"{n} not found: {how[n]}" for n in ("main_arena", "mp_")
                            if found[n] is None)
        raise NotFoundError(f"{missing}. No debug info for libc here (libc6-dbg gives it); "
                            f"{OVERRIDE_HINT}")
    for name, addr in (("main_arena", main_arena), ("mp_", mp)):
        if how[name] != "set with ptconfig":
            continue  # debug info is trusted (damage shows in the walks); guesses checked
        bad = (heuristics.check_arena(target, addr, p, endian) if name == "main_arena"
               else heuristics.check_mp(target, addr, main_arena, p, endian))
        if bad is not None:
            warnings.append(f"{name} at {addr:#x} ({how[name]}) fails the checks: {bad}")
    gmf = _symbol(target, "global_max_fast") if p.has_fastbins else None
    cfg = Config(version, ptr_size, target.arch, endian, main_arena, mp, gmf, how,
                 warnings, lf)
    _cross_check(target, cfg)
    return cfg


def thread_pointer(target: Target, cfg: Config, thread: Thread) -> Optional[int]:
    """The thread's pointer: the host's register, else found in memory (cached)."""
    if cfg._tps is None:
        cfg._tps = heuristics.thread_pointers(target, target.threads(), cfg.ptr_size,
                                              cfg.endian)
    return cfg._tps.get(thread.num)


def guess_tcache_offset(target: Target, cfg: Config,
                        threads: list[Thread]) -> tuple[Optional[int], str]:
    """Thread-pointer offset of the TLS variable ``tcache`` (cached in ``cfg``)."""
    if cfg._tcache_guess is None:
        lf = cfg.libc or libc_file(target)
        cfg.libc = lf
        offsets = heuristics.tls_offsets(target, lf.facts if lf else None,
                                         lf.bias if lf else None, cfg.ptr_size)
        dummy = [r for r in target.regions()
                 if lf is not None and same_file(r.name, lf.path)]
        scan = heuristics.TLS_SCAN
        if lf is not None and lf.static and lf.facts is not None and lf.facts.tls_size:
            scan = lf.facts.tls_size  # the executable's TLS block ends at the pointer
        tps = [thread_pointer(target, cfg, t) or 0 for t in threads]
        off, how = heuristics.find_tcache_offset(target, tps, cfg.params, offsets,
                                                 cfg.endian, dummy, scan)
        cfg._tcache_guess = (off, "heuristic: " + how if off is not None else how)
    return cfg._tcache_guess


def _cross_check(target: Target, cfg: Config) -> None:
    """Compare our layouts with the host's debug info, when it has any."""
    for struct_name, ours in (("malloc_state", "malloc_state"), ("malloc_par", "malloc_par")):
        try:
            theirs = target.type_layout(struct_name)
        except MultiheapError:
            theirs = None
        if theirs is None:
            continue
        mine = layout(ours, cfg.version, cfg.ptr_size)
        if theirs.size != mine.size:
            cfg.warnings.append(
                f"struct {struct_name} is {theirs.size} bytes in the debug info but "
                f"{mine.size} for glibc {glibc.format_version(cfg.version)}: "
                "the version may be wrong (ptconfig --glibc)")
