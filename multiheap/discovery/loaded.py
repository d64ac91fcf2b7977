"""Regions a host does not report, derived from what malloc itself says is its memory.

qemu-user's gdb stub gives no memory map at all (gdb's ``info proc mappings`` is
empty, and gdb/MI's fallback, the object files' sections, has no heap).  The arenas'
heaps are known without one: main_arena's runs from ``mp_.sbrk_base`` to the end of its
top chunk, every other arena's from its ``heap_info`` (the same walk as
:class:`~multiheap.heap.Heap`, used here).  :func:`with_heaps` gives discovery a view
of the target whose regions add those heaps where the host reported none, so the
checks that want a pointer to lie in mapped memory (a tcache entry, an arena's top)
can pass.  Mmapped chunks stay unknown without a map: nothing in malloc points at
them.
"""

from __future__ import annotations

import glob
import os
from typing import Any, Optional

from multiheap import arch
from multiheap.errors import MultiheapError
from multiheap.glibc import find_libc
from multiheap.target import Module, Region, Target

DT_DEBUG = 21


class _WithRegions:
    """The target, with ``extra`` regions after the host's own (reads go to the host)."""

    def __init__(self, target: Target, extra: list[Region]) -> None:
        self._inner = target
        self._extra = extra

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def regions(self) -> list[Region]:
        return sorted(self._inner.regions() + self._extra, key=lambda r: r.start)


def _exe_r_debug(target: Target) -> Optional[int]:
    """``r_debug`` from the executable's ``DT_DEBUG``: its ``.dynamic`` (read-only once
    RELRO is applied) is found in memory by the file's sequence of tags (ld.so adds the
    load bias to some values in place and writes DT_DEBUG's), which gives the load bias
    of a position-independent executable too."""
    mods = target.modules()
    exe = mods[0].path if mods and ".so" not in os.path.basename(mods[0].path) else None
    if not exe:
        return None
    try:
        from elftools.elf.elffile import ELFFile

        with open(exe, "rb") as fh:
            elf = ELFFile(fh)
            dyn = next((s for s in elf.iter_segments() if s["p_type"] == "PT_DYNAMIC"), None)
            if dyn is None:
                return None
            vaddr, data, pie = dyn["p_vaddr"], dyn.data(), elf["e_type"] == "ET_DYN"
    except Exception:  # noqa: BLE001 - any unreadable file: no answer from it
        return None
    sz, order = target.pointer_size, target.endianness
    entries = [(int.from_bytes(data[i:i + sz], order),
                int.from_bytes(data[i + sz:i + 2 * sz], order))
               for i in range(0, len(data) - 2 * sz + 1, 2 * sz)]
    at = next((i for i, (tag, _v) in enumerate(entries) if tag == DT_DEBUG), None)
    if at is None or at == 0:
        return None
    tags = [tag for tag, _v in entries[:at + 1]]
    spots = [vaddr] if not pie else [
        r.start + (vaddr - r.start) % 0x1000 + k for r in target.regions() if "r" in r.perms
        for k in range(0, r.size, 0x1000)]
    for a in spots:
        try:
            buf = target.read(a, (at + 1) * 2 * sz)
        except MultiheapError:
            continue
        if [int.from_bytes(buf[i:i + sz], order) for i in range(0, len(buf), 2 * sz)] == tags:
            return int.from_bytes(buf[-sz:], order) or None
    return None


def _scan_r_debug(target: Target) -> Optional[int]:
    """``r_debug`` found by what it is, for a host that names no executable (r2 on a
    core): in a small writable region, ``r_version`` 1, then ``r_map``: the executable's
    link_map (an empty name) in a chain one of which names a libc."""
    sz, order = target.pointer_size, target.endianness
    one = (1).to_bytes(sz, order)
    for r in target.regions():
        if "w" not in r.perms or r.size > 1 << 20:
            continue
        try:
            buf = target.read(r.start, r.size)
        except MultiheapError:
            continue
        i = buf.find(one)
        while i >= 0:
            if i % sz == 0:
                node = int.from_bytes(buf[i + sz:i + 2 * sz], order)
                if node and _names_exe(target, node) and _names_libc(target, node):
                    return r.start + i
            i = buf.find(one, i + 1)
    return None


def _names_exe(target: Target, node: int) -> bool:
    """Is ``node`` the executable's link_map (the first, named by an empty string)?"""
    sz, order = target.pointer_size, target.endianness
    try:
        name_at = int.from_bytes(target.read(node + sz, sz), order)
        return bool(name_at) and target.read(name_at, 1) == b"\0"
    except MultiheapError:
        return False


def _names_libc(target: Target, node: int) -> bool:
    sz, order = target.pointer_size, target.endianness
    try:
        for _ in range(64):
            name_at = int.from_bytes(target.read(node + sz, sz), order)
            if name_at and b"libc.so" in target.read(name_at, 128).split(b"\0", 1)[0]:
                return True
            node = int.from_bytes(target.read(node + 3 * sz, sz), order)
            if not node:
                return False
    except MultiheapError:
        return False
    return False


def link_map(target: Target) -> list[tuple[str, int]]:
    """(path as the loader names it, load bias) of each loaded object, from ld.so's
    ``_r_debug`` (``r_map``, one word in) and the public head of ``struct link_map``
    (``l_addr, l_name, l_ld, l_next``): the modules of a host that lists none or no
    bases (qemu's stub, a core without file notes)."""
    sz, order = target.pointer_size, target.endianness

    def word(addr: int) -> int:
        return int.from_bytes(target.read(addr, sz), order)

    out: list[tuple[str, int]] = []
    try:
        r_debug = target.symbol("_r_debug") or _exe_r_debug(target) or \
            _scan_r_debug(target)
        node = word(r_debug + sz) if r_debug else 0
        seen: set[int] = set()
        while node and node not in seen and len(out) < 4096:
            seen.add(node)
            addr, name_at = word(node), word(node + sz)
            try:  # ld.so's own name may lie in a page a core left out
                name = target.read(name_at, 256).split(b"\0", 1)[0] if name_at else b""
            except MultiheapError:
                name = b""
            out.append((name.decode(errors="replace"), addr))
            node = word(node + 3 * sz)
    except MultiheapError:
        pass
    return out


def link_map_base(target: Target, path: str) -> Optional[int]:
    """The load bias ld.so's link_map gives the object ``path`` names (a host path under
    a sysroot ends with the loader's path; else the same file name)."""
    entries = [(n, a) for n, a in link_map(target) if n]
    for n, a in entries:
        if path.endswith(n):
            return a
    base = os.path.basename(path)
    hits = [a for n, a in entries if os.path.basename(n) == base]
    return hits[0] if len(hits) == 1 else None


def _host_path(name: str) -> str:
    """The host's copy of the loader's ``name``: under ``MULTIHEAP_SYSROOT`` (the CLI's
    ``--sysroot``, gdb's ``set sysroot``) when it is there."""
    root = os.environ.get("MULTIHEAP_SYSROOT", "")
    if root and os.path.isfile(os.path.join(root, name.lstrip("/"))):
        return os.path.join(root, name.lstrip("/"))
    return name


def _interp(target: Target) -> str:
    """The executable's PT_INTERP (ld.so's path: its link_map entry may have no name);
    without an executable, the one ld-linux-* under the sysroot's lib."""
    mods = target.modules()
    root = os.environ.get("MULTIHEAP_SYSROOT", "")
    if not mods and root:
        found = sorted(glob.glob(os.path.join(root, "lib", "ld-linux*.so*")))
        return "/lib/" + os.path.basename(found[0]) if len(found) == 1 else ""
    try:
        from elftools.elf.elffile import ELFFile

        with open(mods[0].path, "rb") as fh:
            for s in ELFFile(fh).iter_segments():
                if s["p_type"] == "PT_INTERP":
                    return s.get_interp_name()
    except Exception:  # noqa: BLE001 - no executable file: no name
        pass
    return ""


def _segments(path: str, bias: int) -> list[Region]:
    """The file's PT_LOAD segments at ``bias``, as regions named by the file."""
    try:
        from elftools.elf.elffile import ELFFile

        with open(path, "rb") as fh:
            segs = [(s["p_vaddr"], s["p_memsz"], s["p_flags"])
                    for s in ELFFile(fh).iter_segments() if s["p_type"] == "PT_LOAD"]
    except Exception:  # noqa: BLE001 - an unreadable file adds no region
        return []
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
    interp = _interp(target)
    have = {os.path.basename(m.path) for m in target.modules() if m.base}  # (lldb: 0 =
    # listed, not loaded)
    mods = [Module(_host_path(n or interp), a) for n, a in link_map(target)[1:]
            if (n or interp) and os.path.basename(n or interp) not in have]
    return _WithModules(target, mods) if mods else target  # type: ignore[return-value]


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
