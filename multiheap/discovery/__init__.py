"""Discovery: how multiheap finds glibc's structures, in one place.

:func:`discover` answers every question the engine has about a target's malloc once,
before any :class:`~multiheap.heap.Heap` exists, and returns a frozen
:class:`Config`: the glibc version, main_arena, mp_, global_max_fast, each thread's
pointer and tcache, each as a :class:`Fact` with the route that found it and the routes
tried and rejected.  Walks never discover; adapters keep no fallback of their own.

- :mod:`.routes`: version, main_arena, mp_, global_max_fast
- :mod:`.threads`: thread pointers and tcaches
- :mod:`.evidence`: libc's ELF file, memory scans, the invariants guesses must pass
- :mod:`.facts`: Fact, Config, Overrides (plain data)
"""

from __future__ import annotations

from typing import Optional

from multiheap.discovery import evidence, loaded, routes, threads
from multiheap.discovery.facts import (
    NO_TCACHE_YET,
    NOT_INITIALISED,
    Config,
    Fact,
    LibcFile,
    Overrides,
    ThreadFacts,
)
from multiheap.errors import MultiheapError, NotFoundError
from multiheap.layouts import Params
from multiheap.target import Target

__all__ = ["Config", "Fact", "LibcFile", "NO_TCACHE_YET", "NOT_INITIALISED", "Overrides",
           "ThreadFacts", "discover"]


def discover(target: Target, overrides: Optional[Overrides] = None) -> Config:
    """Every fact about the target's malloc, with how each was found (raises
    NotFoundError, one line, when main_arena or mp_ cannot be found at all)."""
    ov = overrides or Overrides()
    target = loaded.with_modules(target)  # a core without file notes: ld.so's list
    version, vfact = routes.version(target, ov)
    ptr_size, endian = target.pointer_size, target.endianness
    p = Params(version, ptr_size, target.arch)
    st = routes.Structures(target, p, endian)
    facts: dict[str, Fact] = {"version": vfact, "main_arena": st.main_arena(ov.main_arena)}
    arena = facts["main_arena"].value
    facts["mp_"] = st.mp(ov.mp, arena) if arena is not None else \
        Fact(None, "needs main_arena first")
    missing = [n for n in ("main_arena", "mp_") if not facts[n].found]
    if missing:
        why = "; ".join(f"{n} not found: {facts[n].how}" for n in missing)
        raise NotFoundError(f"{why}. No debug info for libc here (libc6-dbg gives it); "
                            f"{routes.OVERRIDE_HINT}")
    assert arena is not None and facts["mp_"].value is not None
    mp = facts["mp_"].value
    warnings = list(st.warnings)
    for name, check in (("main_arena", lambda a: st._check_arena(a, None)),
                        ("mp_", lambda a: evidence.check_mp(target, a, arena, p,
                                                                   endian))):
        if facts[name].how == routes.FORCED:  # the user's address is checked, with warnings
            bad = check(facts[name].value)
            if bad is not None:
                warnings.append(f"{name} at {facts[name].value:#x} ({routes.FORCED}) "
                                f"fails the checks: {bad}")
    warnings += routes.damaged_fields(target, mp, p, endian)
    warnings += routes.damaged_arena(target, arena, p, endian)
    initialised = routes.initialised(target, arena, p, endian)
    if not initialised:
        warnings.insert(0, NOT_INITIALISED)
    gmf = st.global_max_fast()
    facts["global_max_fast"] = gmf
    warnings += routes.cross_check(target, version, ptr_size)
    thread_facts: tuple[ThreadFacts, ...] = ()
    if p.has_tcache:
        try:
            ts = target.threads()
        except MultiheapError:
            ts = []
        if initialised:  # a host without a memory map (qemu's stub) still has the heaps
            view = loaded.with_heaps(target, Config(
                version, ptr_size, target.arch, endian, arena, mp, gmf.value, facts))
            gone = loaded.unmapped_only(target, view, arena, p, endian)
            warnings = [w for w in warnings if not any(g in w for g in gone)]
            target = view
        tps = threads.thread_pointers(target, ts, ptr_size, endian)
        thread_facts = tuple(threads.tcaches(target, ts, tps, p, endian, lambda: st.lf,
                                             ov.tcache_offset))
        if not initialised:  # no malloc has run: no thread can have a tcache yet
            thread_facts = tuple(
                tf if tf.tcache.found else ThreadFacts(tf.thread, tf.pointer, Fact(
                    0, f"{NO_TCACHE_YET}; {NOT_INITIALISED}", tf.tcache.rejected))
                for tf in thread_facts)
    return Config(version, ptr_size, target.arch, endian, arena, mp, gmf.value, facts,
                  tuple(warnings), st._lf if st._lf_read else None, thread_facts,
                  initialised)

