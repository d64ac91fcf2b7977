"""The ptmalloc model of one target at one stop: arenas, heaps, chunks, free lists.

:class:`Heap` reads malloc_state, malloc_par and heap_info itself and holds two objects
it builds with what they need: ``heap.lists`` (:class:`~multiheap.freelists.FreeLists`),
``heap.walks`` (:class:`~multiheap.walks.ChunkWalks`) and ``heap.mmapped``
(:class:`~multiheap.mmapped.MmappedChunks`).  Every walk is bounded and records where
and why it stopped in a :class:`Stop`.
"""

from __future__ import annotations

from typing import Optional

from multiheap.discovery import Config, Overrides
from multiheap.errors import MultiheapError, TargetMemoryError, UsageError
from multiheap.freelists import FreeLists
from multiheap.heaptypes import MAX_ARENAS, Arena, Chunk, HeapSegment, Stop
from multiheap.layouts import Layout, layout
from multiheap.memory import Memory
from multiheap.mmapped import MmappedChunks
from multiheap.target import Target, word_struct
from multiheap.walks import ChunkWalks


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
        self.word = word_struct(self.sz, config.endian)
        self.two = word_struct(self.sz, config.endian, 2)
        self.L_state = self._layout("malloc_state")
        self.L_par = self._layout("malloc_par")
        self.L_heap = self._layout("heap_info")
        self.L_chunk = self._layout("malloc_chunk")
        self.L_tcache = self._layout("tcache_perthread_struct") if self.p.has_tcache else None
        self._arenas: Optional[list[Arena]] = None
        self._mp: Optional[dict] = None
        self.notes: list[str] = list(config.warnings)
        self.lists = FreeLists(self.mem, self.p, config.endian, self.L_state, self.L_tcache,
                               config.threads, self)
        self.walks = ChunkWalks(self.mem, self.p, config.endian, self, self.lists)
        self.mmapped = MmappedChunks(self.mem, self.p, config.endian, target, self,
                                     lambda: self.mp)

    def _layout(self, name: str) -> Layout:
        return layout(name, self.cfg.version, self.sz, self.cfg.endian, self.cfg.arch)

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
        prev, size = self.two.unpack(data)
        try:
            links = self.mem.read(addr + 2 * self.sz, 4 * self.sz)
            fd, bk = self.two.unpack_from(links, 0)
            fdn, bkn = self.two.unpack_from(links, 2 * self.sz)
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
        width = self.p.global_max_fast_width
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
        found = self.segment_of(addr)
        return found[0] if found else None

    def segment_of(self, addr: int) -> Optional[tuple[Arena, HeapSegment]]:
        for a in self.arenas():
            for s in a.heaps:
                if s.start <= addr < s.end:
                    return a, s
        return None
