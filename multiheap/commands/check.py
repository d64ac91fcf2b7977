"""ptcheck, pttry, ptfind: diagnose the heap, predict glibc, find an address's chunk."""

from __future__ import annotations

from multiheap.checks import run_checks
from multiheap.checks.engine import MAX_PER_KIND
from multiheap.checks.find import find_chunk
from multiheap.checks.simulate import try_free, try_malloc
from multiheap.commands.base import address, command, count
from multiheap.commands.bins import emit_tcache_notes
from multiheap.errors import UsageError


@command("ptcheck", "check the whole heap: glibc's own rules and every cross-check")
class PtCheck:
    """Check every arena, heap, chunk, bin, fastbin, each thread's tcache, the mmapped
    chunks and mp_.  Each finding: kind, severity, addr, related addresses, message,
    and glibc (the message glibc would abort with, and on which operation) or null.
    A healthy heap gives no findings."""

    @staticmethod
    def args(p):
        p.add_argument("arena", nargs="?", metavar="ARENA", help="only this arena")

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        arena = heap.arena_at(address(session, args.arena)) if args.arena else None
        found = run_checks(heap, arena)
        out.field("count", len(found) + sum(found.omitted.values()))
        out.begin_list("findings", title="findings" if found else "")
        for f in found:
            text = "{severity}: {kind} at {addr:#x}: {message}"
            if f.glibc:
                text += "\n    glibc: \"{glibc[message]}\" on {glibc[operation]}"
            out.item(text.replace("{message}", f.message.replace("{", "{{")
                                  .replace("}", "}}")), **f.as_dict())
        out.end_list()
        if out.structured():  # text says it in the notes below
            out.field("omitted", dict(found.omitted))
        for kind, n in found.omitted.items():
            out.note(f"{n:,} more {kind} findings are not listed (the first "
                     f"{MAX_PER_KIND:,} of each kind are)")
        if not found and not out.structured():
            out.text("no problems found")
        emit_tcache_notes(heap, out)
        why = heap.mmapped.note() if arena is None else None
        if why:
            out.note(why)


@command("pttry", "what glibc's free(PTR) or malloc(SIZE) would do now (nothing runs)")
class PtTry:
    """Work out from memory what the target's glibc would do: which check aborts it
    (glibc's message), or where the chunk goes / which chunk malloc returns."""

    @staticmethod
    def args(p):
        p.add_argument("op", choices=("free", "malloc"), help="the call to model")
        p.add_argument("value", metavar="PTR|SIZE", help="free: user pointer; malloc: size")

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        if args.op == "free":
            res = try_free(heap, address(session, args.value))
        else:
            try:
                n = count(args.value)
            except Exception:
                n = address(session, args.value)
            res = try_malloc(heap, n)
        d = res.as_dict()
        out.field("operation", d["operation"])
        out.begin_list("steps")
        for s in d["steps"]:
            out.item("  " + s.replace("{", "{{").replace("}", "}}"), step=s)
        out.end_list()
        out.field("glibc", d["glibc"])
        out.field("result", d["result"], "#x" if d["result"] is not None else "")
        out.field("where", d["where"])


@command("ptfind", "the chunk that holds an address, its state and the offset into it")
class PtFind:
    """Find the chunk (any arena's heap or a mmapped chunk) whose bytes include ADDR."""

    @staticmethod
    def args(p):
        p.add_argument("addr", metavar="ADDR", help="any address (expression)")

    @staticmethod
    def run(session, args, out):
        heap = session.heap()
        addr = address(session, args.addr)
        f = find_chunk(heap, addr)
        if f is None:
            raise UsageError(f"{addr:#x} is in no chunk of any heap or mmapped chunk")
        where = f"{f.arena:#x}" if f.arena is not None else "mmapped"  # text only
        out.item("{addr:#x} {state} size={size:#x} arena=" + where + ": {query:#x} is at "
                 "offset {offset:+#x} of its user data", addr=f.addr, size=f.size,
                 state=f.state, arena=f.arena, offset=f.offset, query=addr)
