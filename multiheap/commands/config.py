"""ptconfig: what was detected, how, and the user's overrides."""

from __future__ import annotations

import copy

from multiheap import glibc
from multiheap.commands.base import address, command, offset
from multiheap.discovery import Overrides
from multiheap.errors import MultiheapError, UsageError


@command("ptconfig", "glibc version, word size, where each structure was found and how")
class PtConfig:
    """Show what multiheap detected about the target's malloc and how it found it.

    Options override detection for odd builds (kept for the session).
    """

    @staticmethod
    def args(p):
        p.add_argument("--glibc", metavar="X.Y", help="force the glibc version")
        p.add_argument("--main-arena", metavar="ADDR", help="address of main_arena")
        p.add_argument("--mp", metavar="ADDR", help="address of mp_")
        p.add_argument("--tcache-offset", metavar="N",
                       help="tcache pointer = thread pointer + N")
        p.add_argument("--reset", action="store_true", help="forget all overrides")

    @staticmethod
    def run(session, args, out):
        before = copy.copy(session.overrides)
        ov = session.overrides
        if args.reset:
            session.overrides = ov = Overrides()
        try:
            if args.glibc:
                ov.version = glibc.parse_version(args.glibc)
                lo, hi = glibc.SUPPORTED
                if not lo <= ov.version <= hi:
                    raise ValueError(f"glibc {args.glibc} is outside what multiheap knows "
                                     f"({glibc.format_version(lo)} to "
                                     f"{glibc.format_version(hi)})")
            if args.main_arena:
                ov.main_arena = address(session, args.main_arena)
            if args.mp:
                ov.mp = address(session, args.mp)
            if args.tcache_offset:
                ov.tcache_offset = offset(session, args.tcache_offset)
        except (ValueError, MultiheapError) as e:
            session.overrides = before
            raise UsageError(str(e)) from None
        session.invalidate()
        if any((args.glibc, args.main_arena, args.mp, args.tcache_offset)):
            try:  # an override that makes no sense is refused, not kept
                heap = session.heap()
                heap.arenas()  # main_arena and mp_ are read here, not in heap()
                _ = heap.mp  # and mp_ (a property)
            except MultiheapError as e:
                session.overrides = before
                session.invalidate()
                raise UsageError(f"override not kept: {e}") from None
        t = session.target
        out.begin(title="multiheap configuration")
        out.field("adapter", t.name)
        out.field("state", t.state)
        out.field("arch", t.arch)
        out.field("pointer_size", t.pointer_size)
        try:
            heap = session.heap()
        except MultiheapError as e:
            out.field("glibc", None)
            out.note(str(e))
            out.end()
            return
        cfg, p = heap.cfg, heap.p
        out.field("glibc", glibc.format_version(cfg.version))
        out.field("tcache", p.has_tcache)
        out.field("safe_linking", p.safe_linking)
        out.field("fastbins", p.has_fastbins)
        out.begin("structures", title="structures")
        for name, addr in (("main_arena", cfg.main_arena), ("mp_", cfg.mp)):
            out.begin(name)
            out.item(name + " @ {addr:#x}  ({how})", addr=addr, how=cfg.how[name],
                     rejected=list(cfg.facts[name].rejected))
            out.end()
        tcs = heap.lists.tcaches() if p.has_tcache else []
        found = [tc for tc in tcs if tc.addr]
        out.begin("tcache")
        if found:
            tc = found[0]
            out.item("tcache @ {addr:#x}  ({how}; {threads_found} of {threads} threads)",
                     addr=tc.addr,
                     how=tc.how, threads_found=len(found), threads=len(tcs))
        else:
            how = tcs[0].how if tcs else ("glibc has no tcache" if not p.has_tcache
                                          else "no threads")
            out.item("tcache: {how}", addr=None, how=how)
        out.end()
        arenas = heap.arenas()
        broken = [st.reason for a in arenas for st in a.stops]
        out.begin("arenas")
        out.item("{count} " + ("arena" if len(arenas) == 1 else "arenas") + "  ({how})",
                 count=len(arenas),
                 how="main_arena.next chain" + (f", {broken[0]}" if broken else
                                                " back to main_arena"))
        out.end()
        out.end()
        lf = cfg.libc
        if lf is not None and lf.facts is not None:
            bias = "?" if lf.bias is None else f"{lf.bias:#x}"
            out.field("libc_file", f"{lf.path} (load bias {bias} from {lf.bias_how})",
                      label="ELF read for heuristics")
        out.field("version_how", cfg.how["version"], label="version found by")
        _routes(cfg, out)
        for w in heap.notes:
            out.note(w)
        out.end()


def _routes(cfg, out) -> None:
    """Per fact: the route that found it and each route tried before, with why not."""
    rows = [(name, f) for name, f in cfg.facts.items()]
    for tf in cfg.threads:
        rows.append((f"thread {tf.thread.num} pointer", tf.pointer))
        rows.append((f"thread {tf.thread.num} tcache", tf.tcache))
    out.begin_list("routes", title="how each fact was found")
    for name, f in rows:
        # the version's value is X.Y (its Fact holds it as major << 16 | minor)
        value = glibc.format_version(cfg.version) if name == "version" else f.value
        shown = "" if value is None else f" = {value}" if isinstance(value, str) \
            else f" = {value:#x}"
        out.begin(title=f"{name}{shown}: {f.how}")
        if out.structured():
            out.field("fact", name)
            out.field("value", value)
            out.field("found_by", f.how if f.found else None)
            out.field("why_not_found", None if f.found else f.how)
        out.begin_list("rejected")
        for r in f.rejected:
            out.item("tried and rejected: {route}", route=r)
        out.end_list()
        out.end()
    out.end_list()
