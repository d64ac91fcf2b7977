"""The read cache (multiheap/memory.py) against the memory it caches: any mix of page
reads, heap windows and region loads gives the target's bytes, the cache stays within
its bound, and a look-up costs one bisect however many blocks it holds (no kept block
holds another).  A heap check reading thousands of scattered pages once spent 22 s
scanning the blocks below each address."""

from __future__ import annotations

import random

import pytest

from adapters.image import ImageTarget
from multiheap import memory
from multiheap.memory import Memory

BASE = 0x7F0000000000
SIZE = 0x100000


@pytest.mark.parametrize("seed", range(12))
def test_any_mix_of_reads_gives_the_targets_bytes(seed, monkeypatch):
    rnd = random.Random(seed)
    monkeypatch.setattr(memory, "CACHE_BYTES", rnd.choice([0x10000, 0x40000, 0x400000]))
    monkeypatch.setattr(memory, "WINDOW", rnd.choice([0x2000, 0x10000]))
    data = rnd.randbytes(SIZE)
    target = ImageTarget({BASE: data})
    mem = Memory(target, 8)
    for _ in range(400):
        addr = BASE + rnd.randrange(SIZE - 64)
        n = rnd.choice([1, 8, 24, 4096, 5000])
        n = min(n, BASE + SIZE - addr)
        how = rnd.random()
        if how < 0.5:
            assert mem.read(addr, n) == data[addr - BASE:addr - BASE + n]
        elif how < 0.8:
            b = mem.window(addr, n, BASE, BASE + SIZE)
            assert b is not None and b[0] <= addr and addr + n <= b[1]
            assert b[2] == data[b[0] - BASE:b[1] - BASE]
        elif how < 0.9:
            end = min(addr + rnd.choice([0x3000, 0x9000]), BASE + SIZE)
            buf, at = mem.load(addr, end)
            assert buf[addr - at:end - at] == data[addr - BASE:end - BASE]
        else:
            assert mem.ptr(addr) == int.from_bytes(data[addr - BASE:addr - BASE + 8], "little")
        kept = mem._blocks
        assert [b[0] for b in kept] == mem._starts == sorted(mem._starts)
        # no block holds another: ends rise with starts
        assert all(a[1] < b[1] and a[0] < b[0] for a, b in zip(kept, kept[1:]))
        assert set(map(id, kept)) == set(map(id, mem._age))
        assert mem._bytes == sum(b[1] - b[0] for b in kept)
        assert mem._bytes <= memory.CACHE_BYTES or len(kept) == 1
        for b in kept:
            assert b[2] == data[b[0] - BASE:b[1] - BASE]
