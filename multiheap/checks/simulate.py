"""pttry: what glibc's free(PTR) or malloc(SIZE) would do now, worked out from memory.

A model of the paths of malloc.c that matter for a diagnosis, in glibc's order of
checks; nothing runs in the target.  Returns lines of steps and the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from multiheap.checks.glibcmsg import message
from multiheap.errors import TargetMemoryError
from multiheap.heaptypes import IS_MMAPPED, NON_MAIN_ARENA, PREV_INUSE, SIZE_BITS


@dataclass
class Outcome:
    """Steps glibc takes, then either an abort message or where the chunk ends up."""

    operation: str
    steps: list[str] = field(default_factory=list)
    abort: Optional[str] = None
    result: Optional[int] = None  # malloc: the user pointer returned
    where: str = ""  # free: where the chunk goes

    def as_dict(self) -> dict:
        return {"operation": self.operation, "steps": self.steps,
                "glibc": {"message": self.abort, "operation": self.operation}
                if self.abort else None, "result": self.result, "where": self.where}


def _size(heap, addr: int) -> tuple[int, int]:
    prev, sf = heap.two.unpack(heap.mem.read(addr, 2 * heap.sz))
    return prev, sf


def _tcache(heap):
    for tc in heap.lists.tcaches():
        if tc.addr and tc.thread.num == min(t.thread.num for t in heap.lists.tcaches()):
            return tc
    return None


def try_free(heap, mem: int) -> Outcome:
    """free(mem) as glibc of the target's version would run it (the first thread's
    tcache)."""
    v, sz, p = heap.cfg.version, heap.sz, heap.p
    out = Outcome(f"free({mem:#x})")
    if mem == 0:
        out.where = "nothing (free(NULL))"
        return out
    c = mem - 2 * sz

    def abort(key: str, why: str) -> Outcome:
        out.steps.append(why)
        out.abort = message(v, key)
        if out.abort is None:
            out.where = "undefined: glibc has no check here (" + why + ")"
        return out

    try:
        prev, sf = _size(heap, c)
    except TargetMemoryError:
        out.steps.append(f"the chunk header at {c:#x} is unreadable: free() would crash")
        out.where = "crash (SIGSEGV)"
        return out
    size = sf & ~SIZE_BITS
    out.steps.append(f"chunk {c:#x}: size {size:#x}, flags {sf & SIZE_BITS:#x}")
    if (c + size) >= 1 << (8 * sz) or (c + 2 * sz) & p.align_mask:
        return abort("free_invalid_pointer", "the chunk is misaligned or wraps around")

    def munmap() -> Outcome:
        off, total = p.mmap_span(prev, size)
        if ((c - off) | total) & 0xfff:
            return abort("munmap", "mmapped chunk: its mapping is not page-aligned")
        out.where = f"munmap of {c - off:#x}..{c - off + total:#x}"
        return out

    if sf & IS_MMAPPED and v < (2, 42):  # 2.42 offers every chunk to the tcache first
        return munmap()
    tc = _tcache(heap) if p.has_tcache else None
    idx = p.tcache_index(size)
    if v >= (2, 42):  # size < tcache_max_bytes; past the small bins, a large bin
        takes = size < heap.mp["tcache_max_bytes"]
        if idx >= p.tcache_small_bins:
            idx = p.tcache_large_index(size)
            takes = takes and not (sf & IS_MMAPPED and not p.tcache_takes_mmapped)
    else:
        takes = size - sz <= heap.mp["tcache_max_bytes"]
    if tc is not None and takes and size >= p.minsize:
        fl = heap.lists.tcache_list(tc, idx) if idx < len(tc.bins) else None
        key = heap.mem.ptr(mem + sz) if p.tcache_key else None
        want = heap.target.symbol("tcache_key") if p.tcache_key_random else tc.addr
        if p.tcache_key_random and want:
            want = heap.mem.ptr(want)
        if key is not None and want and key == want:
            out.steps.append("its tcache key is set: glibc scans tcache bin "
                             f"{idx} for it")
            if fl is not None and c in fl.chunks:
                return abort("tcache_double_free", "the chunk is already in that bin")
            out.steps.append("not found there: no double free")
        if fl is not None:
            n = len(fl.chunks)
            full = fl.count_field is not None and (
                fl.count_field == 0 if p.tcache_counts_down  # 2.42: free slots left
                else n >= heap.mp["tcache_count"])
            if not full:
                out.where = f"tcache bin {idx} of thread {tc.thread.num} (size {size:#x})"
                return out
            out.steps.append(f"tcache bin {idx} is full ({n})")
    if sf & IS_MMAPPED:
        return munmap()
    if size < p.minsize or size & p.align_mask:
        return abort("free_invalid_size", f"size {size:#x} is impossible")
    found = heap.segment_of(c)
    arena = found[0] if found else None
    if sf & NON_MAIN_ARENA and (arena is None or arena.is_main):
        out.steps.append("NON_MAIN_ARENA is set: glibc reads the arena from a heap_info "
                         f"at {c & ~(heap.heap_max_size() - 1):#x}")
        out.where = "undefined (a bogus arena pointer)"
        return out
    if arena is None:
        arena = heap.arenas()[0]
        out.steps.append("the chunk is in no heap (glibc will use main_arena)")
    gmf = heap.global_max_fast
    nxt = c + size
    try:
        nprev, nsf = _size(heap, nxt)
    except TargetMemoryError:
        return abort("free_next_size", f"the next chunk at {nxt:#x} is unreadable")
    nsize = nsf & ~SIZE_BITS
    if p.has_fastbins and gmf is not None and size <= gmf:
        if nsize <= 2 * sz or nsize >= arena.f["system_mem"]:
            return abort("free_next_size_fast", f"next size {nsize:#x} is impossible")
        i = p.fastbin_index(size)
        head = arena.f["fastbinsY"][i]
        if head == c:
            return abort("fasttop", "the chunk is already at the fastbin's head")
        out.where = f"fastbin {i} of arena {arena.addr:#x}"
        return out
    if c == arena.top:
        return abort("free_top", "the chunk is the top chunk")
    top_end = arena.top + heap.top_size(arena)
    if arena.is_main and nxt >= top_end:
        return abort("free_out", "the next chunk is past the end of top")
    if not nsf & PREV_INUSE:
        return abort("free_prev", "the next chunk says this one is already free")
    if nsize <= 2 * sz or nsize >= arena.f["system_mem"]:
        return abort("free_next_size", f"next size {nsize:#x} is impossible")
    merged = [c]
    if not sf & PREV_INUSE:
        pc = c - prev
        try:
            _pp, psf = _size(heap, pc)
        except TargetMemoryError:
            out.where = "crash (SIGSEGV) reading the previous chunk"
            return out
        if (psf & ~SIZE_BITS) != prev and p.free_checks_prev_size:
            return abort("consolidating", f"prev_size {prev:#x} != size of {pc:#x}")
        err = _unlink_error(heap, pc)
        if err:
            return abort(err, f"unlinking the previous chunk {pc:#x} fails")
        out.steps.append(f"merges backward with {pc:#x}")
        merged.insert(0, pc)
    if nxt == arena.top:
        out.where = f"merged into top of arena {arena.addr:#x}"
        return out
    nn = heap.mem.ptr(nxt + nsize + sz)
    if not nn & PREV_INUSE:
        err = _unlink_error(heap, nxt)
        if err:
            return abort(err, f"unlinking the next chunk {nxt:#x} fails")
        out.steps.append(f"merges forward with {nxt:#x}")
    out.where = f"unsorted bin of arena {arena.addr:#x} (chunk {merged[0]:#x})"
    return out


def _unlink_error(heap, c: int) -> Optional[str]:
    sz = heap.sz
    try:
        _prev, sf = _size(heap, c)
        size = sf & ~SIZE_BITS
        if heap.mem.ptr(c + size) != size and heap.p.unlink_checks_prev_size:
            return "size_vs_prev"
        fd, bk = heap.mem.ptr(c + 2 * sz), heap.mem.ptr(c + 3 * sz)
        if heap.mem.ptr(fd + 3 * sz) != c or heap.mem.ptr(bk + 2 * sz) != c:
            return "unlink"
    except TargetMemoryError:
        return "unlink"
    return None


def try_malloc(heap, request: int) -> Outcome:
    """malloc(request): tcache, fastbin, small bin, then unsorted/large/top (the first
    thread's tcache, the main arena)."""
    v, sz, p = heap.cfg.version, heap.sz, heap.p
    out = Outcome(f"malloc({request:#x})")
    nb = max(p.minsize, (request + sz + p.align_mask) & ~p.align_mask)
    out.steps.append(f"chunk size {nb:#x}")
    arena = heap.arenas()[0]
    tc = _tcache(heap) if p.has_tcache else None
    if tc is not None and request <= heap.mp["tcache_max_bytes"]:
        idx = p.tcache_index(nb)
        fl = heap.lists.tcache_list(tc, idx) if idx < len(tc.bins) else None
        if fl is not None and (fl.chunks or fl.stop is not None):
            if fl.stop is not None and not fl.chunks:
                if "misaligned" in fl.stop.reason:
                    out.steps.append(f"tcache bin {idx}'s head {fl.stop.addr:#x} is misaligned")
                    out.abort = message(v, "tcache_unaligned")
                    if out.abort is None:
                        out.result = fl.stop.addr + 2 * sz
                    return out
                out.result = fl.stop.addr + 2 * sz
                out.where = f"tcache bin {idx} (a chunk its list should not hold)"
                return out
            out.result = fl.chunks[0] + 2 * sz
            out.where = f"tcache bin {idx} of thread {tc.thread.num}"
            return out
    gmf = heap.global_max_fast
    if p.has_fastbins and gmf is not None and nb <= gmf:
        i = p.fastbin_index(nb)
        fl = heap.lists.fastbin_list(arena, i)
        if fl.chunks:
            out.result = fl.chunks[0] + 2 * sz
            out.where = f"fastbin {i}"
            return out
        if fl.stop is not None:
            key = "fast_unaligned" if "misaligned" in fl.stop.reason else "fast_size"
            out.steps.append(f"fastbin {i}: {fl.stop.reason} at {fl.stop.addr:#x}")
            out.abort = message(v, key)
            return out
    if p.in_smallbin_range(nb):
        i = p.smallbin_index(nb)
        fl = heap.lists.bin_list(arena, i)
        if fl.chunks:
            last = fl.chunks[-1]
            bk = heap.mem.ptr(last + 3 * sz)
            if fl.stop is not None or heap.mem.ptr(bk + 2 * sz) != last:
                out.steps.append(f"small bin {i}: its last chunk's bk->fd is not it")
                out.abort = message(v, "small_links")
                return out
            out.result = last + 2 * sz
            out.where = f"small bin {i}"
            return out
    ul = heap.lists.bin_list(arena, 1)
    if ul.chunks:
        last = ul.chunks[-1]
        size = ul.sizes[-1]
        out.steps.append(f"sorting the unsorted bin from its last chunk {last:#x}")
        nprev, nsf = _size(heap, last + size)
        checks = (
            (size <= 2 * sz or size > arena.f["system_mem"], "unsorted_size"),
            ((nsf & ~SIZE_BITS) < 2 * sz or (nsf & ~SIZE_BITS) > arena.f["system_mem"],
             "unsorted_next_size"),
            (nprev != size, "unsorted_prev_size"),
            (heap.mem.ptr(heap.mem.ptr(last + 3 * sz) + 2 * sz) != last, "unsorted_links"),
            (bool(nsf & PREV_INUSE), "unsorted_prev_inuse"),
        )
        for bad, key in checks:
            if bad and message(v, key):
                out.abort = message(v, key)
                return out
        if size == nb:
            out.result = last + 2 * sz
            out.where = "unsorted bin (exact fit)"
            return out
        out.steps.append("(the sort of the rest of the unsorted bin is not modelled)")
    top = arena.top
    tsize = heap.top_size(arena)
    if tsize > arena.f["system_mem"] and message(v, "top_size"):
        out.abort = message(v, "top_size")
        out.steps.append(f"top size {tsize:#x} > system_mem")
        return out
    if tsize >= nb + p.minsize:
        out.result = top + 2 * sz
        out.where = f"split of top {top:#x}"
    else:
        out.where = "sysmalloc (top too small: the heap grows or a chunk is mmapped)"
    return out
