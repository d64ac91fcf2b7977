"""Finding glibc's malloc structures in a target: where, and how we know."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from multiheap import glibc
from multiheap.errors import MultiheapError, NotFoundError
from multiheap.layouts import Params, Version, layout
from multiheap.target import Target


@dataclass
class Overrides:
    """What the user told ``ptconfig`` (kept for the session)."""

    version: Optional[Version] = None
    main_arena: Optional[int] = None
    mp: Optional[int] = None
    tcache_offset: Optional[int] = None  # tcache pointer = thread pointer + offset


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


def locate(target: Target, overrides: Optional[Overrides] = None) -> Config:
    """Detect the glibc version and find main_arena and mp_ (debug info or overrides)."""
    ov = overrides or Overrides()
    how: dict[str, str] = {}
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
    ptr_size = target.pointer_size
    if ov.main_arena is not None:
        main_arena, how["main_arena"] = ov.main_arena, "set with ptconfig"
    else:
        main_arena = _symbol(target, "main_arena")
        how["main_arena"] = "debug info (symbol main_arena)"
    if ov.mp is not None:
        mp, how["mp_"] = ov.mp, "set with ptconfig"
    else:
        mp = _symbol(target, "mp_")
        how["mp_"] = "debug info (symbol mp_)"
    if main_arena is None or mp is None:
        missing = " and ".join(n for n, a in (("main_arena", main_arena), ("mp_", mp))
                               if a is None)
        raise NotFoundError(
            f"{missing} not found: libc has no debug info here (install libc6-dbg), "
            "or give the address: ptconfig --main-arena ADDR --mp ADDR")
    cfg = Config(version, ptr_size, target.arch, target.endianness, main_arena, mp,
                 _symbol(target, "global_max_fast"), how)
    _cross_check(target, cfg)
    return cfg


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
