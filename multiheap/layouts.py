"""glibc malloc structures as data: one field list per struct, with version ranges.

Each field says the glibc versions it exists in (``since`` inclusive, ``until``
exclusive).  :func:`layout` resolves a struct for one glibc version and word size,
computing C alignment, and returns a :class:`Layout` with a precompiled
``struct.Struct`` that parses the whole struct in one call.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Optional, Union

from multiheap.arch import by_name
from multiheap.target import byte_order

Version = tuple[int, int]

# C scalar types by name: (size on ILP32, size on LP64); alignment equals size.
_CTYPES: dict[str, tuple[int, int]] = {
    "int": (4, 4),
    "uint": (4, 4),
    "u8": (1, 1),
    "u16": (2, 2),
    "char": (1, 1),
    "size_t": (4, 8),  # also INTERNAL_SIZE_T, unsigned long, uintptr_t
    "ptr": (4, 8),
}
_CODES = {
    ("int", 4): "i", ("uint", 4): "I", ("u8", 1): "B", ("u16", 2): "H", ("char", 1): "B",
    ("size_t", 4): "I", ("size_t", 8): "Q", ("ptr", 4): "I", ("ptr", 8): "Q",
}


@dataclass(frozen=True)
class F:
    """One struct field: C type, element count (int or a constant's name), versions."""

    name: str
    ctype: str
    count: Union[int, str] = 1
    since: Version = (2, 0)
    until: Version = (99, 0)

    def present(self, v: Version) -> bool:
        return self.since <= v < self.until


MALLOC_CHUNK = (
    F("prev_size", "size_t"),
    F("size", "size_t"),
    F("fd", "ptr"),
    F("bk", "ptr"),
    F("fd_nextsize", "ptr"),
    F("bk_nextsize", "ptr"),
)

MALLOC_STATE = (
    F("mutex", "int"),
    F("flags", "int"),
    F("have_fastchunks", "int", since=(2, 27), until=(2, 43)),
    F("fastbinsY", "ptr", "NFASTBINS", until=(2, 43)),
    F("top", "ptr"),
    F("last_remainder", "ptr"),
    F("bins", "ptr", "NBINS_PTRS"),
    F("binmap", "uint", 4),
    F("next", "ptr"),
    F("next_free", "ptr"),
    F("attached_threads", "size_t"),
    F("system_mem", "size_t"),
    F("max_system_mem", "size_t"),
)

MALLOC_PAR = (
    F("trim_threshold", "size_t"),
    F("top_pad", "size_t"),
    F("mmap_threshold", "size_t"),
    F("arena_test", "size_t"),
    F("arena_max", "size_t"),
    F("thp_mode", "int", since=(2, 43)),
    F("thp_pagesize", "size_t", since=(2, 35)),
    F("hp_pagesize", "size_t", since=(2, 35)),
    F("hp_flags", "int", since=(2, 35)),
    F("n_mmaps", "int"),
    F("n_mmaps_max", "int"),
    F("max_n_mmaps", "int"),
    F("no_dyn_threshold", "int"),
    F("mmapped_mem", "size_t"),
    F("max_mmapped_mem", "size_t"),
    F("max_total_mem", "size_t", until=(2, 24)),
    F("sbrk_base", "ptr"),
    F("tcache_bins", "size_t", since=(2, 26), until=(2, 42)),
    F("tcache_small_bins", "size_t", since=(2, 42)),
    F("tcache_max_bytes", "size_t", since=(2, 26)),
    F("tcache_count", "size_t", since=(2, 26)),
    F("tcache_unsorted_limit", "size_t", since=(2, 26)),
)

HEAP_INFO = (
    F("ar_ptr", "ptr"),
    F("prev", "ptr"),
    F("size", "size_t"),
    F("mprotect_size", "size_t"),
    F("pagesize", "size_t", since=(2, 35)),
    F("pad", "char", "HEAP_INFO_PAD"),
)

TCACHE_PERTHREAD = (
    F("counts", "u8", "TCACHE_MAX_BINS", since=(2, 26), until=(2, 30)),
    F("counts", "u16", "TCACHE_MAX_BINS", since=(2, 30), until=(2, 42)),
    F("num_slots", "u16", "TCACHE_MAX_BINS", since=(2, 42)),
    F("entries", "ptr", "TCACHE_MAX_BINS", since=(2, 26)),
)

TCACHE_ENTRY = (
    F("next", "ptr"),
    F("key", "ptr", since=(2, 29)),
)

STRUCTS = {
    "malloc_chunk": MALLOC_CHUNK,
    "malloc_state": MALLOC_STATE,
    "malloc_par": MALLOC_PAR,
    "heap_info": HEAP_INFO,
    "tcache_perthread_struct": TCACHE_PERTHREAD,
    "tcache_entry": TCACHE_ENTRY,
}


@dataclass(frozen=True)
class Params:
    """Constants of one glibc version on one word size (malloc.c's macros)."""

    version: Version
    ptr_size: int
    arch: str = ""  # the host's machine name ("" : i386's rules for a 4-byte word)

    @property
    def size_sz(self) -> int:
        return self.ptr_size

    @cached_property  # asked for per chunk by some walks: worked out once
    def malloc_alignment(self) -> int:
        # i386 uses 16 since 2.26 (sysdeps/i386/malloc-alignment.h); else 2*SIZE_SZ
        # (arm: 8).  multiheap.arch says which machine has its own.
        row = by_name(self.arch) if self.arch else None
        if self.ptr_size == 4 and self.version >= (2, 26) and \
                (row is None or row.malloc_alignment == 16):
            return 16
        return 2 * self.ptr_size

    @cached_property
    def align_mask(self) -> int:
        return self.malloc_alignment - 1

    @property
    def min_chunk_size(self) -> int:
        return 4 * self.ptr_size

    @cached_property
    def minsize(self) -> int:
        return (self.min_chunk_size + self.align_mask) & ~self.align_mask

    @property
    def has_tcache(self) -> bool:
        return self.version >= (2, 26)

    @property
    def has_fastbins(self) -> bool:
        return self.version < (2, 43)

    def mmap_span(self, prev_size: int, size: int) -> tuple[int, int]:
        """A mmapped chunk's (offset into its mapping, the mapping's length) from its
        prev_size and size fields.  Before 2.43 prev_size is the offset and the two add
        up to the length; 2.43 gave it a normal chunk's layout: prev_size's low bit
        flags huge pages and the length also counts the next chunk's header
        (malloc.c's mmap_base_offset and mmap_size)."""
        if self.version >= (2, 43):
            off = prev_size & ~1
            return off, off + size + 2 * self.ptr_size
        return prev_size, prev_size + size

    @property
    def tcache_takes_mmapped(self) -> bool:
        """2.43: free() offers every chunk small enough to the tcache first, mmapped
        ones too (their layout became a normal chunk's)."""
        return self.version >= (2, 43)

    @property
    def safe_linking(self) -> bool:
        return self.version >= (2, 32)

    @property
    def tcache_max_bins(self) -> int:
        return 76 if self.version >= (2, 42) else 64

    @property
    def tcache_small_bins(self) -> int:
        return 64

    @property
    def tcache_fill_count(self) -> int:
        return 16 if self.version >= (2, 43) else 7

    @property
    def counts_field(self) -> str:
        return "num_slots" if self.version >= (2, 42) else "counts"

    @property
    def tcache_counts_down(self) -> bool:
        """2.42+: ``num_slots`` counts free slots down from a per-bin limit (an empty bin
        holds its limit), not the chunks held."""
        return self.version >= (2, 42)

    @property
    def tcache_key(self) -> bool:
        """2.29+: a tcache entry's second word is ``key`` (double-free detection)."""
        return self.version >= (2, 29)

    @property
    def tcache_key_random(self) -> bool:
        """2.34+: ``key`` holds the random ``tcache_key``, not the tcache's address."""
        return self.version >= (2, 34)

    @property
    def unlink_checks_prev_size(self) -> bool:
        """2.26+: unlink aborts when the next chunk's prev_size is not the chunk's size
        ("corrupted size vs. prev_size")."""
        return self.version >= (2, 26)

    @property
    def free_checks_prev_size(self) -> bool:
        """2.29+: free's backward merge aborts when prev_size is not the previous
        chunk's size ("corrupted size vs. prev_size while consolidating")."""
        return self.version >= (2, 29)

    @property
    def global_max_fast_width(self) -> int:
        """Bytes of ``global_max_fast``: a uint8_t since 2.37, a word before."""
        return 1 if self.version >= (2, 37) else self.ptr_size

    @property
    def nfastbins(self) -> int:
        if not self.has_fastbins:
            return 0
        max_fast = 80 * self.size_sz // 4
        req = (max_fast + self.size_sz + self.align_mask) & ~self.align_mask
        return self.fastbin_index(req) + 1

    def fastbin_index(self, size: int) -> int:
        return (size >> (4 if self.size_sz == 8 else 3)) - 2

    def fastbin_size(self, idx: int) -> int:
        return (idx + 2) << (4 if self.size_sz == 8 else 3)

    @property
    def default_max_fast(self) -> int:
        """set_max_fast(DEFAULT_MXFAST)."""
        return (64 * self.size_sz // 4 + self.size_sz) & ~self.align_mask

    @property
    def smallbin_correction(self) -> int:
        return 1 if self.malloc_alignment > 2 * self.size_sz else 0

    @property
    def min_large_size(self) -> int:
        return (64 - self.smallbin_correction) * self.malloc_alignment

    def in_smallbin_range(self, size: int) -> bool:
        return size < self.min_large_size

    def smallbin_index(self, size: int) -> int:
        shift = 4 if self.malloc_alignment == 16 else 3
        return (size >> shift) + self.smallbin_correction

    def largebin_index(self, sz: int) -> int:
        if self.size_sz == 8:
            first = 48 + (sz >> 6) if (sz >> 6) <= 48 else None
        elif self.malloc_alignment == 16:  # largebin_index_32_big
            first = 49 + (sz >> 6) if (sz >> 6) <= 45 else None
        else:
            first = 56 + (sz >> 6) if (sz >> 6) <= 38 else None
        if first is not None:
            return first
        if (sz >> 9) <= 20:
            return 91 + (sz >> 9)
        if (sz >> 12) <= 10:
            return 110 + (sz >> 12)
        if (sz >> 15) <= 4:
            return 119 + (sz >> 15)
        if (sz >> 18) <= 2:
            return 124 + (sz >> 18)
        return 126

    def bin_index(self, size: int) -> int:
        return self.smallbin_index(size) if self.in_smallbin_range(size) else \
            self.largebin_index(size)

    def bin_floor(self, i: int) -> int:
        """Smallest chunk size that goes to regular bin ``i`` (2..127)."""
        lo, hi = self.minsize, 1 << (8 * self.size_sz - 1)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.bin_index(mid) >= i:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def tcache_index(self, size: int) -> int:
        return (size - self.minsize + self.malloc_alignment - 1) // self.malloc_alignment

    def tcache_large_index(self, size: int) -> int:
        """2.42+: the large tcache bin of chunk ``size`` (large_csize2tidx: one bin per
        power of two past the biggest small bin's size, by a 32-bit count of leading
        zeros)."""
        small_max = (self.tcache_small_bins - 1) * self.malloc_alignment + self.minsize
        if self.version < (2, 43):  # 2.42 compared with tidx2usize
            small_max -= self.size_sz
        return self.tcache_small_bins + (size & 0xFFFFFFFF).bit_length() \
            - small_max.bit_length()

    def tcache_size(self, idx: int) -> Optional[int]:
        """Chunk size of small tcache bin ``idx`` (None for 2.42+'s large bins)."""
        if idx >= self.tcache_small_bins:
            return None
        return idx * self.malloc_alignment + self.minsize

    def constant(self, name: str) -> int:
        if name == "NFASTBINS":
            return self.nfastbins
        if name == "NBINS_PTRS":
            return 128 * 2 - 2
        if name == "TCACHE_MAX_BINS":
            return self.tcache_max_bins
        if name == "HEAP_INFO_PAD":
            # keeps sizeof(heap_info) + 2*SIZE_SZ a multiple of MALLOC_ALIGNMENT
            words = 3 if self.version >= (2, 35) else 6
            return (-words * self.size_sz) & self.align_mask
        raise KeyError(name)


@dataclass(frozen=True)
class FieldLayout:
    """Where one field lives: byte offset, element size, element count, struct index."""

    name: str
    offset: int
    elem_size: int
    count: int
    index: int  # position of the first element in the parsed tuple

    @property
    def size(self) -> int:
        return self.elem_size * self.count


@dataclass(frozen=True)
class Layout:
    """A resolved struct: its size, fields, and a parser for the whole struct."""

    name: str
    size: int
    fields: dict[str, FieldLayout]
    parser: struct.Struct

    def offset(self, name: str) -> int:
        return self.fields[name].offset

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def parse(self, buf: bytes, offset: int = 0) -> dict[str, Union[int, tuple[int, ...]]]:
        """Unpack the whole struct into {field: int or tuple of ints}."""
        values = self.parser.unpack_from(buf, offset)
        out: dict[str, Union[int, tuple[int, ...]]] = {}
        for f in self.fields.values():
            if f.count == 1:
                out[f.name] = values[f.index]
            else:
                out[f.name] = tuple(values[f.index:f.index + f.count])
        return out


@lru_cache(maxsize=None)
def layout(name: str, version: Version, ptr_size: int, endian: str = "little",
           arch: str = "") -> Layout:
    """Resolve struct ``name`` for one glibc version and word size (and machine: arm's
    8-byte malloc alignment gives 32-bit arm one fastbin fewer than i386)."""
    params = Params(version, ptr_size, arch)
    wide = ptr_size == 8
    offset = 0
    max_align = 1
    fields: dict[str, FieldLayout] = {}
    fmt = [byte_order(endian)]
    index = 0
    for f in STRUCTS[name]:
        if not f.present(version):
            continue
        size = _CTYPES[f.ctype][1 if wide else 0]
        count = f.count if isinstance(f.count, int) else params.constant(f.count)
        align = size
        max_align = max(max_align, align)
        pad = (-offset) % align
        if pad:
            fmt.append(f"{pad}x")
        offset += pad
        if count:
            fields[f.name] = FieldLayout(f.name, offset, size, count, index)
            code = _CODES[(f.ctype, size)]
            fmt.append(f"{count}{code}" if count > 1 else code)
            index += count
        offset += size * count
    tail = (-offset) % max_align
    if tail:
        fmt.append(f"{tail}x")
    total = offset + tail
    return Layout(name, total, fields, struct.Struct("".join(fmt)))
