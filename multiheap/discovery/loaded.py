"""Regions a host does not report, derived from what malloc itself says is its memory.

qemu-user's gdb stub gives no memory map at all (gdb's ``info proc mappings`` is
empty, and gdb/MI's fallback, the object files' sections, has no heap).  The arenas'
heaps are known without one: main_arena's runs from ``mp_.sbrk_base`` to the end of its
top chunk, every other arena's from its ``heap_info`` (the same walk as
:class:`~multiheap.heap.Heap`, used here).  :func:`with_heaps` gives discovery a view
of the target whose regions add those heaps where the host reported none, so the
checks that want a pointer to lie in mapped memory (a tcache entry, an arena's top)
can pass.  Mmapped chunks stay unknown without a map: nothing in malloc points at
them.  :func:`with_modules` adds the modules ld.so's link_map lists (multiheap.linkmap)
when the host lists no libc (a core without file notes) or, on arm, no ld.so.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from multiheap import arch, linkmap
from multiheap.elffile import PT_DYNAMIC, PT_LOAD, BadInputError, read_elf
from multiheap.errors import MultiheapError
from multiheap.glibc import find_libc
from multiheap.target import Module, Region, Target


class _WithRegions:
    """The target, with ``extra`` regions after the host's own (reads go to the host)."""

    def __init__(self, target: Target, extra: list[Region]) -> None:
        self._inner = target
        self._extra = extra

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def regions(self) -> list[Region]:
        return sorted(self._inner.regions() + self._extra, key=lambda r: r.start)


def _host_path(name: str) -> str:
    """The host's copy of the loader's ``name``: under ``MULTIHEAP_SYSROOT`` (the CLI's
    ``--sysroot``, gdb's ``set sysroot``) when it is there."""
    root = os.environ.get("MULTIHEAP_SYSROOT", "")
    if root and os.path.isfile(os.path.join(root, name.lstrip("/"))):
        return os.path.join(root, name.lstrip("/"))
    return name


def _segments(path: str, bias: int) -> list[Region]:
    """The file's PT_LOAD segments at ``bias``, as regions named by the file."""
    try:
        elf = read_elf(path)
    except BadInputError:  # an unreadable file adds no region
        return []
    segs = [(v, n, f) for (pt, _o, v, _fs, n), f in zip(elf.phdrs, elf.phflags)
            if pt == PT_LOAD]
    return [Region((bias + v) & ~0xFFF, (bias + v + n + 0xFFF) & ~0xFFF,
                   ("r" if f & 4 else "-") + ("w" if f & 2 else "-") + ("x" if f & 1 else "-"),
                   path) for v, n, f in segs]


class _WithModules(_WithRegions):
    """The target, with ld.so's link_map modules (and their segments) added."""

    def __init__(self, target: Target, modules: list[Module]) -> None:
        extra = [r for m in modules for r in _segments(m.path, m.base)]
        super().__init__(target, extra)
        self._modules = modules

    def modules(self) -> list[Module]:
        return self._inner.modules() + self._modules

    def symbol(self, name: str, module: Optional[str] = None) -> Optional[int]:
        """The host's answer, else the added modules' ``.dynsym`` (ld.so's _rtld_global)."""
        found = self._inner.symbol(name, module)
        if found:
            return found
        from multiheap.discovery.evidence import dynsym_objects  # evidence imports arch

        for m in self._modules:
            if module is None or module in m.path:
                at = dynsym_objects(m.path, (name,)).get(name)
                if at:
                    return m.base + at
        return None

    def regions(self) -> list[Region]:
        """The host's regions, an unnamed one named by the module segment it overlaps
        (its bounds kept: no two regions overlap), then segments the host lacks."""
        own = self._inner.regions()
        out = []
        for r in own:
            seg = next((e for e in self._extra if e.start < r.end and r.start < e.end), None)
            out.append(Region(r.start, r.end, r.perms, seg.name) if seg and not r.name else r)
        out += [e for e in self._extra if not any(e.start < r.end and r.start < e.end
                                                  for r in own)]
        return sorted(out, key=lambda r: r.start)


def with_modules(target: Target) -> Target:
    """``target`` itself when it lists libc (and, on arm, ld.so), else a view that adds
    what ld.so's link_map says is loaded (a core without file notes: qemu's)."""
    if find_libc(target) is not None and (arch.tls_variant(target.arch) == 2
                                          or _symbol(target, "_rtld_global")):
        return target  # (arm's thread pointers come from ld.so's _rtld_global)
    interp = _host_path(linkmap.interp(target))
    have = {os.path.basename(m.path) for m in target.modules() if m.base}  # (lldb: 0 =
    # listed, not loaded)
    mods = []
    for n, a, ld in linkmap.link_map_entries(target)[1:]:
        # a name a core left out: ld.so's, if its .dynamic sits where l_ld says
        path = _host_path(n) if n else interp if _dynamic_at(interp, a, ld) else ""
        if path and os.path.basename(path) not in have:
            mods.append(Module(path, a))
    return _WithModules(target, mods) if mods else target  # type: ignore[return-value]


def _dynamic_at(path: str, bias: int, l_ld: int) -> bool:
    """Does the file's PT_DYNAMIC, loaded at ``bias``, sit at ``l_ld``?"""
    try:
        phdrs = read_elf(path).phdrs
    except BadInputError:  # an unreadable file is not it
        return False
    return any(pt == PT_DYNAMIC and bias + v == l_ld for pt, _o, v, _f, _m in phdrs)


def _symbol(target: Target, name: str) -> Optional[int]:
    try:
        return target.symbol(name)
    except MultiheapError:
        return None


def _covered(regions: list[Region], start: int, end: int) -> bool:
    return any(r.start <= start and end <= r.end for r in regions)


def heap_regions(target: Target, config: Any) -> list[Region]:
    """The arenas' heaps (main first) as writable regions, from a provisional config."""
    from multiheap.heap import Heap  # the one heap walk; heap imports discovery

    try:
        arenas = Heap(target, config).arenas()
    except MultiheapError:
        return []
    out = []
    for a in arenas:
        for s in a.heaps:
            lo = (s.info or s.start) & ~0xFFF
            out.append(Region(lo, (s.end + 0xFFF) & ~0xFFF, "rw-",
                              "[heap]" if a.is_main else ""))
    return out


def with_heaps(target: Target, config: Any) -> Target:
    """``target`` itself when its regions hold every heap, else a view that adds them."""
    own = target.regions()
    missing = [r for r in heap_regions(target, config) if not _covered(own, r.start, r.end)]
    return _WithRegions(target, missing) if missing else target  # type: ignore[return-value]


def unmapped_only(target: Target, view: Target, arena: int, p: Any,
                  endian: str) -> list[str]:
    """main_arena's warnings that only the missing map gave (a top or bin "outside any
    mapping" that lies in a heap ``view`` adds): not damage, so not shown."""
    if view is target:
        return []
    from multiheap.discovery.evidence import check_arena

    before: list[str] = []
    after: list[str] = []
    hard = check_arena(target, arena, p, endian, soft=before)
    hard_now = check_arena(view, arena, p, endian, soft=after)
    gone = [w for w in before if w not in after]
    if hard and hard != hard_now:
        gone.append(hard)
    return gone
