"""A list walk takes exactly the chunks a step-by-step walk takes, and stops where and
why it does, whatever the list: long, crossing blocks, corrupted at any step.

The engine follows a one-size list (a fastbin) in a fast loop that checks alignment
and the cycle after the fact (multiheap/freelists.py, ``_plain_steps``); here it is
checked against a plain reference walk, written from glibc's rules, on random lists
placed in a memory image: every order, with and without safe-linking, read a page at
a time and in heap windows, each corrupted one way at a random step."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from imagebuild import build_image

from adapters.image import ImageTarget
from multiheap import memory
from multiheap.heaptypes import FreeList, SameSize
from multiheap.session import Session

SEG = 0x5A0000000000  # the list's memory: its own segment, far from the image's heap
SEG_SIZE = 0x40000
SIZE = 0x30
CORRUPTIONS = ["none", "cycle", "misaligned", "wrong size", "out of the segment",
               "link word past the end", "to itself"]


def _place(rnd: random.Random, n: int, order: str, protect: bool, corruption: str):
    """A segment holding an n-chunk list of SIZE chunks, one at a random place in each
    of n slots of 0x40 bytes (so that some chunk's header straddles a page's end):
    its bytes and head, with the list corrupted at a random step.  Every other word
    reads as the size 0x40."""
    buf = bytearray((0x41).to_bytes(8, "little") * (SEG_SIZE // 8))
    slots = rnd.sample(range(1, SEG_SIZE // 0x40 - 1), n)
    if order != "random":
        slots.sort(reverse=order == "descending")
    chunks = [SEG + s * 0x40 + rnd.choice([0, 0x10, 0x20, 0x30]) for s in slots]
    links = chunks[1:] + [0]
    k = rnd.randrange(n)  # the step that goes wrong
    if corruption == "cycle":
        links[k] = chunks[rnd.randrange(k + 1)]
    elif corruption == "to itself":
        links[k] = chunks[k]
    elif corruption == "misaligned":
        links[k] = chunks[rnd.randrange(n)] + rnd.choice([8, 4, 1])
    elif corruption == "wrong size":
        links[k] = SEG + (SEG_SIZE // 0x40 - 1) * 0x40  # a slot of size 0x40's place
    elif corruption == "out of the segment":
        links[k] = SEG + SEG_SIZE + 0x1000 * rnd.randrange(1, 4)
    elif corruption == "link word past the end":
        links[k] = SEG + SEG_SIZE - 0x10  # its size word is the segment's last
        buf[-0x8:] = (SIZE | 1).to_bytes(8, "little")
    for c, nxt in zip(chunks, links):
        o = c - SEG
        buf[o + 8:o + 16] = (SIZE | 1).to_bytes(8, "little")
        buf[o + 16:o + 24] = (nxt ^ ((c + 16) >> 12 if protect else 0)).to_bytes(8, "little")
    return bytes(buf), chunks[0]


def _reference(buf: bytes, head: int, protect: bool) -> tuple[list[int], object]:
    """glibc's rules, one step at a time: (the chunks taken, (stop addr, why) or None)."""
    word = lambda a: int.from_bytes(buf[a - SEG:a - SEG + 8], "little")  # noqa: E731
    out: list[int] = []
    seen: set[int] = set()
    p = head
    while p != 0:
        if p in seen:
            return out, (p, "cycle")
        if (p + 16) & 15:
            return out, (p, "misaligned")
        if not (SEG <= p and p + 24 <= SEG + SEG_SIZE):
            return out, (p, "unreadable")
        if word(p + 8) & ~7 != SIZE:
            return out, (p, "does not belong")
        seen.add(p)
        out.append(p)
        p = word(p + 16) ^ ((p + 16) >> 12 if protect else 0)
    return out, None


@pytest.fixture(scope="module")
def image():
    return build_image((2, 36), 8)


@pytest.mark.parametrize("reads", ["pages", "windows"])
@pytest.mark.parametrize("protect", [True, False], ids=["safe-linking", "plain"])
def test_a_fastbin_walk_is_the_step_by_step_walk(image, reads, protect, monkeypatch):
    rnd = random.Random(f"{reads}{protect}")
    if reads == "windows":  # heap windows of 16 KB: a list crosses many
        monkeypatch.setattr(memory, "WINDOW", 0x4000)
    for case in range(120):
        corruption = CORRUPTIONS[case % len(CORRUPTIONS)]
        order = ["ascending", "descending", "random"][case // len(CORRUPTIONS) % 3]
        n = rnd.choice([1, 2, 3, 50, 900, 3000])
        buf, head = _place(rnd, n, order, protect, corruption)
        target = ImageTarget({**image.segs, SEG: buf}, **image.kwargs)
        lists = Session(target).heap().lists
        if reads == "windows":  # the segment read as a heap is: windows, not pages
            seg = SimpleNamespace(start=SEG, end=SEG + SEG_SIZE)
            inside = lists.model.segment_of
            monkeypatch.setattr(lists.model, "segment_of", lambda a, seg=seg, inside=inside:
                                (None, seg) if SEG <= a < SEG + SEG_SIZE else inside(a))
        fl = FreeList("fast", 1, sizes=SameSize(SIZE))
        lists._walk_list(fl, head, 0, protect, exact=SIZE)
        want, stop = _reference(buf, head, protect)
        what = f"case {case}: {n} chunks, {order}, {corruption}"
        assert list(fl.chunks) == want, what
        assert len(fl.sizes) == len(want), what
        if stop is None:
            assert fl.stop is None, what
        else:
            assert fl.stop is not None and fl.stop.addr == stop[0], what
            assert stop[1] in fl.stop.reason, f"{what}: {fl.stop.reason}"
