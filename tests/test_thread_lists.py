"""glibc's thread lists, read by one walker (multiheap/discovery/pthreads.py), on memory
images laid out as glibc 2.34+ lays them: two rings in ``_rtld_global`` through each
``struct pthread``'s ``list`` field, ``tid`` after it.

With the host's layouts of ``struct pthread`` (debug info) and without, on each TLS
variant: x86 puts the thread pointer at ``struct pthread`` (a tcbhead_t pointing at
itself); arm, aarch64 and riscv put their ``tcbhead_t`` past it (riscv: two words past),
its DTV's first block just above.  The host gives no thread pointer, so these lists are
the route that must find them, with no rejected row but the register's.
The real processes are in test_aarch64.py (arm with and without debug info).
"""

from __future__ import annotations

import pytest

from multiheap import arch
from multiheap.adapters.image import ImageTarget
from multiheap.discovery.threads import thread_pointers
from multiheap.target import TypeLayout

RTLD = 0x10000  # _rtld_global
PD = (0x200000, 0x208000, 0x210000)  # struct pthread of threads 1..3
DTV = 0x300000
SIZE = {8: 0x700, 4: 0x480}  # sizeof (struct pthread)
LIST = {8: 0x2C0, 4: 0x198}  # offsetof (struct pthread, list); tid two words on


class _Mem:
    def __init__(self, sz: int) -> None:
        self.sz, self.segs = sz, {a: bytearray(0x8000) for a in (RTLD, *PD, DTV)}

    def put(self, addr: int, value: int, width: int = 0) -> None:
        base = max(a for a in self.segs if a <= addr)
        w = width or self.sz
        self.segs[base][addr - base:addr - base + w] = value.to_bytes(w, "little")


def _image(machine: str, layouts: bool) -> tuple[ImageTarget, dict[int, int]]:
    row = arch.by_name(machine)
    assert row is not None
    sz, m = row.word, _Mem(row.word)
    tcb = arch.tcb_offset(machine, sz)
    heads = (RTLD + 0x40, RTLD + 0x40 + 6 * sz)  # _dl_stack_user, _dl_stack_used
    rings = {heads[0]: [PD[0]], heads[1]: [PD[1], PD[2]]}
    for head, pds in rings.items():
        nodes = [pd + LIST[sz] for pd in pds] + [head]
        m.put(head, nodes[0])
        for a, b in zip(nodes, nodes[1:]):
            m.put(a, b)
    tps = {}
    for n, pd in enumerate(PD, 1):
        m.put(pd + LIST[sz] + 2 * sz, 1000 + n, 4)  # tid
        if row.tls_variant == 2:  # tcbhead_t {tcb, dtv, self} at struct pthread
            tps[n] = pd
            m.put(pd, pd)
            m.put(pd + 2 * sz, pd)
        else:  # tcbhead_t {dtv, private} past it; dtv[-1] slots, dtv[1] the first block
            tps[n] = pd + SIZE[sz] - tcb
            dtv = DTV + 0x100 * n
            m.put(tps[n] + tcb, dtv)
            m.put(dtv - 2 * sz, 16)
            m.put(dtv + 2 * sz, tps[n] + 4 * sz)
    lay = {"pthread": TypeLayout("pthread", SIZE[sz], {"list": (LIST[sz], 2 * sz),
                                                       "tid": (LIST[sz] + 2 * sz, 4)}),
           "rtld_global": TypeLayout("rtld_global", 0x1000, {
               "_dl_stack_user": (heads[0] - RTLD, 2 * sz),
               "_dl_stack_used": (heads[1] - RTLD, 2 * sz)})} if layouts else {}
    target = ImageTarget({a: bytes(b) for a, b in m.segs.items()}, pointer_size=sz,
                         arch=machine, symbols={"_rtld_global": RTLD},
                         threads={1: None, 2: None, 3: None}, layouts=lay)
    return target, tps


@pytest.mark.parametrize("layouts", [True, False], ids=["layouts", "no-layouts"])
@pytest.mark.parametrize("machine", ["x86_64", "i386", "aarch64", "arm", "riscv64"])
def test_each_thread_pointer_comes_from_the_lists(machine, layouts):
    target, tps = _image(machine, layouts)
    found = thread_pointers(target, target.threads(), target.pointer_size, "little")
    assert {n: f.value for n, f in found.items()} == tps
    for f in found.values():
        assert f.how.startswith("glibc's thread list") and "_rtld_global" in f.how, f
        assert ("from debug info" in f.how) == layouts, f
        assert [r.split(":")[0] for r in f.rejected] == ["register"], f


def test_a_ring_holding_a_dead_tid_is_not_taken_without_layouts():
    """Without layouts a ring is glibc's only if every node's tid is a live thread's."""
    target, _tps = _image("aarch64", False)
    live = target.threads()[:1]  # thread 1 only: the ring of threads 2 and 3 is foreign
    found = thread_pointers(target, live, 8, "little")
    assert found[1].value is not None
    target2 = ImageTarget({a: target.read(a, 0x8000) for a in (RTLD, *PD, DTV)},
                          pointer_size=8, arch="aarch64", symbols={"_rtld_global": RTLD},
                          threads={2: None})  # tid 1002 lives, on a ring with 1003
    assert "_rtld_global" not in (thread_pointers(target2, target2.threads(), 8,
                                                  "little")[2].how)
