"""Thread pointers from glibc's thread lists, read without debug info.

Since 2.34 ld.so keeps every ``struct pthread`` on two rings in ``_rtld_global``
(``_dl_stack_used``: threads on stacks glibc allocated; ``_dl_stack_user``: the main
thread).  A ring's links are ``struct pthread``'s ``list`` field, which ``tid``
follows.  Without the struct's layout the rings are found by what they are: a pair of
words in ``_rtld_global`` whose ``next`` chain comes back to it, every node followed by
a live thread's tid.

TLS variant I (arm, aarch64) puts the thread pointer past ``struct pthread``, at a
``tcbhead_t`` whose first word is the DTV: ``dtv[-1]`` counts its slots and
``dtv[1]`` is the first module's static TLS block, a few words above the thread
pointer.  The nearest such word past each node, at one distance for every thread, is
the thread pointer.  Only reads.
"""

from __future__ import annotations

from typing import Optional

from multiheap import arch
from multiheap.errors import MultiheapError
from multiheap.target import Target

_SCAN = 0x1800  # bytes of _rtld_global searched for the rings' heads
_RING = 4096  # longest ring followed
_TCB_REACH = 0x2000  # bytes past a node searched for the thread pointer


class _Words:
    def __init__(self, target: Target) -> None:
        self.t, self.sz, self.order = target, target.pointer_size, target.endianness

    def __call__(self, addr: int) -> Optional[int]:
        try:
            return int.from_bytes(self.t.read(addr, self.sz), self.order)
        except MultiheapError:
            return None

    def tid(self, addr: int) -> Optional[int]:
        try:
            return int.from_bytes(self.t.read(addr, 4), self.order)
        except MultiheapError:
            return None


def ring_nodes(target: Target, tids: list[int]) -> dict[int, int]:
    """{tid: address of its ``struct pthread``'s ``list`` field} from ``_rtld_global``."""
    try:
        head = target.symbol("_rtld_global")
    except MultiheapError:
        head = None
    if not head:
        return {}
    w = _Words(target)
    sz, want = w.sz, set(tids)
    buf = b""
    for n in range(_SCAN, 0, -0x100):  # _rtld_global may end near its mapping's end
        try:
            buf = target.read(head, n)
            break
        except MultiheapError:
            continue
    out: dict[int, int] = {}
    for off in range(0, len(buf) - 2 * sz + 1, sz):
        h = head + off
        nxt = int.from_bytes(buf[off:off + sz], w.order)
        if nxt < 0x10000 or nxt == h:
            continue
        nodes, x = [], nxt
        while x is not None and x != h and len(nodes) < _RING and x > 0xFFFF:
            nodes.append(x)
            x = w(x)
        if x != h:
            continue
        found = {w.tid(n + 2 * sz): n for n in nodes}
        if found and all(t in want for t in found):  # a ring of live threads only
            out.update({t: n for t, n in found.items() if t is not None})
    return out


def _tcb_at(w: _Words, tp: int, tcb: int = 0) -> bool:
    """Is ``tp`` a variant-I thread pointer: a tcbhead_t (``tcb`` bytes from it) whose
    DTV's first module block lies just past the tcbhead?"""
    dtv = w(tp + tcb)
    if not dtv or dtv & (w.sz - 1):
        return False
    slots, block = w(dtv - 2 * w.sz), w(dtv + 2 * w.sz)
    return slots is not None and block is not None and 0 < slots < 0x10000 \
        and tcb + 2 * w.sz <= block - tp < 0x10000


def is_variant1_tcb(target: Target, tp: int) -> bool:
    """The variant-I check of a thread pointer a host gave (tpidr_el0, tpidruro)."""
    return tp > 0xFFFF and _tcb_at(_Words(target), tp,
                                   arch.tcb_offset(target.arch, target.pointer_size))


def variant1_pointers(target: Target, tids: list[int]) -> dict[int, int]:
    """{tid: thread pointer} for TLS variant I, at one distance past every ring node."""
    nodes = ring_nodes(target, tids)
    if not nodes:
        return {}
    w = _Words(target)
    step, tcb = 2 * w.sz, arch.tcb_offset(target.arch, w.sz)
    for k in range(step, _TCB_REACH, step):
        if all(_tcb_at(w, n + k, tcb) for n in nodes.values()):
            return {t: n + k for t, n in nodes.items()}
    return {}
