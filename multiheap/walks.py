"""Walking chunks in address order: ptlist's walk and ptstats' census.

:class:`ChunkWalks` is held by :class:`multiheap.heap.Heap` (``heap.walks``), given the
memory, the layout parameters, the arenas and the free lists (whose states a walk
reports).  Every walk is bounded and records a
:class:`~multiheap.heaptypes.Stop` where it cannot go on.  Heaps are streamed in
windows of :data:`WINDOW` bytes: nothing per chunk is kept between walks but a
checkpoint every :data:`EVERY` chunks, so memory stays flat whatever the heap's size.
"""

from __future__ import annotations

import bisect
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from multiheap.errors import TargetMemoryError
from multiheap.freelists import FreeLists
from multiheap.heaptypes import (
    PREV_INUSE,
    SIZE_BITS,
    Arena,
    ArenaView,
    HeapSegment,
    Stop,
)
from multiheap.layouts import Params
from multiheap.memory import Memory
from multiheap.target import word_struct

# Chunk states as ptlist, ptchunk, ptstats, ptmap and ptvis name them (besides top and
# mmapped): in use; in a bin (free), a fastbin, a tcache; marked free by the next
# chunk's PREV_INUSE but in no list (orphan).
STATES = ("inuse", "free", "fast", "tcache", "orphan")
WINDOW = 8 << 20  # bytes of heap a walk reads at a time
EVERY = 1024  # chunks between two checkpoints of a ChunkIndex


@dataclass
class Window:
    """The chunks of one piece of a heap: their starts as word indexes into ``words``
    (read from address ``base``), in order; each one's successor header is in
    ``words`` too.  Top is never among them."""

    base: int
    words: Any
    starts: array
    marked: array  # the starts whose successor's PREV_INUSE is clear


class _Gap:
    """The words of one chunk larger than a window: its first window, and its
    successor's header ``step`` words on (the bytes between are not read)."""

    def __init__(self, head: Any, step: int, tail: Any) -> None:
        self.head, self.step, self.tail = head, step, tail

    def __getitem__(self, i: int) -> int:
        if i < len(self.head):
            return self.head[i]
        return self.tail[i - self.step]

    def __len__(self) -> int:
        return self.step + len(self.tail)


@dataclass
class ChunkIndex:
    """What a whole walk of one heap segment found, without its chunks: how many,
    the runs between fenceposts, top, where and why it stopped, and a checkpoint
    (chunk address) every :data:`EVERY` chunks to find any chunk again quickly."""

    base: int
    sz: int
    chunks: int = 0
    runs: list[tuple[int, int]] = field(default_factory=list)  # [lo, hi) addresses, top excluded
    top: Optional[int] = None  # top's address, if the walk reached it
    top_size: int = 0
    stop: Optional[Stop] = None  # where and why the walk stopped early
    before: Optional[int] = None  # the last good chunk before ``stop``
    marks: array = field(default_factory=lambda: array("Q"))  # checkpoints, ascending
    read: Any = None  # addr -> its size word (the heap's cached reader)

    def count(self) -> int:
        """Chunks, top excluded."""
        return self.chunks

    def holding(self, addr: int) -> Optional[int]:
        """The start of the chunk whose bytes include ``addr`` (top: its header and
        its span), or None (before the first chunk, in a fencepost, past the walk)."""
        sz = self.sz
        if self.top is not None and self.top <= addr:
            return self.top if addr < self.top + max(self.top_size, 2 * sz) else None
        i = bisect.bisect_right(self.marks, addr) - 1
        if i < 0:
            return None
        c = self.marks[i]
        r = bisect.bisect_right(self.runs, (c, 1 << 64)) - 1
        if r < 0 or not self.runs[r][0] <= c < self.runs[r][1]:
            return None
        hi = self.runs[r][1]
        while c < hi:
            size = self.read(c) & ~SIZE_BITS
            if size < 2 * sz:
                return None
            if addr < c + size:
                return c
            c += size
        return None


class ChunkWalks:
    """The walks of one target's chunks by their size fields."""

    def __init__(self, mem: Memory, params: Params, endian: str, arenas: ArenaView,
                 lists: FreeLists) -> None:
        self.mem, self.p, self.sz, self.endian = mem, params, params.ptr_size, endian
        self.word = word_struct(self.sz, endian)
        self.model = arenas
        self.lists = lists
        self._chunk_index: dict[tuple[int, int], ChunkIndex] = {}

    def indexed(self, arena: Arena, seg: HeapSegment) -> bool:
        """Whether a whole walk of ``seg`` has been made (its index is cached)."""
        return (arena.addr, seg.start) in self._chunk_index

    # the chunk walk: windows of a segment ------------------------------------------
    def chunk_index(self, arena: Arena, seg: HeapSegment) -> ChunkIndex:
        """What a whole walk of ``seg`` finds (walked once per stop if no command has
        walked it yet; cached)."""
        found = self._chunk_index.get((arena.addr, seg.start))
        if found is None:
            for _win in self.chunk_windows(arena, seg):
                pass
            found = self._chunk_index[(arena.addr, seg.start)]
        return found

    def chunk_windows(self, arena: Arena, seg: HeapSegment,
                      start: Optional[int] = None,
                      into: Optional[ChunkIndex] = None) -> Iterator[Window]:
        """The chunks of ``seg`` in address order, a window at a time.

        The one chunk walk by size fields behind ptlist, ptstats' census, ptchunk -c,
        ptcheck and ptfind.  In the main heap a fencepost (glibc's, where a foreign
        ``sbrk`` took the memory after a region) ends a run and the walk goes on at
        malloc's next region, the first aligned place whose sizes lead exactly to top.
        A walk that ends fills its :class:`ChunkIndex` (``into``), cached when it began
        at the segment's start.
        """
        ix = into if into is not None else ChunkIndex(seg.start, self.sz)
        ix.read = self._size_word_reader(seg)
        yield from self._scan(arena, seg, seg.start if start is None else start, ix)
        if start is None:
            self._chunk_index.setdefault((arena.addr, seg.start), ix)

    def _size_word_reader(self, seg: HeapSegment):
        mem, unpack, sz = self.mem, self.word.unpack_from, self.sz

        def read(addr: int) -> int:
            b = mem.window(addr + sz, sz, seg.start, seg.end)
            if b is None:
                raise TargetMemoryError(addr + sz, sz)
            return unpack(b[2], addr + sz - b[0])[0]

        return read

    def _words(self, buf: bytes) -> Any:
        sz = self.sz
        kind = "Q" if sz == 8 else "I"
        n = len(buf) - len(buf) % sz
        if self.endian == sys.byteorder:
            return memoryview(buf)[:n].cast(kind)
        words = array(kind, buf[:n])
        words.byteswap()
        return words

    def _scan(self, arena: Arena, seg: HeapSegment, a: int,
              ix: ChunkIndex) -> Iterator[Window]:
        sz = self.sz
        kind = "Q" if sz == 8 else "I"
        shift = 3 if sz == 8 else 2
        low = ~(SIZE_BITS >> shift)
        minw, bad = self.p.minsize >> shift, self.p.align_mask & ~SIZE_BITS
        if (a - seg.start) % sz:
            ix.stop = Stop(a, "heap not word-aligned in memory")
            return
        top = arena.top if seg.start <= arena.top < seg.end \
            and not (arena.top - seg.start) % sz and arena.top + 2 * sz <= seg.end \
            and arena.top >= a else None
        run_lo = a
        last: Optional[int] = None  # the last chunk of this run so far
        marks_out = ix.marks
        while True:
            try:
                buf = self.mem.fetch(a, min(a + WINDOW, seg.end)) if a < seg.end else b""
            except TargetMemoryError:
                buf = b""
            words = self._words(buf)
            nw = len(words)
            if nw < 2:  # the end of the segment, or its memory is unreadable
                ix.runs.append((run_lo, a))
                if a < seg.end and top is not None and a < top:
                    ix.stop = Stop(a, "chunk header is unreadable" if a > seg.start
                                   else "heap memory is unreadable")
                return
            t = (top - a) // sz if top is not None else -1
            if t >= 0:
                limit, reach = min(t, nw - 1), min(t, nw - 2)
                true_reach = t
            else:
                e = (seg.end - a) // sz
                limit, reach = min(e - 1, nw - 1), min(e, nw - 2)
                true_reach = e
            starts, marks = array(kind), array("q")  # -1: the window's first chunk
            push, mark = starts.append, marks.append
            w = 0
            # the hot loop: one index, a shift, three compares per chunk; a chunk whose
            # successor's PREV_INUSE is clear is noted by its place in ``starts``
            while w < limit:
                sf = words[w + 1]
                step = (sf >> shift) & low
                if step < minw or sf & bad or w + step > reach:
                    break
                if not sf & PREV_INUSE:
                    mark(len(starts) - 1)
                push(w)
                w += step
            marked = array(kind, [starts[k] for k in marks if k >= 0])
            sf = words[w + 1] if w + 1 < nw else PREV_INUSE
            if not sf & PREV_INUSE and starts:
                marked.append(starts[-1])
            step = (sf >> shift) & low
            size = sf & ~SIZE_BITS
            if starts:
                marks_out.extend([a + x * sz for x in starts[::EVERY]])
                last = a + starts[-1] * sz
            ix.chunks += len(starts)
            if w == t:  # top
                yield Window(a, words, starts, marked)
                ix.runs.append((run_lo, top))
                ix.top, ix.top_size = top, size
                if top + size != seg.end:
                    ix.stop = Stop(top, f"top size {size:#x} does not end at the heap end "
                                        f"{seg.end:#x}")
                return
            if w + 1 >= nw or (step >= minw and not sf & bad and w + step <= true_reach
                               and w + 2 <= nw):
                if w == 0 and w + 1 < nw:  # one chunk larger than the window
                    yield self._big_chunk(a, words, step, seg, ix)
                    last = a
                    a += step * sz
                    continue
                if w == 0:  # the header is cut (a short read)
                    ix.runs.append((run_lo, a))
                    ix.stop = Stop(a, "chunk header is unreadable")
                    return
                yield Window(a, words, starts, marked)  # the window is used up
                a += w * sz
                continue
            yield Window(a, words, starts, marked)
            ix.runs.append((run_lo, a + w * sz))
            here = a + w * sz
            if size in (0, 2 * sz):  # a fencepost: the end of a region
                nxt = self._after_fencepost(arena, seg, here)
                if nxt is None:
                    return  # the end of a heap (or of the main heap's last region)
                a = run_lo = nxt
                last = None
                continue
            ix.before = last
            if step < minw or sf & bad:
                ix.stop = Stop(here, f"impossible chunk size {sf:#x}")
            elif top is not None and here + step * sz > top and here < top:
                ix.stop = Stop(here, f"size {size:#x} runs into the top chunk {top:#x}")
            else:
                ix.stop = Stop(here, f"size {size:#x} runs past the heap end {seg.end:#x}")
            return

    def _big_chunk(self, a: int, words: Any, step: int, seg: HeapSegment,
                   ix: ChunkIndex) -> Window:
        """The window of one chunk larger than a window: its successor's header is
        read alone (nothing between)."""
        sz = self.sz
        nxt = a + step * sz
        try:
            tail = self._words(self.mem.fetch(nxt, min(nxt + 2 * sz, seg.end))) \
                if nxt < seg.end else self._words(b"")
        except TargetMemoryError:
            tail = self._words(b"")
        kind = "Q" if sz == 8 else "I"
        marked = array(kind, [0] if len(tail) > 1 and not tail[1] & PREV_INUSE else [])
        ix.chunks += 1
        ix.marks.append(a)
        return Window(a, _Gap(words, step, tail), array(kind, [0]), marked)

    def _after_fencepost(self, arena: Arena, seg: HeapSegment,
                         fence: int) -> Optional[int]:
        """At glibc's fencepost (a foreign ``sbrk`` took the memory after a main-heap
        region), where malloc's next region starts: the first aligned place after it
        whose chunk sizes lead exactly to top.  None if there is none."""
        top = arena.top
        if not arena.is_main or not seg.start <= top < seg.end or fence >= top:
            return None
        sz, minsize, mask = self.sz, self.p.minsize, self.p.align_mask
        read = self._size_word_reader(seg)
        reach: dict[int, bool] = {}
        c = fence + 2 * sz
        while c < top:
            try:
                prev_inuse = read(c) & PREV_INUSE
            except TargetMemoryError:
                return None
            if not (c + 2 * sz) & mask and prev_inuse:
                path = []
                x, ok = c, False
                while True:
                    if x == top:
                        ok = True
                        break
                    if x in reach:
                        ok = reach[x]
                        break
                    if x > top:
                        break
                    try:
                        size = read(x) & ~SIZE_BITS
                    except TargetMemoryError:
                        break
                    if size < minsize or size & mask:
                        break
                    path.append(x)
                    x += size
                for y in path:
                    reach[y] = ok
                if ok:
                    return c
            c += sz
        return None

    def next_run(self, addr: int) -> Optional[int]:
        """Where the walk goes on when ``addr`` is a fencepost ending a main-heap run
        (the next run's first chunk), else None."""
        found = self.model.segment_of(addr)
        if found is None:
            return None
        ix = self.chunk_index(*found)
        for (_lo, hi), (nlo, _nhi) in zip(ix.runs, ix.runs[1:]):
            if hi == addr:
                return nlo
        return None

    # walking chunks ------------------------------------------------------------
    def walk(self, arena: Arena, seg: HeapSegment, stops: list[Stop],
             limit: Optional[int] = None, classify: bool = True,
             flag_names: Optional[Sequence[Any]] = None) -> Iterator[tuple[int, int, Any, str]]:
        """Yield (addr, size, flags, state) for each chunk of a segment, in order.

        The chunks are those of :meth:`chunk_windows` (past fenceposts, up to top or to
        where a size is impossible, recorded in ``stops``).  ``limit`` caps the number
        of chunks; ``flag_names`` maps the 3 flag bits to what the caller shows instead
        of the number.  A chunk's state comes from the free lists (``free`` means in a
        bin), else from its successor's PREV_INUSE bit: ``inuse``, or ``orphan`` (marked
        free, in no list; ``free`` without ``classify``).
        """
        special = self.lists.free_index() if classify else None
        unlisted = "orphan" if classify else "free"
        sz = self.sz
        fl = flag_names if flag_names is not None else range(8)
        left = -1 if limit is None else max(limit, 0)
        if not left:
            return
        ix = ChunkIndex(seg.start, sz)
        wins = self.chunk_windows(arena, seg, into=ix)
        batch = 65536
        for win in wins:
            words, base, starts = win.words, win.base, win.starts
            if left > 0:
                starts = starts[:left]
                left -= len(starts)
            hi = base + (starts[-1] + 1) * sz if starts else base
            get = special.between(base, hi).get if special is not None else {}.get
            orphans = {base + w * sz for w in win.marked}
            for lo in range(0, len(starts), batch):
                out = []
                for w in starts[lo:lo + batch]:
                    sf = words[w + 1]
                    a = base + w * sz
                    out.append((a, sf & ~SIZE_BITS, fl[sf & SIZE_BITS],
                                get(a) or (unlisted if a in orphans else "inuse")))
                yield from out
            if not left:
                wins.close()
                return
        if ix.top is not None:
            yield ix.top, ix.top_size, fl[ix.read(ix.top) & SIZE_BITS], "top"
        if ix.stop is not None:
            stops.append(ix.stop)

    def census(self, arena: Arena, stops: list[Stop]) -> dict[str, list[int]]:
        """{state: [count, bytes]} for the arena's chunks (top excluded): exactly the
        states :meth:`walk` gives, without classifying chunk by chunk.

        A chunk is in use unless a free list holds it (``free``: a bin, ``fast``,
        ``tcache``) or, in no list, its successor's PREV_INUSE is clear (``orphan``).
        Only the listed chunks that are chunk starts and the chunks marked free are
        looked at one by one; in-use figures are the walk's totals less those.
        """
        out = {k: [0, 0] for k in STATES if k != "inuse"}
        index = self.lists.free_index()
        sz = self.sz
        shift = sz.bit_length() - 1
        n_all = b_all = 0
        for seg in arena.heaps:
            ix = ChunkIndex(seg.start, sz)
            for win in self.chunk_windows(arena, seg, into=ix):  # cached at its end
                words, base, starts = win.words, win.base, win.starts
                if not starts:
                    continue
                hi = base + (starts[-1] + 1) * sz
                mark = bytearray(starts[-1] + 1)  # 1 at each chunk start
                for w in starts:
                    mark[w] = 1
                # a listed address that is no chunk start lies inside another chunk,
                # which keeps its state (list entries are aligned, as chunk starts are)
                keys = index.keys(base, hi)  # addr | state code, sorted
                if index.unique:
                    real = [k for k in keys if mark[(k - base) >> shift]]
                    for code, st in ((1, "free"), (2, "fast"), (3, "tcache")):
                        ws = [(k - base) >> shift for k in real if k & 3 == code]
                        out[st][0] += len(ws)
                        out[st][1] += sum([words[w + 1] & ~SIZE_BITS for w in ws])
                else:
                    for a, st in index.states(keys).items():
                        w = (a - base) >> shift
                        if mark[w] if w < len(mark) else False:
                            out[st][0] += 1
                            out[st][1] += words[w + 1] & ~SIZE_BITS
                # a marked chunk is a chunk start: it is an orphan unless a list holds it
                here = {k & ~3 for k in keys} if win.marked else ()
                orphans = [w for w in win.marked if base + w * sz not in here]
                out["orphan"][0] += len(orphans)
                out["orphan"][1] += sum([words[w + 1] & ~SIZE_BITS for w in orphans])
            if ix.stop is not None:
                stops.append(ix.stop)
            n_all += ix.count()
            b_all += sum(hi - lo for lo, hi in ix.runs)
        result = {"inuse": [n_all - sum(v[0] for v in out.values()),
                            b_all - sum(v[1] for v in out.values())]}
        result.update(out)
        return result
