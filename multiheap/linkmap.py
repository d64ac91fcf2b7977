"""What ld.so says is loaded: ``r_debug`` and its chain of ``struct link_map``.

Read from memory through the public, stable head of each struct (``r_debug``:
``r_version, r_map``; ``link_map``: ``l_addr, l_name, l_ld, l_next``), so no debug info
is needed.  ``r_debug`` is the ``_r_debug`` symbol, else the executable's ``DT_DEBUG``,
else found by what it is.  For hosts that list no modules or no bases: qemu's gdb
stub, a core without file notes (qemu's), r2 on such a core.  Only reads.
"""

from __future__ import annotations

import glob
import os
from typing import Optional

from multiheap.elffile import ET_DYN, PT_DYNAMIC, PT_INTERP, BadInputError, read_elf
from multiheap.errors import MultiheapError
from multiheap.target import Target

DT_DEBUG = 21


def _exe_r_debug(target: Target) -> Optional[int]:
    """``r_debug`` from the executable's ``DT_DEBUG``: its ``.dynamic`` (read-only once
    RELRO is applied) is found in memory by the file's sequence of tags (ld.so adds the
    load bias to some values in place and writes DT_DEBUG's), which gives the load bias
    of a position-independent executable too."""
    mods = target.modules()
    exe = mods[0].path if mods and ".so" not in os.path.basename(mods[0].path) else None
    if not exe:
        return None
    seg = _segment(exe, PT_DYNAMIC)
    if seg is None:
        return None
    vaddr, data, pie = seg
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


def link_map_entries(target: Target) -> list[tuple[str, int, int]]:
    """(name, l_addr, l_ld) of each link_map; see :func:`link_map`."""
    return _walk(target)


def link_map(target: Target) -> list[tuple[str, int]]:
    """(path as the loader names it, load bias) of each loaded object, from ld.so's
    ``_r_debug`` (``r_map``, one word in) and the public head of ``struct link_map``
    (``l_addr, l_name, l_ld, l_next``): the modules of a host that lists none or no
    bases (qemu's stub, a core without file notes)."""
    return [(n, a) for n, a, _ld in _walk(target)]


def _walk(target: Target) -> list[tuple[str, int, int]]:
    sz, order = target.pointer_size, target.endianness

    def word(addr: int) -> int:
        return int.from_bytes(target.read(addr, sz), order)

    out: list[tuple[str, int, int]] = []
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
            out.append((name.decode(errors="replace"), addr, word(node + 2 * sz)))
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


def interp(target: Target) -> str:
    """The executable's PT_INTERP (ld.so's path: its link_map entry may have no name);
    without an executable, the one ld-linux-* under the sysroot's lib."""
    mods = target.modules()
    root = os.environ.get("MULTIHEAP_SYSROOT", "")
    if not mods and root:
        found = sorted(glob.glob(os.path.join(root, "lib", "ld-linux*.so*")))
        return "/lib/" + os.path.basename(found[0]) if len(found) == 1 else ""
    seg = _segment(mods[0].path, PT_INTERP) if mods else None
    return seg[1].split(b"\0")[0].decode(errors="replace") if seg is not None else ""


def _segment(path: str, ptype: int) -> Optional[tuple[int, bytes, bool]]:
    """(p_vaddr, file bytes, position-independent) of the file's first ``ptype``
    program header, or None (no such header, an unreadable file)."""
    try:
        elf = read_elf(path)
        ph = next((h for h in elf.phdrs if h[0] == ptype), None)
        if ph is None:
            return None
        with open(path, "rb") as fh:
            fh.seek(ph[1])
            return ph[2], fh.read(ph[3]), elf.etype == ET_DYN
    except (BadInputError, OSError, ValueError):
        return None
