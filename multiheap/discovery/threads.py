"""Routes to each thread's pointer and tcache.

Thread pointer: the host's register, accepted only when ``tcbhead_t`` there points at
itself (x86's TLS variant II; the one place this check lives), else glibc's own lists of
``struct pthread`` (:mod:`.pthreads`: with debug info's layouts or without), else a
memory scan for ``struct pthread``.  Tcache
pointer: the user's ``--tcache-offset``; the host's debug info for the TLS variable
``tcache``; libc's ``link_map.l_tls_offset`` (ld.so's debug info); libc's build-id
debug file through the DTV; libc's TPOFF relocations or a scan below the thread
pointer.  A NULL pointer is :data:`NO_TCACHE_YET`, not a failure.
"""

from __future__ import annotations

from typing import Callable, Optional

from multiheap import arch, debugfile
from multiheap.discovery import evidence, glibclists, pthreads
from multiheap.discovery.facts import NO_TCACHE_YET, Chain, Fact, LibcFile, ThreadFacts
from multiheap.errors import MultiheapError
from multiheap.layouts import Params
from multiheap.memory import same_file
from multiheap.target import Target, Thread, word_struct


def _word(target: Target, addr: int, sz: int, endian: str) -> Optional[int]:
    try:
        return int.from_bytes(target.read(addr, sz), endian)
    except MultiheapError:
        return None


def is_tcb(target: Target, tp: int, sz: int, endian: str) -> bool:
    """Does the thread pointer ``tp`` point at a ``tcbhead_t`` (evidence.tcbhead_at;
    pthreads.is_variant1_tcb on arm and aarch64)?"""
    if arch.tls_variant(target.arch) == 1:
        return pthreads.is_variant1_tcb(target, tp)
    try:
        head = target.read(tp, 3 * sz)
    except MultiheapError:
        return False
    fmt = word_struct(sz, endian)
    return tp > 0xFFFF and evidence.tcbhead_at(head, 0, tp, fmt)


def thread_pointers(target: Target, threads: list[Thread], sz: int,
                    endian: str) -> dict[int, Fact]:
    """{thread num: Fact}: the host's register if it holds a tcbhead, else a scan."""
    out: dict[int, Fact] = {}
    chains: dict[int, Chain] = {}
    for t in threads:
        chain = chains[t.num] = Chain()
        try:
            tp = target.thread_pointer(t)
        except MultiheapError as e:
            tp, why = None, str(e)
        else:
            why = "the host does not give it"
        if tp and is_tcb(target, tp, sz, endian):
            out[t.num] = chain.found(tp, "register (fs_base/gs_base; tpidr_el0, tpidruro, "
                                         "tp on arm and riscv)")
            continue
        chain.reject("register", why if not tp else f"{tp:#x} holds no tcbhead")
    missing = [t for t in threads if t.num not in out]
    lists = pthreads.thread_lists(target, [t.tid for t in threads]) if missing else None
    listed = pthreads.thread_pointers(target, lists) if lists is not None else {}
    for t in missing:
        tp = listed.get(t.tid)
        if tp and is_tcb(target, tp, sz, endian):
            out[t.num] = chains[t.num].found(tp, f"glibc's thread list ({lists.how})")
        else:
            chains[t.num].reject("glibc's thread list",
                                 "not found (no debug info, and no ring of live threads "
                                 "in _rtld_global)" if lists is None or not lists.nodes else
                                 f"tid {t.tid} not in it" if t.tid not in lists.nodes else
                                 "no tcbhead at one distance from every node" if not tp else
                                 f"{tp:#x} holds no tcbhead")
    missing = [t for t in threads if t.num not in out]
    if missing:
        found = evidence.scan_thread_pointers(target, [t.tid for t in missing], sz, endian)
        for t in missing:
            tp = found.get(t.tid)
            out[t.num] = chains[t.num].found(tp, "memory scan for struct pthread") \
                if tp else chains[t.num].failed("not found (register and memory scan)")
    return out


def _plausible_slot(target: Target, p: Params, endian: str):
    sz = p.ptr_size

    def check(slot: int) -> bool:
        v = _word(target, slot, sz, endian)
        if v is None:
            return False
        if v == 0:
            return True
        size = _word(target, v - sz, sz, endian)
        return size is not None and 0x80 <= size & ~7 <= 0x1000

    return check


def tcaches(target: Target, threads: list[Thread], tps: dict[int, Fact], p: Params,
            endian: str, libc: Callable[[], Optional[LibcFile]],
            offset: Optional[int]) -> list[ThreadFacts]:
    """Each thread's tcache, by the first route that answers."""
    sz = p.ptr_size
    guess: Optional[tuple[Optional[int], str]] = None
    below: list[Optional[int]] = []
    out = []
    for t in threads:
        tp = tps[t.num].value
        chain = Chain()
        slot, how = None, ""
        if offset is not None:
            if tp is not None:
                slot, how = tp + offset, f"thread pointer {offset:+#x}"
            else:
                chain.reject("ptconfig --tcache-offset", "no thread pointer")
        else:
            try:
                slot = target.tls_symbol("tcache", t)
            except MultiheapError:
                slot = None
            how = "debug info (TLS variable tcache)"
            if slot is None:
                chain.reject("host debug info", "no TLS variable tcache")
                if tp is not None:
                    if not below:  # the same for every thread: looked up once
                        below.append(glibclists.static_tls_offset(target, "tcache"))
                    slot = None if below[0] is None else tp - below[0]
                how = "debug info (TLS variable tcache, libc's link_map.l_tls_offset)"
            if slot is None:
                chain.reject("libc's link_map", "no debug info for ld.so's link_map, or "
                             "no TLS symbol tcache")
                slot = debugfile.tls_address(target, "tcache", t, tp,
                                             check=_plausible_slot(target, p, endian))
                how = "debug info (TLS variable tcache, libc's build-id debug file)"
            if slot is None:
                chain.reject("build-id debug file", "none, or no TLS block for it")
                if guess is None:
                    guess = _guess_offset(target, [tps[x.num].value or 0 for x in threads],
                                          p, endian, libc())
                off, ghow = guess
                if off is None:
                    chain.reject("libc's TLS relocations and a scan", ghow)
                elif tp is None:
                    chain.reject(ghow, "no thread pointer")
                else:
                    slot, how = tp + off, ghow
        fact: Fact
        if slot is None:
            fact = chain.failed("not found (" + "; ".join(chain.rejected[-1:]) + ")")
        else:
            v = _word(target, slot, sz, endian)
            if v is None:
                fact = chain.failed(f"not found (its TLS slot {slot:#x} is unreadable; {how})")
            elif v == 0:
                fact = chain.found(0, f"{NO_TCACHE_YET}; {how}")
            else:
                fact = chain.found(v, how)
        out.append(ThreadFacts(t, tps[t.num], fact))
    return out


def _guess_offset(target: Target, tps: list[int], p: Params, endian: str,
                  lf: Optional[LibcFile]) -> tuple[Optional[int], str]:
    offsets = evidence.tls_offsets(target, lf.facts if lf else None,
                                   lf.bias if lf else None, p.ptr_size)
    dummy = [r for r in target.regions() if lf is not None and same_file(r.name, lf.path)]
    scan = evidence.TLS_SCAN
    if lf is not None and lf.static and lf.facts is not None and lf.facts.tls_size:
        scan = lf.facts.tls_size  # the executable's TLS block ends at the pointer
    off, how = evidence.find_tcache_offset(target, tps, p, offsets, endian, dummy, scan)
    return off, ("heuristic: " + how if off is not None else how)
