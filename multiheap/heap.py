"""The ptmalloc model of one target at one stop: arenas, heaps, chunks, free lists.

Every walk is bounded (step limit, cycle detection, stop at unreadable memory or an
impossible size) and records where and why it stopped in a :class:`Stop`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from multiheap.errors import MultiheapError, TargetMemoryError, UsageError
from multiheap.layouts import Layout, layout
from multiheap.locate import Config, Overrides, guess_tcache_offset, thread_pointer
from multiheap.memory import Memory
from multiheap.target import Target, Thread

PREV_INUSE, IS_MMAPPED, NON_MAIN_ARENA = 1, 2, 4
SIZE_BITS = 7
MAX_ARENAS = 4096
MAX_LIST = 10_000_000  # free-list steps before we call a list runaway


@dataclass(frozen=True)
class Stop:
    """Where a walk stopped early, and why."""

    addr: int
    reason: str

    def message(self, what: str) -> str:
        return f"{what} stopped at {self.addr:#x}: {self.reason}"

    def as_dict(self) -> dict:
        return {"addr": self.addr, "reason": self.reason}


@dataclass
class Chunk:
    """One chunk header (and its free-list links)."""

    addr: int
    prev_size: int
    size_field: int
    fd: int
    bk: int
    fd_nextsize: int
    bk_nextsize: int
    ptr_size: int

    @property
    def size(self) -> int:
        return self.size_field & ~SIZE_BITS

    @property
    def flags(self) -> int:
        return self.size_field & SIZE_BITS

    @property
    def mem(self) -> int:
        return self.addr + 2 * self.ptr_size


@dataclass
class HeapSegment:
    """A contiguous run of chunks: the main heap, or one heap_info heap of an arena."""

    info: Optional[int]  # heap_info address (None for the main arena's heap)
    start: int  # first chunk
    end: int  # one past the last byte that may hold chunks
    fields: dict = field(default_factory=dict)


@dataclass
class Arena:
    """A malloc_state and the heaps it owns."""

    addr: int
    index: int
    is_main: bool
    f: dict
    heaps: list[HeapSegment] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)

    @property
    def top(self) -> int:
        return self.f["top"]

    @property
    def next(self) -> int:
        return self.f["next"]


@dataclass
class FreeList:
    """One free list (bin, fastbin, tcache bin) as walked: chunk addresses in order."""

    kind: str  # unsorted / small / large / fast / tcache
    index: int
    chunks: list[int] = field(default_factory=list)  # chunk addresses
    sizes: list[int] = field(default_factory=list)
    stop: Optional[Stop] = None
    count_field: Optional[int] = None  # tcache counts/num_slots as stored


@dataclass
class Tcache:
    """One thread's tcache_perthread_struct."""

    thread: Thread
    addr: Optional[int]
    how: str
    bins: list[FreeList] = field(default_factory=list)


class Heap:
    """The engine's view of one target.  Build one per stop; everything is cached."""

    def __init__(self, target: Target, config: Config,
                 overrides: Optional[Overrides] = None) -> None:
        self.target = target
        self.cfg = config
        self.overrides = overrides or Overrides()
        self.p = config.params
        self.sz = config.ptr_size
        self.mem = Memory(target, self.sz, config.endian)
        e = "<" if config.endian == "little" else ">"
        w = "Q" if self.sz == 8 else "I"
        self._word = struct.Struct(e + w)
        self._two = struct.Struct(e + w + w)
        self.L_state = self._layout("malloc_state")
        self.L_par = self._layout("malloc_par")
        self.L_heap = self._layout("heap_info")
        self.L_chunk = self._layout("malloc_chunk")
        self.L_tcache = self._layout("tcache_perthread_struct") if self.p.has_tcache else None
        self._arenas: Optional[list[Arena]] = None
        self._mp: Optional[dict] = None
        self._tcaches: Optional[list[Tcache]] = None
        self._free_index: Optional[dict[int, str]] = None
        self._bins: dict[int, list[FreeList]] = {}
        self._fast: dict[int, list[FreeList]] = {}
        self._lists: dict[tuple[str, int, int], FreeList] = {}  # one walked list each
        self._members: dict[int, set[int]] = {}  # id(FreeList) -> its chunks, as a set
        self._tc_heads: Optional[list[Tcache]] = None
        self._tc_struct: dict[int, Optional[dict]] = {}
        self._preloaded = False
        self.notes: list[str] = list(config.warnings)

    def _layout(self, name: str) -> Layout:
        return layout(name, self.cfg.version, self.sz, self.cfg.endian)

    # helpers -------------------------------------------------------------------
    def read_struct(self, lay: Layout, addr: int) -> dict:
        return lay.parse(self.mem.read(addr, lay.size))

    def reveal(self, pos: int, value: int) -> int:
        """Undo safe-linking (PROTECT_PTR) for a pointer stored at ``pos``."""
        return (pos >> 12) ^ value if self.p.safe_linking else value

    def aligned(self, addr: int) -> bool:
        return (addr + 2 * self.sz) & self.p.align_mask == 0

    def chunk(self, addr: int) -> Chunk:
        data = self.mem.read(addr, 2 * self.sz)
        prev, size = self._two.unpack(data)
        try:
            links = self.mem.read(addr + 2 * self.sz, 4 * self.sz)
            fd, bk = self._two.unpack_from(links, 0)
            fdn, bkn = self._two.unpack_from(links, 2 * self.sz)
        except TargetMemoryError:
            fd = bk = fdn = bkn = 0
        return Chunk(addr, prev, size, fd, bk, fdn, bkn, self.sz)

    # mp_ and arenas ------------------------------------------------------------
    @property
    def mp(self) -> dict:
        if self._mp is None:
            self._mp = self.read_struct(self.L_par, self.cfg.mp)
        return self._mp

    @property
    def global_max_fast(self) -> Optional[int]:
        if self.cfg.global_max_fast is None or not self.p.has_fastbins:
            return None
        width = 1 if self.cfg.version >= (2, 37) else self.sz
        data = self.mem.read(self.cfg.global_max_fast, width)
        return int.from_bytes(data, self.cfg.endian)

    def arenas(self) -> list[Arena]:
        """All arenas, main first, following ``next`` (bounded, cycle-checked)."""
        if self._arenas is not None:
            return self._arenas
        out: list[Arena] = []
        seen: set[int] = set()
        addr = self.cfg.main_arena
        while True:
            try:
                f = self.read_struct(self.L_state, addr)
            except TargetMemoryError as e:
                if not out:
                    raise MultiheapError(
                        f"main_arena at {addr:#x} is unreadable: {e}") from None
                out[-1].stops.append(Stop(addr, "next arena is unreadable"))
                break
            arena = Arena(addr, len(out), addr == self.cfg.main_arena, f)
            self._find_heaps(arena)
            out.append(arena)
            seen.add(addr)
            nxt = f["next"]
            if nxt == self.cfg.main_arena:
                break
            if nxt in seen or nxt == 0 or len(out) >= MAX_ARENAS:
                arena.stops.append(Stop(nxt, "arena list does not return to main_arena"))
                break
            addr = nxt
        self._arenas = out
        return out

    def arena_at(self, addr: int) -> Arena:
        for a in self.arenas():
            if a.addr == addr:
                return a
        known = ", ".join(f"{a.addr:#x}" for a in self.arenas())
        raise UsageError(f"{addr:#x} is not an arena (arenas: {known})")

    def top_size(self, arena: Arena) -> int:
        try:
            return self.chunk(arena.top).size
        except TargetMemoryError:
            return 0

    def heap_max_size(self) -> int:
        # 2 * DEFAULT_MMAP_THRESHOLD_MAX
        return 2 * (4 * 1024 * 1024 * self.sz if self.sz == 8 else 512 * 1024)

    def first_chunk(self, after: int) -> int:
        """The first chunk at or after ``after`` whose user pointer is aligned."""
        mis = (after + 2 * self.sz) & self.p.align_mask
        return after + (self.p.malloc_alignment - mis if mis else 0)

    def _find_heaps(self, arena: Arena) -> None:
        top = arena.top
        if arena.is_main:
            base = self.mp["sbrk_base"]
            if base == 0 or top == 0:
                return  # malloc not used yet
            top_size = self.top_size(arena)
            end = top + top_size
            start = self.first_chunk(base)
            if not start <= top < end:
                arena.stops.append(Stop(top, "top is not inside the main heap"))
                end = start
            elif end - base > max(arena.f["system_mem"], 0) + 0x1000:
                # A corrupted top size must not make us read terabytes.
                arena.stops.append(Stop(top, f"top size {top_size:#x} runs past system_mem "
                                             f"{arena.f['system_mem']:#x}"))
                end = top + 4 * self.sz
            arena.heaps.append(HeapSegment(None, start, end))
            return
        # non-main: heap_info of the top chunk's heap, then the prev chain
        hmax = self.heap_max_size()
        h = top & ~(hmax - 1)
        segs: list[HeapSegment] = []
        seen: set[int] = set()
        while h and h not in seen and len(segs) < 65536:
            seen.add(h)
            try:
                hf = self.read_struct(self.L_heap, h)
            except TargetMemoryError:
                arena.stops.append(Stop(h, "heap_info is unreadable"))
                break
            if hf["ar_ptr"] != arena.addr:
                arena.stops.append(
                    Stop(h, f"heap_info.ar_ptr is {hf['ar_ptr']:#x}, not this arena"))
                break
            if not 0 < hf["size"] <= hmax:
                arena.stops.append(Stop(h, f"heap_info.size {hf['size']:#x} is impossible "
                                           f"(at most {hmax:#x})"))
                break
            after = h + self.L_heap.size
            if after == arena.addr:
                after += self.L_state.size
            segs.append(HeapSegment(h, self.first_chunk(after), h + hf["size"], hf))
            h = hf["prev"]
        arena.heaps = segs[::-1]

    def arena_of(self, addr: int) -> Optional[Arena]:
        for a in self.arenas():
            for s in a.heaps:
                if s.start <= addr < s.end:
                    return a
        return None

    def segment_of(self, addr: int) -> Optional[tuple[Arena, HeapSegment]]:
        for a in self.arenas():
            for s in a.heaps:
                if s.start <= addr < s.end:
                    return a, s
        return None

    # walking chunks ------------------------------------------------------------
    def walk(self, arena: Arena, seg: HeapSegment, stops: list[Stop],
             limit: Optional[int] = None, classify: bool = True,
             flag_names: Optional[Sequence[Any]] = None) -> Iterator[tuple[int, int, Any, str]]:
        """Yield (addr, size, flags, state) for each chunk of a segment, in order.

        The walk ends at the top chunk, at a fencepost, or where a size is impossible
        (recorded in ``stops``).  ``limit`` caps the number of chunks; ``flag_names``
        maps the 3 flag bits to what the caller shows instead of the number.  Chunks are read
        in batches by a tight loop over the segment's bytes; a chunk's state comes from
        the free lists, else from its successor's PREV_INUSE bit.
        """
        special = self.free_index() if classify else {}
        try:
            buf, base = self.mem.load(seg.start, seg.end)
        except TargetMemoryError:
            stops.append(Stop(seg.start, "heap memory is unreadable"))
            return
        end = min(seg.end, base + len(buf)) - base  # offsets from here on
        top = arena.top - base
        unpack = self._word.unpack_from
        sz, minsize, bad = self.sz, self.p.minsize, self.p.align_mask & ~SIZE_BITS
        o = seg.start - base
        left = limit if limit is not None else -1
        batch = 65536
        while left:
            offs: list[int] = []
            sfs: list[int] = []
            stop: Optional[Stop] = None
            at_top = False
            n = batch if left < 0 else min(batch, left)
            while n:
                if o + 2 * sz > end:
                    if o + base < seg.end:
                        stop = Stop(o + base, "chunk header is unreadable")
                    break
                sf = unpack(buf, o + sz)[0]
                if o == top:
                    at_top = True
                    break
                size = sf & ~SIZE_BITS
                if size == 0 and o + base >= seg.start + minsize:
                    break  # fencepost at the end of an old heap
                if sf & bad or size < minsize:
                    stop = Stop(o + base, f"impossible chunk size {sf:#x}")
                    break
                if o + size > end:
                    stop = Stop(o + base, f"size {size:#x} runs past the heap end {seg.end:#x}")
                    break
                offs.append(o)
                sfs.append(sf)
                o += size
                n -= 1
            # each chunk's state needs the PREV_INUSE bit of the chunk after it
            nxt = sfs[1:]
            nxt.append(unpack(buf, o + sz)[0] if o + 2 * sz <= end else PREV_INUSE)
            get = special.get
            fl = flag_names if flag_names is not None else range(8)
            yield from [(x + base, sf & ~SIZE_BITS, fl[sf & SIZE_BITS],
                         get(x + base) or ("inuse" if ns & PREV_INUSE else "free"))
                        for x, sf, ns in zip(offs, sfs, nxt)]
            if left > 0:
                left -= len(offs)
            if stop is not None:
                stops.append(stop)
                return
            if at_top and left:
                sf = unpack(buf, o + sz)[0]
                size = sf & ~SIZE_BITS
                yield o + base, size, (flag_names or range(8))[sf & SIZE_BITS], "top"
                if o + base + size not in (seg.end, end + base):
                    stops.append(Stop(o + base, f"top size {size:#x} does not end at the "
                                                f"heap end {seg.end:#x}"))
                return
            if n:  # ended early: fencepost, or out of bytes
                return

    # free lists ---------------------------------------------------------------
    def preload(self) -> None:
        """Read every heap segment in one request each, before lists are walked."""
        if self._preloaded:
            return
        self._preloaded = True
        for a in self.arenas():
            for seg in a.heaps:
                try:
                    self.mem.load(seg.start, seg.end)
                except TargetMemoryError:
                    pass

    def _walk_list(self, fl: FreeList, first: int, end: int, protect: bool = False,
                   ptr_bias: int = 0, index_of=None, exact: int = 0) -> None:
        """Follow the links of one free list from chunk ``first`` until ``end``.

        The link is the word at chunk + 2*SIZE_SZ; ``protect`` undoes safe-linking;
        ``ptr_bias`` is subtracted from stored pointers (tcache links user pointers).
        ``index_of(size)`` must give ``fl.index`` for every chunk (a bin check); lists
        of one size (fastbins, tcache bins) pass that size as ``exact`` instead, which
        is cheaper per chunk.
        """
        self.preload()
        sz = self.sz
        link = 2 * sz
        mask = self.p.align_mask
        unpack = self._two.unpack_from
        mem = self.mem
        seen: set[int] = set()
        add, chunk, size_of = seen.add, fl.chunks.append, fl.sizes.append
        want = fl.index
        blk = mem.block(first)
        lo, hi, buf = blk if blk is not None else (0, 0, b"")
        p = first
        n = len(fl.chunks)
        while p != end:
            if p in seen:
                fl.stop = Stop(p, "cycle: this chunk is already in the list")
                return
            if (p + link) & mask:
                fl.stop = Stop(p, "misaligned chunk address (corrupted link?)")
                return
            if not (lo <= p and p + link + sz <= hi):
                blk = mem.block(p)
                if blk is None or p + link + sz > blk[1]:
                    try:
                        mem.read(p, link + sz)
                    except TargetMemoryError:
                        fl.stop = Stop(p, "unreadable chunk")
                        return
                    blk = mem.block(p)
                lo, hi, buf = blk
            sf, nxt = unpack(buf, p - lo + sz)  # the size word, then fd (the link)
            size = sf & ~SIZE_BITS
            if exact:
                if size != exact:
                    fl.stop = Stop(p, f"chunk size {size:#x} does not belong in {fl.kind} "
                                      f"bin {want} (size {exact:#x})")
                    return
            elif index_of is not None and index_of(size) != want:
                fl.stop = Stop(p, f"chunk size {size:#x} does not belong in {fl.kind} "
                                  f"bin {want}")
                return
            add(p)
            chunk(p)
            size_of(size)
            n += 1
            if n >= MAX_LIST:
                fl.stop = Stop(p, f"more than {MAX_LIST} chunks: runaway list")
                return
            if protect:
                nxt ^= (p + link) >> 12
            if ptr_bias:
                nxt = nxt - ptr_bias if nxt else end
            p = nxt

    def chunk_size(self, addr: int) -> int:
        return self.mem.ptr(addr + self.sz) & ~SIZE_BITS

    def bin_address(self, arena: Arena, i: int) -> int:
        """bin_at(arena, i): the fake chunk whose fd/bk are bins[2(i-1)], bins[2i-1]."""
        return arena.addr + self.L_state.offset("bins") + (i - 1) * 2 * self.sz - 2 * self.sz

    def bin_list(self, arena: Arena, i: int) -> FreeList:
        """Bin ``i`` (1 = unsorted) of an arena, walked along fd (cached)."""
        key = ("bin", arena.addr, i)
        fl = self._lists.get(key)
        if fl is None:
            kind = "unsorted" if i == 1 else ("small" if i < 64 else "large")
            fl = FreeList(kind, i)
            first = arena.f["bins"][2 * (i - 1)]
            b = self.bin_address(arena, i)
            if first != b:
                self._walk_list(fl, first, b, index_of=None if i == 1 else self.p.bin_index)
                if i == 1 and fl.stop is None:
                    tiny = [a for a, s in zip(fl.chunks, fl.sizes) if s < self.p.minsize]
                    if tiny:
                        fl.stop = Stop(tiny[0], "impossible chunk size in the unsorted bin")
            self._lists[key] = fl
        return fl

    def bins(self, arena: Arena) -> list[FreeList]:
        """Bins 1 (unsorted) to 127."""
        if arena.addr not in self._bins:
            self._bins[arena.addr] = [self.bin_list(arena, i) for i in range(1, 128)]
        return self._bins[arena.addr]

    def fastbin_list(self, arena: Arena, i: int) -> FreeList:
        """Fastbin ``i`` of an arena (cached)."""
        key = ("fast", arena.addr, i)
        fl = self._lists.get(key)
        if fl is None:
            fl = FreeList("fast", i)
            head = arena.f["fastbinsY"][i]
            if head:
                self._walk_list(fl, head, 0, self.p.safe_linking,
                                exact=self.p.fastbin_size(i))
            self._lists[key] = fl
        return fl

    def fastbins(self, arena: Arena) -> list[FreeList]:
        if not self.p.has_fastbins:
            return []
        if arena.addr not in self._fast:
            self._fast[arena.addr] = [self.fastbin_list(arena, i)
                                      for i in range(len(arena.f["fastbinsY"]))]
        return self._fast[arena.addr]

    # tcache --------------------------------------------------------------------
    def tcache_heads(self) -> list[Tcache]:
        """Each thread's tcache pointer, lists not walked yet (cached)."""
        if self._tc_heads is None:
            self._tc_heads = []
            if self.L_tcache is not None:
                offset = self.overrides.tcache_offset
                for t in self.target.threads():
                    addr, how = self._tcache_pointer(t, offset)
                    self._tc_heads.append(Tcache(t, addr, how))
        return self._tc_heads

    def tcaches(self) -> list[Tcache]:
        """Each thread's tcache with every bin walked (empty list before glibc 2.26)."""
        if self._tcaches is None:
            for tc in self.tcache_heads():
                if tc.addr and not tc.bins:
                    self._tcache_bins(tc)
            self._tcaches = self.tcache_heads()
        return self._tcaches

    def _tcache_pointer(self, t: Thread, offset: Optional[int]) -> tuple[Optional[int], str]:
        tp = None
        if offset is None:
            try:
                slot = self.target.tls_symbol("tcache", t)
            except MultiheapError:
                slot = None
            if slot is not None:
                try:
                    return self.mem.ptr(slot), "debug info (TLS variable tcache)"
                except TargetMemoryError:
                    return None, f"TLS slot {slot:#x} is unreadable"
        tp = thread_pointer(self.target, self.cfg, t)  # the register, else memory
        how = f"thread pointer {offset:+#x}" if offset is not None else ""
        if offset is None:  # no debug info for the TLS variable: heuristics
            offset, how = guess_tcache_offset(self.target, self.cfg, self.target.threads())
        if offset is not None and tp is not None:
            try:
                return self.mem.ptr(tp + offset), how
            except TargetMemoryError:
                return None, f"thread pointer {tp:#x}{offset:+#x} is unreadable"
        return None, f"not found (no debug info for the TLS variable tcache; {how})"

    def _tcache_fields(self, tc: Tcache) -> Optional[dict]:
        assert self.L_tcache is not None and tc.addr is not None
        if tc.addr not in self._tc_struct:
            try:
                self._tc_struct[tc.addr] = self.read_struct(self.L_tcache, tc.addr)
            except TargetMemoryError:
                self._tc_struct[tc.addr] = None
                tc.how += "; struct unreadable"
        return self._tc_struct[tc.addr]

    def tcache_list(self, tc: Tcache, i: int) -> FreeList:
        """Bin ``i`` of one thread's tcache (cached)."""
        key = ("tcache", tc.addr or 0, i)
        fl = self._lists.get(key)
        if fl is None:
            f = self._tcache_fields(tc)
            p = self.p
            fl = FreeList("tcache", i, count_field=f[p.counts_field][i] if f else None)
            head = f["entries"][i] if f else 0
            if head:
                self._walk_list(fl, head - 2 * self.sz, -1, p.safe_linking,
                                ptr_bias=2 * self.sz,
                                exact=(p.tcache_size(i) or 0) if i < p.tcache_small_bins else 0)
            self._lists[key] = fl
        return fl

    def _tcache_bins(self, tc: Tcache) -> None:
        f = self._tcache_fields(tc)
        if f is not None:
            tc.bins = [self.tcache_list(tc, i) for i in range(len(f["entries"]))]

    def _listed(self, fl: FreeList, addr: int) -> bool:
        members = self._members.get(id(fl))
        if members is None:
            members = self._members[id(fl)] = set(fl.chunks)
        return addr in members

    def _listed_state(self, c: Chunk) -> Optional[str]:
        """Which free list holds chunk ``c``, looking only where its size can be."""
        p, size = self.p, c.size
        if size < p.minsize or size & p.align_mask:
            return None
        if self.L_tcache is not None:
            i = p.tcache_index(size)
            idx = [i] if i < p.tcache_small_bins else \
                list(range(p.tcache_small_bins, p.tcache_max_bins))
            for tc in self.tcache_heads():
                f = self._tcache_fields(tc) if tc.addr else None
                for j in idx:
                    if f is not None and j < len(f["entries"]) \
                            and self._listed(self.tcache_list(tc, j), c.addr):
                        return "tcache"
        arena = self.arena_of(c.addr)
        if arena is None:
            return None
        if p.has_fastbins:
            i = p.fastbin_index(size)
            if 0 <= i < len(arena.f["fastbinsY"]) \
                    and self._listed(self.fastbin_list(arena, i), c.addr):
                return "fast"
        for i in (1, p.bin_index(size)):
            if 1 <= i < 128 and self._listed(self.bin_list(arena, i), c.addr):
                return "free"
        return None

    # classification ------------------------------------------------------------
    def free_index(self) -> dict[int, str]:
        """Chunk address -> "tcache" / "fast" / "free" for every listed free chunk."""
        if self._free_index is not None:
            return self._free_index
        idx: dict[int, str] = {}
        for a in self.arenas():
            for fl in self.bins(a):
                idx.update(dict.fromkeys(fl.chunks, "free"))
            for fl in self.fastbins(a):
                idx.update(dict.fromkeys(fl.chunks, "fast"))
        for tc in self.tcaches():
            for fl in tc.bins:
                idx.update(dict.fromkeys(fl.chunks, "tcache"))
        self._free_index = idx
        return idx

    def chunk_state(self, c: Chunk) -> str:
        if c.flags & IS_MMAPPED:
            return "mmapped"
        for a in self.arenas():
            if c.addr == a.top:
                return "top"
        if self._free_index is not None:
            st = self._free_index.get(c.addr)
        else:  # one chunk: only the lists its size can be in
            st = self._listed_state(c)
        if st:
            return st
        try:
            nxt = self.mem.ptr(c.addr + c.size + self.sz)
        except TargetMemoryError:
            return "inuse"
        return "inuse" if nxt & PREV_INUSE else "free"

    def census(self, arena: Arena, stops: list[Stop]) -> dict[str, list[int]]:
        """{state: [count, bytes]} for the arena's chunks (top excluded).

        A bare walk counts every chunk; the free lists say which are free, fast or
        tcache; the rest are in use.  If the walk stops early, or finds free chunks no
        list knows, it falls back to classifying chunk by chunk.
        """
        out = {k: [0, 0] for k in ("inuse", "free", "fast", "tcache")}
        total_n = total_b = unlisted = 0
        own: list[Stop] = []
        for seg in arena.heaps:
            n, b, u = self._bare_walk(arena, seg, own)
            total_n, total_b, unlisted = total_n + n, total_b + b, unlisted + u
        listed_free = sum(len(fl.chunks) for fl in self.bins(arena))
        if own or unlisted != listed_free:
            for seg in arena.heaps:
                for _a, size, _f, st in self.walk(arena, seg, stops):
                    if st != "top":
                        out[st][0] += 1
                        out[st][1] += size
            return out
        # An arena's own bins hold only its chunks; a thread's tcache may hold any
        # arena's, so those are counted by address.
        for st, fls in (("free", self.bins(arena)), ("fast", self.fastbins(arena))):
            for fl in fls:
                out[st][0] += len(fl.sizes)
                out[st][1] += sum(fl.sizes)
        spans = [(s.start, s.end) for s in arena.heaps]
        acc = out["tcache"]
        for tc in self.tcaches():
            for fl in tc.bins:
                for a, size in zip(fl.chunks, fl.sizes):
                    if any(lo <= a < hi for lo, hi in spans):
                        acc[0] += 1
                        acc[1] += size
        out["inuse"] = [total_n - sum(v[0] for v in out.values()),
                        total_b - sum(v[1] for v in out.values())]
        return out

    def _bare_walk(self, arena: Arena, seg: HeapSegment,
                   stops: list[Stop]) -> tuple[int, int, int]:
        """(chunks, bytes, chunks marked free by their successor) up to top.

        The hot loop of ptstats: one read of the segment, then only the size words.
        Anything unusual (no top here, a bad size) falls back to :meth:`walk`, which
        says where and why it stopped.
        """
        top = arena.top
        if seg.start <= top < seg.end:
            try:
                buf, base = self.mem.load(seg.start, seg.end)
            except TargetMemoryError:
                buf, base = b"", seg.start
            o0, o_top = seg.start - base, top - base
            if 0 <= o0 and o_top + 2 * self.sz <= len(buf):
                unpack = self._word.unpack_from
                sz, minsize = self.sz, self.p.minsize
                bad = self.p.align_mask & ~SIZE_BITS  # misaligned size bits
                o, n, free = o0, 0, 0
                while o < o_top:
                    sf = unpack(buf, o + sz)[0]
                    if sf & bad or sf < minsize:
                        break
                    if not sf & PREV_INUSE:
                        free += 1
                    n += 1
                    o += sf & ~SIZE_BITS
                if o == o_top:
                    if not unpack(buf, o + sz)[0] & PREV_INUSE:
                        free += 1
                    return n, o_top - o0, free
        n = total = unlisted = 0
        for _a, size, _flags, st in self.walk(arena, seg, stops, classify=False):
            if st == "top":
                break
            n += 1
            total += size
            if st == "free":
                unlisted += 1
        return n, total, unlisted

    # mmapped chunks --------------------------------------------------------------
    def _mmapped_at(self, base: int, end: int) -> Optional[tuple[int, int, int]]:
        """The mmapped chunk of the mapping starting at page ``base``, if any.

        sysmalloc puts the chunk ``k`` bytes in when the mapping's start would misalign
        the user pointer (i386's 16-byte alignment: k = 8) and stores k in prev_size.
        """
        page = 0x1000
        for k in range(0, self.p.malloc_alignment, self.sz):
            addr = base + k
            try:
                prev, sf = self._two.unpack(self.mem.read(addr, 2 * self.sz))
            except TargetMemoryError:
                return None
            size = sf & ~SIZE_BITS
            if (sf & SIZE_BITS) == IS_MMAPPED and size and prev == k \
                    and (size + prev) % page == 0 and addr + size <= end \
                    and not (addr + 2 * self.sz) & self.p.align_mask:
                return addr, size, prev
        return None


    def mmapped_chunks(self) -> list[tuple[int, int, int]]:
        """(addr, size, prev_size) of mmapped chunks found at anonymous mappings."""
        heaps = [(s.info or s.start, s.end) for a in self.arenas() for s in a.heaps]
        out = []
        for r in self.target.regions():
            if "w" not in r.perms or (r.name and not r.name.startswith("[anon")
                                      and r.name not in ("", "[heap]")):
                continue
            if any(lo < r.end and r.start < hi for lo, hi in heaps):
                continue
            base = r.start
            while base + 2 * self.sz <= r.end:
                found = self._mmapped_at(base, r.end)
                if found is None:
                    break
                out.append(found)
                addr, size, _prev = found
                base = addr + size
        return out
