"""Evidence for discovery without debug info: libc's ELF file, memory scans, and the
invariants every guess by content is checked against.

This module finds candidates and checks them; which route is tried when, and what is
reported, is :mod:`multiheap.discovery.routes` and :mod:`multiheap.discovery.threads`.
The evidence:

- libc's own ELF file (multiheap.elffile): ``main_arena``'s static initializer sets
  ``.next = &main_arena`` and ``.attached_threads = 1``, so in ``.data`` (with RELA
  addends applied) it is the one place whose ``next`` field holds its own address;
  ``mp_``'s initializer is recognisable by its defaults (128 KiB thresholds,
  ``arena_test``, 65536 ``n_mmaps_max``, the tcache fields).  The tcache pointer is a
  TLS variable: libc's TPOFF relocations name GOT slots that, at run time, hold the
  thread-pointer offsets of its TLS variables; one of them points at a tcache.
- memory alone (a core whose libc file is gone): the empty bins of an arena point at
  themselves, which pins the arena's address; mp_ by its defaults and ``sbrk_base``.

Every guess is checked against the arena's invariants (:func:`check_arena`) and a
failure is reported, never papered over.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Optional

from multiheap import arch
from multiheap.elffile import (
    ET_DYN,
    PT_LOAD,
    PT_TLS,
    SHT_DYNSYM,
    SHT_PROGBITS,
    BadInputError,
    read_file,
    relocations,
    sections,
    symbols,
)
from multiheap.errors import MultiheapError, TargetMemoryError
from multiheap.heaptypes import MAX_ARENAS
from multiheap.layouts import Layout, Params, layout
from multiheap.memory import lowest_mapping, region_contents, same_file
from multiheap.target import Region, Target, word_struct

TLS_SCAN = 0x2000  # bytes below the thread pointer searched when no relocation helps


@dataclass
class ElfFacts:
    """What a libc (or static executable) file says, at link-time addresses."""

    path: str
    pie: bool  # ET_DYN: loaded at a bias
    first_load: int  # lowest PT_LOAD p_vaddr (page-aligned)
    data: list[tuple[int, bytes]]  # (vaddr, initial bytes) of .data, addends applied
    tpoff_slots: list[tuple[int, int]]  # (GOT slot vaddr, +1 add / -1 subtract)
    tls_size: int = 0  # PT_TLS memsz rounded to its alignment (0: no TLS segment)
    machine: int = 62  # ELF e_machine: which relocation types and TLS variant apply


@lru_cache(maxsize=8)
def _read_elf(path: str, mtime: float) -> Optional[ElfFacts]:
    try:
        elf, raw = read_file(path)
        loads = [v for pt, _o, v, _f, _m in elf.phdrs if pt == PT_LOAD]
        tls = [-(-ms // max(1, al)) * max(1, al)
               for (pt, _o, _v, _f, ms), al in zip(elf.phdrs, elf.phalign) if pt == PT_TLS]
        sec = next((x for x in sections(elf, raw) if x.name == ".data"), None)
        data = [(sec.addr, bytearray(raw[sec.offset:sec.offset + sec.size]))] \
            if sec is not None and sec.type == SHT_PROGBITS else []
        row = arch.by_machine(elf.machine)
        rel, add, sub = (row.relative, row.tpoff, row.tpoff_sub) if row else \
            (frozenset(), frozenset(), frozenset())
        slots: list[tuple[int, int]] = []
        for r in relocations(elf, raw):
            if r.type in rel and r.addend is not None:
                _apply(data, r.offset, r.addend, elf.bits // 8, elf.endian)
            elif r.type in add or r.type in sub:
                slots.append((r.offset, -1 if r.type in sub else 1))
    except (BadInputError, ValueError, struct.error):
        return None
    return ElfFacts(path, elf.etype == ET_DYN, min(loads) & ~0xFFF if loads else 0,
                    [(a, bytes(b)) for a, b in data], slots, tls_size=tls[0] if tls else 0,
                    machine=elf.machine)


def _apply(data: list, vaddr: int, value: int, width: int, order: str) -> None:
    for start, buf in data:
        if start <= vaddr < start + len(buf):
            off = vaddr - start
            buf[off:off + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, order)


@lru_cache(maxsize=8)
def dynsym_objects(path: str, names: tuple[str, ...]) -> dict[str, int]:
    """Link-time addresses of some .dynsym data objects (read only when needed)."""
    try:
        elf, data = read_file(path)
    except BadInputError:
        return {}
    return {sym.name: sym.value for sym in symbols(elf, data, SHT_DYNSYM, names=names)
            if sym.value}


def read_elf(path: str) -> Optional[ElfFacts]:
    """Facts from the ELF file at ``path`` (cached), or None if it cannot be read."""
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    return _read_elf(path, mtime)


def load_bias(target: Target, facts: ElfFacts, path: str) -> tuple[Optional[int], str]:
    """(bias, how): run-time address minus link-time address of the file's contents."""
    if not facts.pie:
        return 0, "fixed addresses (not position-independent)"
    base = lowest_mapping(target.regions(), path)
    if base is not None:
        return base - facts.first_load, "lowest mapping of the file"
    names = ("_IO_2_1_stderr_", "_IO_2_1_stdout_", "__libc_single_threaded")
    objects = dynsym_objects(path, names)
    for name in names:
        at = objects.get(name)
        try:
            addr = target.symbol(name)
        except MultiheapError:
            addr = None
        if at and addr:
            return addr - at, f".dynsym object {name}"
    return None, "no mapping of the file and no .dynsym object resolved"


# ----------------------------------------------------------------- candidates
def _words(buf: bytes, sz: int) -> Callable[[int], int]:
    fmt = struct.Struct("<Q" if sz == 8 else "<I")
    return lambda off: fmt.unpack_from(buf, off)[0]


def arena_candidates_in_file(facts: ElfFacts, L: Layout, sz: int) -> list[int]:
    """Link-time addresses in .data whose ``next`` holds the address itself."""
    out = []
    o_next, o_att = L.offset("next"), L.offset("attached_threads")
    for start, buf in facts.data:
        word = _words(buf, sz)
        for off in range(0, len(buf) - L.size + 1, sz):
            if word(off + o_next) == start + off and word(off + o_att) == 1:
                out.append(start + off)
    return out


def mp_defaults_ok(f: dict, p: Params, initial: bool) -> bool:
    """Does a parsed malloc_par look like glibc's (``initial``: exactly the defaults)?"""
    k128 = 128 * 1024
    max_thresh = 4 * 1024 * 1024 * p.ptr_size if p.ptr_size == 8 else 512 * 1024
    if initial:
        ok = (f["trim_threshold"] == k128 and f["mmap_threshold"] == k128
              and f["arena_test"] == (8 if p.ptr_size == 8 else 2) and f["arena_max"] == 0
              and f["n_mmaps_max"] == 65536 and f["n_mmaps"] == 0 and f["sbrk_base"] == 0)
        if ok and p.has_tcache:
            bins = f.get("tcache_bins", f.get("tcache_small_bins"))
            ok = bins == p.tcache_small_bins and f["tcache_count"] == p.tcache_fill_count
        return ok
    if not (k128 <= f["mmap_threshold"] <= max_thresh or f["no_dyn_threshold"]):
        return False
    if not (0 <= f["no_dyn_threshold"] <= 1 and 0 <= f["n_mmaps"] <= f["max_n_mmaps"]
            and f["mmapped_mem"] <= f["max_mmapped_mem"] and f["n_mmaps_max"] >= 0):
        return False
    if p.has_tcache:
        bins = f.get("tcache_bins", f.get("tcache_small_bins"))
        if not (bins is not None and 0 <= bins <= p.tcache_max_bins
                and 0 <= f["tcache_count"] <= 65535):
            return False
    return True


def mp_candidates_in_file(facts: ElfFacts, L: Layout, p: Params) -> list[int]:
    out = []
    for start, buf in facts.data:
        for off in range(0, len(buf) - L.size + 1, p.ptr_size):
            if mp_defaults_ok(L.parse(buf, off), p, initial=True):
                out.append(start + off)
    return out


def regions_of(target: Target, path: Optional[str]) -> list[Region]:
    """Writable regions of a file, and the anonymous mapping right after (its .bss)."""
    regs = target.regions()
    out = []
    for i, r in enumerate(regs):
        if "w" in r.perms and path and same_file(r.name, path):
            out.append(r)
            if i + 1 < len(regs) and regs[i + 1].start == r.end and not regs[i + 1].name:
                out.append(regs[i + 1])
    return out


def arena_candidates_in_memory(target: Target, regions: list[Region], L: Layout,
                               sz: int) -> list[int]:
    """Addresses in ``regions`` where many bins are empty (fd == bk == the bin itself)."""
    o_bins = L.offset("bins")
    votes: dict[int, int] = {}
    for r, buf in region_contents(target, regions, 16 << 20):
        fmt = struct.Struct("<QQ" if sz == 8 else "<II")
        for off in range(0, len(buf) - 2 * sz + 1, sz):
            fd, bk = fmt.unpack_from(buf, off)
            q = r.start + off
            if fd == bk == q - 2 * sz:
                for i in range(1, 128):  # q may be &bins[2(i-1)] for any bin i
                    base = q - o_bins - (i - 1) * 2 * sz
                    votes[base] = votes.get(base, 0) + 1
    good = [a for a, n in votes.items() if n >= 16]
    return sorted(good, key=lambda a: -votes[a])[:8]


def mp_candidates_in_memory(target: Target, regions: list[Region], L: Layout,
                            p: Params) -> list[int]:
    out = []
    for r, buf in region_contents(target, regions, 16 << 20):
        for off in range(0, len(buf) - L.size + 1, p.ptr_size):
            f = L.parse(buf, off)
            if f["n_mmaps_max"] == 65536 and f["arena_max"] == 0 and \
                    mp_defaults_ok(f, p, initial=False):
                out.append(r.start + off)
    return out


# ----------------------------------------------------------------- invariants
def _region(regions: list[Region], addr: int) -> Optional[Region]:
    for r in regions:
        if r.start <= addr < r.end:
            return r
    return None


def check_arena(target: Target, addr: int, p: Params, endian: str = "little",
                is_main: bool = True, soft: Optional[list[str]] = None) -> Optional[str]:
    """None if ``addr`` holds a believable malloc_state, else what is wrong with it.

    Failures that a corrupted heap also shows (top outside its mapping or too big, a
    few bins or fastbins pointing nowhere) are appended to ``soft`` instead when a
    list is given: the arena is still the arena, and the walks mark the damage.
    """
    L = layout("malloc_state", p.version, p.ptr_size, endian, p.arch)
    sz = p.ptr_size
    regions = target.regions()
    warn = soft if soft is not None else []
    try:
        f = L.parse(target.read(addr, L.size))
    except TargetMemoryError:
        return f"{addr:#x} is unreadable"
    o_bins = L.offset("bins")

    def bin_at(a: int, i: int) -> int:
        return a + o_bins + (i - 1) * 2 * sz - 2 * sz

    top, unused = f["top"], bin_at(addr, 1)
    if f["max_system_mem"] < f["system_mem"] or f["system_mem"] >= 1 << (8 * sz - 2):
        return f"system_mem {f['system_mem']:#x} is not believable"
    if top == unused or (top == 0 and f["system_mem"] == 0):
        if f["system_mem"]:
            return "top is the initial dummy but system_mem is not 0"
    else:
        r = _region(regions, top)
        if r is None or "w" not in r.perms:
            warn.append(f"top {top:#x} is not in a writable mapping")
        else:
            try:
                tsize = int.from_bytes(target.read(top + sz, sz), endian) & ~7
            except TargetMemoryError:
                tsize = 0
            if top + tsize > r.end:
                warn.append(f"top chunk {top:#x} (size {tsize:#x}) runs past its mapping")
    bins = f["bins"]
    self_linked, bad = 0, []
    for i in range(1, 128):
        fd, bk = bins[2 * (i - 1)], bins[2 * i - 1]
        me = bin_at(addr, i)
        if fd == me and bk == me:
            self_linked += 1
        elif fd == bk == 0 and top == 0:
            continue  # malloc not initialised yet: bins are still zero
        elif fd == me or bk == me or _region(regions, fd) is None \
                or _region(regions, bk) is None:
            bad.append(f"bin {i} (fd {fd:#x}, bk {bk:#x})")
    if len(bad) > 8:
        return f"{len(bad)} bins are neither empty nor linked into memory"
    if bad:
        warn.append("bins look corrupted: " + ", ".join(bad[:3]))
    if top != unused and self_linked == 0 and f["system_mem"] == 0:
        return "no bin is empty and system_mem is 0"
    for head in f.get("fastbinsY", ()):  # the heads themselves are never mangled
        if head and _region(regions, head) is None:
            warn.append(f"fastbin head {head:#x} points outside any mapping")
    if soft is None and warn:
        return warn[0]
    if not is_main:
        return None
    nxt, seen = f["next"], {addr}
    while nxt != addr:
        if nxt in seen or len(seen) > MAX_ARENAS:
            return "the arena list (next) does not return to main_arena"
        seen.add(nxt)
        try:
            nf = L.parse(target.read(nxt, L.size))
        except TargetMemoryError:
            return f"arena {nxt:#x} on the next chain is unreadable"
        if _region(regions, nf["top"]) is None:
            return f"arena {nxt:#x} on the next chain has top {nf['top']:#x} outside memory"
        nxt = nf["next"]
    return None


def check_mp(target: Target, addr: int, arena: int, p: Params,
             endian: str = "little") -> Optional[str]:
    """None if ``addr`` holds a believable malloc_par for main_arena at ``arena``."""
    L = layout("malloc_par", p.version, p.ptr_size, endian, p.arch)
    La = layout("malloc_state", p.version, p.ptr_size, endian, p.arch)
    try:
        f = L.parse(target.read(addr, L.size))
    except TargetMemoryError:
        return f"{addr:#x} is unreadable"
    try:
        a = La.parse(target.read(arena, La.size))
    except TargetMemoryError:
        return f"main_arena {arena:#x} is unreadable"
    if not mp_defaults_ok(f, p, initial=False):
        return "its fields are not those of a malloc_par"
    base, top = f["sbrk_base"], a["top"]
    if a["system_mem"]:
        if not base or not base <= top < base + a["system_mem"] + 4 * p.malloc_alignment:
            return (f"sbrk_base {base:#x} does not hold main_arena's top {top:#x} "
                    f"(system_mem {a['system_mem']:#x})")
    return None


# ----------------------------------------------------------------- tcache
def tcache_chunk_size(p: Params, endian: str = "little") -> int:
    L = layout("tcache_perthread_struct", p.version, p.ptr_size, endian, p.arch)
    req = L.size + p.ptr_size
    return max(p.minsize, (req + p.align_mask) & ~p.align_mask)


def check_tcache(target: Target, ptr: int, p: Params, endian: str = "little",
                 dummy_ok: Optional[list[Region]] = None) -> Optional[str]:
    """None if ``ptr`` is a tcache_perthread_struct in a heap chunk of the right size."""
    sz = p.ptr_size
    L = layout("tcache_perthread_struct", p.version, sz, endian, p.arch)
    regions = target.regions()
    try:
        f = L.parse(target.read(ptr, L.size))
    except TargetMemoryError:
        return f"{ptr:#x} is unreadable"
    for e in f["entries"]:
        if e and _region(regions, e) is None:
            return f"entry {e:#x} points outside any mapping"
    if dummy_ok and any(r.start <= ptr < r.end for r in dummy_ok):
        if not any(f["entries"]):
            return None  # 2.43's static dummy tcache, before first use
    try:
        size = int.from_bytes(target.read(ptr - sz, sz), endian) & ~7
    except TargetMemoryError:
        return f"{ptr:#x} has no readable chunk header"
    want = tcache_chunk_size(p, endian)
    if size != want:
        return f"chunk at {ptr - 2 * sz:#x} has size {size:#x}, a tcache's is {want:#x}"
    return None


def tcbhead_at(buf: bytes, off: int, addr: int, fmt: struct.Struct,
               strict: bool = False) -> bool:
    """The one check that ``buf[off:]`` (at ``addr``) holds x86's ``tcbhead_t``
    {tcb, dtv, self}: tcb and self hold ``addr`` (``strict``), or one of them does."""
    sz = fmt.size
    if not 0 <= off <= len(buf) - 3 * sz:
        return False
    tcb, self_ = fmt.unpack_from(buf, off)[0], fmt.unpack_from(buf, off + 2 * sz)[0]
    return (tcb == addr and self_ == addr) if strict else addr in (tcb, self_)


def scan_thread_pointers(target: Target, tids: list[int], sz: int,
                         endian: str = "little") -> dict[int, int]:
    """{tid: thread pointer} found in memory, for hosts that cannot give the register.

    On x86 the thread pointer points at glibc's ``struct pthread``, which starts with
    ``tcbhead_t {tcb, dtv, self}`` (``tcb`` and ``self`` hold the address itself) and
    holds the thread's ``tid`` a few hundred bytes on.  First the tops of anonymous
    mappings (where thread stacks keep their struct pthread) and the start of the brk
    heap (a static executable's main thread) are searched; once one struct shows where
    ``tid`` sits, each remaining tid's occurrences are checked at that distance.
    """
    fmt = word_struct(sz, endian)
    regions = [r for r in target.regions() if "w" in r.perms and r.size <= 64 << 20
               and (not r.name or r.name.startswith("[anon") or r.name == "[heap]")]
    out: dict[int, int] = {}
    tid_at: Optional[int] = None

    for r in regions:
        lo, hi = (r.start, min(r.end, r.start + 0x40000)) if r.name == "[heap]" else \
            (max(r.start, r.end - 0x40000), r.end)
        try:
            buf = target.read(lo, hi - lo)
        except TargetMemoryError:
            continue
        for off in range(0, len(buf) - 3 * sz + 1, sz):
            if not tcbhead_at(buf, off, lo + off, fmt, strict=True):
                continue
            body = buf[off:off + 0x1000]
            for tid in tids:
                i = body.find(tid.to_bytes(4, endian), 3 * sz)
                if tid not in out and i >= 0 and i % 4 == 0:
                    out[tid], tid_at = lo + off, i
                    break
    missing = [t for t in tids if t not in out]
    if not missing or tid_at is None:
        return out
    for r in regions:
        for base, buf in _readable_parts(target, r.start, r.end):
            for tid in missing:
                needle, i = tid.to_bytes(4, endian), -1
                while tid not in out:
                    i = buf.find(needle, i + 1)
                    if i < 0:
                        break
                    a = base + i - tid_at
                    try:
                        head = target.read(a, 3 * sz)
                    except TargetMemoryError:
                        continue
                    if a % sz == 0 and tcbhead_at(head, 0, a, fmt, strict=True):
                        out[tid] = a
            if len(out) == len(tids):
                return out
    return out


def _readable_parts(target: Target, start: int, end: int, step: int = 0x100000):
    """(address, bytes) of the readable parts of [start, end): guard pages (2.43 puts
    them inside the stack mapping with madvise) fail a read, so go page by page there."""
    addr = start
    while addr < end:
        n = min(step, end - addr)
        try:
            yield addr, target.read(addr, n)
            addr += n
            continue
        except TargetMemoryError:
            pass
        stop = addr + n
        while addr < stop:
            try:
                yield addr, target.read(addr, 0x1000)
            except TargetMemoryError:
                pass
            addr += 0x1000


def tls_offsets(target: Target, facts: Optional[ElfFacts], bias: Optional[int],
                sz: int) -> list[int]:
    """Thread-pointer offsets of libc's TLS variables, from its TPOFF GOT slots
    (negative below x86's thread pointer, positive above arm's: TLS variant I)."""
    if facts is None or bias is None:
        return []
    row = arch.by_machine(facts.machine)
    above = bool(row and row.tls_variant == 1)
    out = []
    mask = (1 << (8 * sz)) - 1
    for vaddr, sign in facts.tpoff_slots:
        try:
            v = int.from_bytes(target.read(vaddr + bias, sz), "little")
        except TargetMemoryError:
            continue
        if v >> (8 * sz - 1):
            v -= mask + 1
        off = v * sign
        if (0 <= off < 1 << 20 if above else -(1 << 20) < off < 0) and off not in out:
            out.append(off)
    if above and out and facts.tls_size:
        # aarch64's code reaches some variables (tcache) from a neighbour's GOT slot
        # (section anchors): every word of libc's TLS block, from its first slot on
        out += [w for w in range(min(out), min(out) + facts.tls_size, sz) if w not in out]
    return out


def find_tcache_offset(target: Target, tps: list[int], p: Params,
                       offsets: list[int], endian: str = "little",
                       dummy_ok: Optional[list[Region]] = None, scan: int = TLS_SCAN
                       ) -> tuple[Optional[int], str]:
    """The thread-pointer offset at which every thread (pointers ``tps``) keeps its
    tcache pointer.

    ``offsets`` come from libc's relocations; when they are empty, every word in the
    ``scan`` bytes below the thread pointer is tried (a static executable's TLS block
    sits right there).  An offset is valid when some thread's value there is a tcache
    and no thread's value is a wrong one; the one valid in most threads wins, the
    nearest to the thread pointer on a tie.
    """
    sz = p.ptr_size
    tps = [tp for tp in tps if tp]
    if not tps:
        return None, "no thread pointer (fs_base/gs_base, tpidr_el0...) to find the TLS " \
            "tcache with"
    how = "libc's TPOFF relocations"
    cands = offsets
    if not cands:
        how = f"a scan of {scan:#x} bytes below the thread pointer"
        cands = list(range(-sz, -scan - 1, -sz))
    scores: list[tuple[int, int]] = []
    for off in cands:
        good = 0
        for tp in tps:
            try:
                v = int.from_bytes(target.read(tp + off, sz), endian)
            except TargetMemoryError:
                good = -1
                break
            if v == 0:
                continue
            if v & p.align_mask or check_tcache(target, v, p, endian, dummy_ok):
                good = -1
                break
            good += 1
        if good > 0:
            scores.append((good, off))
    if not scores:
        return None, f"no TLS word points at a tcache ({how})"
    best = max(scores, key=lambda s: (s[0], s[1]))[1]
    return best, f"thread pointer {best:+#x}, found by {how}"
