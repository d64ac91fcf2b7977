"""Memory images of a glibc heap, built from the layout tables, for versions we cannot run.

:func:`build_image` lays out what glibc X.Y would have in memory: libc's data with
``main_arena`` and ``mp_``, a main heap (the tcache first, in-use chunks, a chunk in
each kind of bin, fastbins where the version has them, tcache lists with the
version's link encoding and key), a second thread's arena in its own heap_info heap,
an mmapped chunk, and each thread's TLS slot for ``tcache``.  It returns the
:class:`ImageTarget` and what it placed (the expected answers), computed here
independently of the engine.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Optional

from multiheap.adapters.image import ImageTarget
from multiheap.layouts import Layout, Params, layout
from multiheap.target import Module

PREV_INUSE, IS_MMAPPED, NON_MAIN = 1, 2, 4
LIBC = "/nonexistent/libc.so.6"  # no file: the engine must work from memory alone
TCACHE_KEY = 0x5EED_1234_ABCD_0000  # 2.34+: tcache_key is random
TLS_OFFSET = -0x48  # where the TLS variable tcache sits below the thread pointer


@dataclass
class Expected:
    """What the image holds, as glibc would describe it."""

    tcache: dict[int, dict[int, list[int]]] = field(default_factory=dict)  # thread -> bin -> mems
    fast: dict[int, list[int]] = field(default_factory=dict)  # index -> chunk addrs
    bins: dict[int, list[int]] = field(default_factory=dict)  # bin index -> chunk addrs
    inuse: list[int] = field(default_factory=list)
    mallinfo2: dict[str, int] = field(default_factory=dict)
    tcache_structs: dict[int, int] = field(default_factory=dict)  # thread -> address
    mmapped: list[tuple[int, int, int]] = field(default_factory=list)  # addr, size, offset


@dataclass
class Image:
    target: ImageTarget
    version: tuple[int, int]
    ptr_size: int
    main_arena: int
    mp: int
    arena2: int
    expected: Expected
    segs: dict[int, bytes] = field(default_factory=dict)
    kwargs: dict = field(default_factory=dict)
    addrs: dict[str, int] = field(default_factory=dict)

    @property
    def params(self) -> Params:
        return Params(self.version, self.ptr_size)

    def patched(self, addr: int, data: bytes) -> ImageTarget:
        """The same image with ``data`` written at ``addr`` (a corruption)."""
        segs = dict(self.segs)
        for base, buf in segs.items():
            if base <= addr < base + len(buf):
                off = addr - base
                segs[base] = buf[:off] + data + buf[off + len(data):]
                return ImageTarget(segs, **self.kwargs)
        raise ValueError(f"{addr:#x} is not in the image")


class _Mem:
    """A writable segment of the image."""

    def __init__(self, base: int, size: int, sz: int) -> None:
        self.base, self.buf, self.sz = base, bytearray(size), sz
        self.word = struct.Struct("<Q" if sz == 8 else "<I")

    def put(self, addr: int, value: int, width: Optional[int] = None) -> None:
        w = width or self.sz
        self.buf[addr - self.base:addr - self.base + w] = \
            (value & ((1 << (8 * w)) - 1)).to_bytes(w, "little")

    def put_struct(self, L: Layout, addr: int, values: dict) -> None:
        for name, v in values.items():
            f = L.fields[name]
            vals = v if isinstance(v, (list, tuple)) else [v]
            for i, x in enumerate(vals):
                self.put(addr + f.offset + i * f.elem_size, x, f.elem_size)


def _addresses(sz: int) -> dict[str, int]:
    if sz == 8:
        return {"rodata": 0x7F0000000000, "data": 0x7F0000010000, "heap": 0x555555559000,
                "heap2": 0x7E0004000000, "mmap": 0x7F0000200000, "tls": 0x7F0000300000}
    return {"rodata": 0xF7E00000, "data": 0xF7E10000, "heap": 0x0804C000,
            "heap2": 0xF6000000, "mmap": 0xF7D00000, "tls": 0xF7C00000}


def build_image(version: tuple[int, int], ptr_size: int = 8, *, symbols: bool = True,
                tls_symbols: bool = True, banner: Optional[str] = None,
                dummy_tcache: bool = False, hide_tp: bool = False) -> Image:
    """The heap of glibc ``version`` after a small, known sequence of frees.

    ``dummy_tcache`` (2.43+): thread 2 has not used malloc yet, so its ``tcache``
    points at libc's static, read-only dummy struct.  ``hide_tp``: the host gives no
    thread pointers (the engine must find each struct pthread by its tid).
    """
    p = Params(version, ptr_size)  # only for bin index arithmetic
    # The version rules, written out here rather than taken from the engine's Params,
    # so that a wrong cut-over in the engine shows up as a failing test.
    sz = ptr_size
    align = 16 if sz == 4 and version >= (2, 26) else 2 * sz
    has_tcache, has_fast = version >= (2, 26), version < (2, 43)
    safe, fill = version >= (2, 32), 16 if version >= (2, 43) else 7
    minsize = (4 * sz + align - 1) & ~(align - 1)
    max_fast = (64 * sz // 4 + sz) & ~(align - 1)
    A = _addresses(sz)
    Ls = layout("malloc_state", version, sz)
    Lp = layout("malloc_par", version, sz)
    Lh = layout("heap_info", version, sz)
    Lt = layout("tcache_perthread_struct", version, sz) if has_tcache else None
    exp = Expected()

    data = _Mem(A["data"], 0x4000, sz)
    mp, main = A["data"] + 0x100, A["data"] + 0x400
    heap = _Mem(A["heap"], 0x21000, sz)
    heap2 = _Mem(A["heap2"], 0x21000, sz)
    tls = _Mem(A["tls"], 0x6000, sz)
    tps = {1: A["tls"] + 0x2000, 2: A["tls"] + 0x5000}

    def bin_at(arena: int, i: int) -> int:
        return arena + Ls.offset("bins") + (i - 1) * 2 * sz - 2 * sz

    def req2size(req: int) -> int:
        return max(minsize, (req + sz + align - 1) & ~(align - 1))

    # -- the main heap: chunks laid end to end -----------------------------------
    chunks: list[list] = []  # [addr, size, state, mem]
    first = A["heap"] + ((-(A["heap"] + 2 * sz)) % align)

    def lay(m: _Mem, start: int, plan: list[tuple[int, str]]) -> tuple[list[list], int]:
        out, addr = [], start
        for size, state in plan:
            out.append([addr, size, state, addr + 2 * sz])
            addr += size
        return out, addr

    plan: list[tuple[int, str]] = []
    if Lt is not None:
        plan.append((req2size(Lt.size), "tcache_struct"))
    guard = (0x50, "inuse")
    for size, state in [(0x20, "tcache0"), (0x20, "tcache0"), (0x20, "tcache0"),
                        (0x40, "tcache2"), (0x40, "tcache2"),
                        (0x30, "fast"), (0x30, "fast"),
                        (0x100, "small"), (0x200, "unsorted"), (0x500, "large"),
                        (0x90, "inuse")]:
        if state.startswith("tcache") and not has_tcache:
            state = "fast" if size <= max_fast else "unsorted"
        if state == "fast" and not has_fast:
            state = "tcache1"
        plan += [(size, state), guard]
    if version >= (2, 42):
        plan += [(0x1010, "tcache_large"), guard]
    chunks, top = lay(heap, first, plan)
    top_size = A["heap"] + len(heap.buf) - top

    tcache_main = chunks[0][3] if Lt is not None else 0
    lists: dict[str, list[list]] = {}
    for c in chunks:
        lists.setdefault(c[2], []).append(c)
    for i, c in enumerate(chunks):
        addr, size, state, _ = c
        prev_free = i > 0 and chunks[i - 1][2] in ("small", "unsorted", "large")
        heap.put(addr + sz, size | (0 if prev_free else PREV_INUSE))
        if prev_free:
            heap.put(addr, chunks[i - 1][1])
        if state in ("inuse", "tcache_struct"):
            exp.inuse.append(addr)
    heap.put(top + sz, top_size | (0 if chunks[-1][2] in ("small", "unsorted", "large")
                                   else PREV_INUSE))

    def protect(pos: int, ptr: int) -> int:
        return (pos >> 12) ^ ptr if safe else ptr

    # fastbins: singly linked chunk pointers, fd mangled from 2.32
    fast_heads = [0] * (Ls.fields["fastbinsY"].count if has_fast else 0)
    for c in lists.get("fast", []):
        idx = p.fastbin_index(c[1])
        exp.fast.setdefault(idx, []).append(c[0])
    for idx, addrs in exp.fast.items():
        for a, nxt in zip(addrs, addrs[1:] + [0]):
            heap.put(a + 2 * sz, protect(a + 2 * sz, nxt))
        fast_heads[idx] = addrs[0]

    # regular bins: doubly linked through the arena's bin headers
    bins = [0] * (2 * 127)
    for i in range(1, 128):
        bins[2 * (i - 1)] = bins[2 * i - 1] = bin_at(main, i)
    for state in ("unsorted", "small", "large"):
        for c in lists.get(state, []):
            i = 1 if state == "unsorted" else p.bin_index(c[1])
            exp.bins.setdefault(i, []).append(c[0])
    for i, addrs in exp.bins.items():
        b = bin_at(main, i)
        ring = [b] + addrs
        for k, a in enumerate(addrs):
            heap.put(a + 2 * sz, ring[(k + 2) % len(ring)])  # fd
            heap.put(a + 3 * sz, ring[k])  # bk
            if i >= 64:
                heap.put(a + 4 * sz, a)
                heap.put(a + 5 * sz, a)
        bins[2 * (i - 1)], bins[2 * i - 1] = addrs[0], addrs[-1]

    # tcache: user pointers, next mangled from 2.32, key from 2.29
    def fill_tcache(m: _Mem, tc: int, per_bin: dict[int, list[int]], thread: int) -> None:
        assert Lt is not None
        n = Lt.fields["entries"].count
        assert n == (76 if version >= (2, 42) else 64)
        counts, entries = [0] * n, [0] * n
        for idx, mems in per_bin.items():
            for mem, nxt in zip(mems, mems[1:] + [0]):
                m.put(mem, protect(mem, nxt))
                if version >= (2, 29):
                    m.put(mem + sz, TCACHE_KEY if version >= (2, 34) else tc)
            entries[idx], counts[idx] = mems[0], len(mems)
        if version >= (2, 42):  # num_slots: how many more fit, counting down
            counts = [fill - c for c in counts]
        name = "num_slots" if version >= (2, 42) else "counts"
        m.put_struct(Lt, tc, {name: counts, "entries": entries})
        exp.tcache[thread] = dict(per_bin)
        exp.tcache_structs[thread] = tc

    if Lt is not None:
        per_bin: dict[int, list[int]] = {}
        for state, cs in lists.items():
            if state.startswith("tcache") and state != "tcache_struct":
                for c in cs:
                    idx = 64 if state == "tcache_large" else p.tcache_index(c[1])
                    per_bin.setdefault(idx, []).append(c[3])
        fill_tcache(heap, tcache_main, per_bin, 1)

    # -- a second arena in its own heap (heap_info, then malloc_state) -------------
    arena2 = A["heap2"] + Lh.size
    start2 = arena2 + Ls.size
    start2 += (-(start2 + 2 * sz)) % align
    plan2: list[tuple[int, str]] = []
    if Lt is not None:
        plan2.append((req2size(Lt.size), "tcache_struct"))
    plan2 += [(0x20, "t2"), (0x60, "inuse")]
    chunks2, top2 = lay(heap2, start2, plan2)
    top2_size = A["heap2"] + len(heap2.buf) - top2
    for c in chunks2:
        heap2.put(c[0] + sz, c[1] | PREV_INUSE | NON_MAIN)
        if c[2] != "t2" or Lt is None:
            exp.inuse.append(c[0])
    heap2.put(top2 + sz, top2_size | PREV_INUSE)
    hinfo = {"ar_ptr": arena2, "prev": 0, "size": len(heap2.buf),
             "mprotect_size": len(heap2.buf)}
    if "pagesize" in Lh:
        hinfo["pagesize"] = 0x1000
    heap2.put_struct(Lh, A["heap2"], hinfo)
    if Lt is not None:
        fill_tcache(heap2, chunks2[0][3], {p.tcache_index(0x20): [chunks2[1][3]]}, 2)
    bins2 = [0] * (2 * 127)
    for i in range(1, 128):
        bins2[2 * (i - 1)] = bins2[2 * i - 1] = bin_at(arena2, i)
    st2: dict = {"top": top2, "bins": bins2, "next": main, "attached_threads": 1,
                 "system_mem": len(heap2.buf), "max_system_mem": len(heap2.buf),
                 "flags": 2}
    heap2.put_struct(Ls, arena2, st2)

    # -- main_arena, mp_ ------------------------------------------------------------
    st: dict = {"top": top, "bins": bins, "next": arena2, "attached_threads": 1,
                "system_mem": len(heap.buf), "max_system_mem": len(heap.buf)}
    if has_fast:
        st["fastbinsY"] = fast_heads
        if "have_fastchunks" in Ls:
            st["have_fastchunks"] = 1 if exp.fast else 0
    data.put_struct(Ls, main, st)
    mmap_size = 0x21000
    par = {"trim_threshold": 128 << 10, "top_pad": 128 << 10, "mmap_threshold": 128 << 10,
           "arena_test": 8 if sz == 8 else 2, "arena_max": 0, "n_mmaps": 1,
           "n_mmaps_max": 65536, "max_n_mmaps": 1, "mmapped_mem": mmap_size,
           "max_mmapped_mem": mmap_size, "sbrk_base": A["heap"]}
    if has_tcache:
        par[("tcache_small_bins" if version >= (2, 42) else "tcache_bins")] = 64
        par["tcache_max_bytes"] = (63 * align + minsize - sz)
        par["tcache_count"] = fill
    data.put_struct(Lp, mp, par)
    gmf = A["data"] + 0x3F00
    if has_fast:
        data.put(gmf, max_fast, 1 if version >= (2, 37) else sz)
        if version >= (2, 37):  # a neighbour, so that reading a whole word shows
            data.put(gmf + 1, 0xA5, 1)

    # -- an mmapped chunk, the threads' TLS -----------------------------------------
    mm = _Mem(A["mmap"], mmap_size, sz)
    mm_off = align - 2 * sz  # i386: 8 bytes in, for a 16-aligned user pointer
    mm_size = mmap_size - mm_off - (2 * sz if version >= (2, 43) else 0)  # 2.43: a header
    mm.put(A["mmap"] + mm_off, mm_off)
    mm.put(A["mmap"] + mm_off + sz, mm_size | IS_MMAPPED)
    exp.mmapped = [(A["mmap"] + mm_off, mm_size, mm_off)]
    dummy = A["rodata"] + 0x800
    if dummy_tcache:
        exp.tcache[2] = {}
        exp.tcache_structs[2] = dummy
    for t, tp in tps.items():
        tls.put(tp + TLS_OFFSET, exp.tcache_structs.get(t, 0))
        tls.put(tp, tp)  # tcbhead_t: tcb and self point at the struct itself
        tls.put(tp + 2 * sz, tp)
        tls.put(tp + (0x2D0 if sz == 8 else 0x1A0), 1000 + t, 4)  # struct pthread.tid
    # a decoy near the tcache slot: a pointer to an in-use chunk (not a tcache)
    tls.put(tps[1] - 0x10, chunks[-2][3] if len(chunks) > 1 else 0)

    # -- expected mallinfo2 (glibc's int_mallinfo) --------------------------------------
    binned = [c for s in ("small", "unsorted", "large") for c in lists.get(s, [])]
    fast = lists.get("fast", []) if has_fast else []
    avail = top_size + sum(c[1] for c in binned) + sum(c[1] for c in fast)
    avail2 = top2_size
    exp.mallinfo2 = {
        "arena": len(heap.buf) + len(heap2.buf),
        "ordblks": 1 + len(binned) + 1, "smblks": len(fast), "hblks": 1,
        "hblkhd": mmap_size, "uordblks": len(heap.buf) - avail + len(heap2.buf) - avail2,
        "fordblks": avail + avail2, "fsmblks": sum(c[1] for c in fast),
        "keepcost": top_size}

    text = banner if banner is not None else \
        f"GNU C Library (Image) stable release version {version[0]}.{version[1]}."
    rodata = bytearray(0x1000)
    rodata[0x100:0x100 + len(text)] = text.encode()
    syms = {"main_arena": main, "mp_": mp} if symbols else {}
    if symbols and has_fast:
        syms["global_max_fast"] = gmf
    tlsmap = {("tcache", t): tp + TLS_OFFSET for t, tp in tps.items()} \
        if tls_symbols and has_tcache else {}
    segs = {A["rodata"]: bytes(rodata), A["data"]: bytes(data.buf),
            A["heap"]: bytes(heap.buf), A["heap2"]: bytes(heap2.buf),
            A["mmap"]: bytes(mm.buf), A["tls"]: bytes(tls.buf)}
    kwargs = dict(pointer_size=sz, arch="x86_64" if sz == 8 else "i386",
                  symbols=syms, threads={t: None for t in tps} if hide_tp else tps,
                  tls=tlsmap,
                  modules=[Module(LIBC, A["rodata"])],
                  region_names={A["rodata"]: LIBC, A["data"]: LIBC, A["heap"]: "[heap]"})
    return Image(ImageTarget(segs, **kwargs), version, sz, main, mp, arena2, exp, segs,
                 kwargs, dict(A, gmf=gmf, tls1=tps[1], tls2=tps[2]))
