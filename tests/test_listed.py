"""The free index's compact parts against plain Python: the sorted-array merge, the
index's states and uniqueness, and SameSize standing in for a list's size array."""

from __future__ import annotations

import random
from array import array

import pytest

from multiheap import compact
from multiheap.checks import engine
from multiheap.compact import SortedBuilder, rounds, window
from multiheap.heaptypes import SameSize
from multiheap.listed import Listed


@pytest.mark.parametrize("seed", range(20))
def test_rounds_are_the_sorted_concatenation(seed):
    rnd = random.Random(seed)
    pieces = [array("Q", sorted(rnd.randrange(5000) for _ in range(rnd.randrange(0, 300))))
              for _ in range(rnd.randrange(1, 8))]
    want = sorted(x for p in pieces for x in p)
    for block in (0, 1, 3, 64):
        got = list(rounds(pieces, block))
        assert [x for r in got for x in r] == want
        assert all(r == sorted(r) for r in got)
    b = SortedBuilder()
    for p in pieces:
        b.extend(reversed(p))
    runs = b.runs()
    assert sorted(x for r in runs for x in r) == want and all(list(r) == sorted(r) for r in runs)
    for lo, hi in ((0, 5000), (100, 101), (2500, 2600), (4999, 10 ** 6)):
        assert list(window(pieces, lo, hi)) == [x for x in want if lo <= x < hi]


def _lists(rnd: random.Random, share: bool):
    """Lists as a walk gives them: no address twice in one list, one size word per
    address (so lists of one size hold only chunks of that size)."""
    size_of = {a: rnd.choice((0x20, 0x30, 0x40)) for a in range(0x1000, 0x9000, 0x10)}
    pool = list(size_of)
    rnd.shuffle(pool)
    out, used = [], set()
    for state in ("free", "fast", "tcache", "fast", "tcache"):
        size = 0 if state == "free" else rnd.choice((0x20, 0x30, 0x40))
        cand = [a for a in pool if size in (0, size_of[a])]
        if not share:
            cand = [a for a in cand if a not in used]
        chunks = rnd.sample(cand, min(len(cand), rnd.randrange(1, 60)))
        used.update(chunks)
        out.append((state, array("Q", chunks), size))
    return out


@pytest.mark.parametrize("piece", [1 << 18, 7])  # one sorted run; many overlapping ones
@pytest.mark.parametrize("seed", range(40))
def test_listed_matches_a_dict(seed, piece, monkeypatch):
    monkeypatch.setattr(compact, "PIECE", piece)
    rnd = random.Random(seed)
    lists = _lists(rnd, share=seed % 2 == 0)
    truth: dict[int, str] = {}
    for state, chunks, _size in lists:  # the last kind added wins, as dict.update
        truth.update(dict.fromkeys(chunks, state))
    for rank in ("free", "fast", "tcache"):  # tcache over fast over free
        for state, chunks, _size in lists:
            if state == rank:
                truth.update(dict.fromkeys(chunks, state))
    index = Listed(lists)
    total = sum(len(c) for _s, c, _z in lists)
    assert index.unique == (len(truth) == total)
    seen: dict[int, int] = {}
    for _state, chunks, _size in lists:
        for c in chunks:
            seen[c] = seen.get(c, 0) + 1
    assert index.repeated() == {c for c, n in seen.items() if n > 1}
    assert dict(index.items()) == truth
    for a in range(0xff0, 0x9010, 0x10):
        assert index.get(a) == truth.get(a)
    assert index.between(0x3000, 0x5000) == {a: s for a, s in truth.items()
                                             if 0x3000 <= a < 0x5000}
    if piece < 100:
        assert len(index.runs) > 1 or index.entries <= piece
    assert index.count(0x3000, 0x5000) == sum(1 for _s, c, _z in lists for a in c
                                              if 0x3000 <= a < 0x5000)


@pytest.mark.parametrize("held", [1 << 18, 5, 0])  # one dict per block; halved; to one chunk
@pytest.mark.parametrize("seed", range(10))
def test_ptcheck_looks_up_marked_chunks_as_get_does(seed, held, monkeypatch):
    """ptcheck's look-up of many chunks by ranges of the index (halved while a range
    holds more than HELD_KEYS keys) answers as one look-up per chunk, in order."""
    monkeypatch.setattr(engine, "HELD_KEYS", held)
    rnd = random.Random(seed)
    index = Listed(_lists(rnd, share=seed % 2 == 0))
    chunks = array("Q", rnd.sample(range(0xff0, 0x9010, 0x10), 300))
    got = list(engine.Checker._listed_states(index, chunks))
    assert got == [(c, index.get(c)) for c in sorted(chunks)]


def test_samesize_behaves_as_its_array():
    s, a = SameSize(0x30), array("Q")
    for x in (s, a):
        x.append(0x30)
        x.extend([0x30] * 4)
    assert len(s) == len(a) == 5 and list(s) == list(a) and sum(s) == sum(a)
    assert s[0] == a[0] and s[-1] == a[-1] and s == a
    del s[3:], a[3:]
    assert list(zip(range(9), s)) == list(zip(range(9), a))
    with pytest.raises(ValueError):
        s.append(0x40)
    with pytest.raises(IndexError):
        s[3]
