"""Thread pointers from glibc's own thread lists: one walker, with or without debug info.

glibc chains every ``struct pthread`` on circular lists through its ``list`` field,
which ``tid`` follows: since 2.34 two rings in ld.so's ``_rtld_global``
(``_dl_stack_used``: threads on stacks glibc allocated; ``_dl_stack_user``: the main
thread), before that ``stack_used`` and ``__stack_user``.  With the host's type layouts
(debug info) the heads and offsets are glibc's own; without them (2.34+ only) the
rings are found by what they are: a word in ``_rtld_global`` whose ``next`` chain comes
back to it, every node followed by a live thread's tid.

From a node to the thread pointer, per TLS variant (:mod:`multiheap.arch`):
II (x86) puts the pointer at ``struct pthread`` itself (its first member is
``tcbhead_t``, which points at itself); I (arm, aarch64, riscv) puts ``tcbhead_t`` just
past it, its first word the DTV (``dtv[-1]`` counts its slots, ``dtv[1]`` is the first
module's static TLS block, a few words above).  With layouts the distance is the
struct's size; without, it is the one distance from every node at which each thread's
``tcbhead_t`` checks.  Only reads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from multiheap import arch
from multiheap.discovery.evidence import tcbhead_at
from multiheap.discovery.glibclists import struct_offsets
from multiheap.errors import MultiheapError
from multiheap.target import Target, word_struct

_SCAN = 0x1800  # bytes of _rtld_global searched for the rings' heads (no layouts)
_RING = 4096  # longest ring followed
_TCB_REACH = 0x2000  # bytes between a node and its thread pointer searched (no layouts)


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
            return int.from_bytes(self.t.read(addr, 4), self.order, signed=True)
        except MultiheapError:
            return None


@dataclass(frozen=True)
class Lists:
    """glibc's thread lists: ``{tid: address of its struct pthread's list field}``, how
    they were read, and from the layouts (None without) ``list``'s offset in ``struct
    pthread`` and the struct's size."""

    nodes: dict[int, int]
    how: str
    list_off: Optional[int] = None
    size: Optional[int] = None


def _ring(w: _Words, head: int) -> Optional[list[int]]:
    """The nodes of the circular list at ``head`` (None if it does not come back)."""
    nodes, seen, x = [], {head}, w(head)
    while x is not None and x > 0xFFFF and x not in seen and len(nodes) < _RING:
        nodes.append(x)
        seen.add(x)
        x = w(x)
    return nodes if x == head else None


def _symbol(target: Target, name: str) -> Optional[int]:
    try:
        return target.symbol(name)
    except MultiheapError:
        return None


def _layout_heads(target: Target) -> tuple[list[int], str]:
    rtld = _symbol(target, "_rtld_global")
    offs = struct_offsets(target, "rtld_global", "_dl_stack_user", "_dl_stack_used")
    if rtld is not None and offs is not None:  # glibc 2.34+
        return [rtld + o for o in offs], "_rtld_global's _dl_stack_user/_dl_stack_used"
    return [a for a in (_symbol(target, "__stack_user"), _symbol(target, "stack_used"))
            if a is not None], "__stack_user/stack_used"


def _scanned_heads(target: Target) -> list[int]:
    """Every word of ``_rtld_global`` (read up to its mapping's end) as a head."""
    base = _symbol(target, "_rtld_global")
    if not base:
        return []
    sz = target.pointer_size
    for n in range(_SCAN, 0, -0x100):
        try:
            buf = target.read(base, n)
        except MultiheapError:
            continue
        return [base + off for off in range(0, len(buf) - 2 * sz + 1, sz)
                if int.from_bytes(buf[off:off + sz], target.endianness) not in (0, base + off)]
    return []


def thread_lists(target: Target, tids: list[int]) -> Lists:
    """glibc's thread lists, with the layouts of ``struct pthread`` when the host has
    them, else the rings of ``_rtld_global`` holding only the live ``tids``."""
    w, want = _Words(target), set(tids)
    offs = struct_offsets(target, "pthread", "list", "tid")
    if offs is not None:
        heads, how = _layout_heads(target)
        tid_at, lay = offs[1] - offs[0], target.type_layout("pthread")
    else:
        heads, how, tid_at, lay = _scanned_heads(target), "_rtld_global's rings", 2 * w.sz, None
    out: dict[int, int] = {}
    for head in heads:
        ring = _ring(w, head)
        if not ring:
            continue
        found = {w.tid(n + tid_at): n for n in ring}
        if lay is not None or all(t in want for t in found):  # no layouts: live threads
            for t, n in found.items():
                if t is not None:
                    out.setdefault(t, n)
    if lay is None:
        return Lists(out, how + ", read without debug info")
    return Lists(out, how + ", struct pthread from debug info", offs[0], lay.size)


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
    """The variant-I check of a thread pointer (tpidr_el0, tpidruro, tp)."""
    return tp > 0xFFFF and _tcb_at(_Words(target), tp,
                                   arch.tcb_offset(target.arch, target.pointer_size))


def _tcbhead(target: Target, fmt: struct.Struct, tp: int) -> bool:
    try:
        return tcbhead_at(target.read(tp, 3 * fmt.size), 0, tp, fmt, strict=True)
    except MultiheapError:
        return False


def thread_pointers(target: Target, lists: Lists) -> dict[int, int]:
    """{tid: thread pointer} from the lists' nodes: at the struct's own place (layouts)
    or the one distance from every node at which a tcbhead_t checks (no layouts)."""
    nodes = lists.nodes
    if not nodes:
        return {}
    sz = target.pointer_size
    tcb = arch.tcb_offset(target.arch, sz)
    variant1 = arch.tls_variant(target.arch) == 1
    if lists.list_off is not None and lists.size is not None:
        # variant I: tcbhead_t (tcb bytes from the pointer) follows struct pthread
        past = lists.size - tcb if variant1 else 0
        return {t: n - lists.list_off + past for t, n in nodes.items()}
    w, fmt = _Words(target), word_struct(sz, target.endianness)
    for k in range(2 * sz if variant1 else sz, _TCB_REACH, 2 * sz if variant1 else sz):
        if variant1 and all(_tcb_at(w, n + k, tcb) for n in nodes.values()):
            return {t: n + k for t, n in nodes.items()}
        if not variant1 and all(_tcbhead(target, fmt, n - k) for n in nodes.values()):
            return {t: n - k for t, n in nodes.items()}
    return {}
