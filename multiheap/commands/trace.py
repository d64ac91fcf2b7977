"""pttrace and pthistory: every malloc and free with its backtrace, errors at the call.

The commands are the same in every host; the host's tracer (breakpoints, backtraces,
watchpoints) is ``session.tracer``, a :class:`multiheap.trace.TraceControl` the host's
plugin provides.  A host without one says so in one line.
"""

from __future__ import annotations

from multiheap.commands.base import address, command, count, small_int
from multiheap.errors import UsageError
from multiheap.trace import TraceOptions
from multiheap.trace.query import describe, history, select, summary_lines
from multiheap.trace.records import OPS


def _tracer(session):
    tracer = getattr(session, "tracer", None)
    if tracer is None:
        host = getattr(session.target, "name", "this host")
        if host == "r2":
            raise UsageError("tracing is not supported in radare2 (use gdb, lldb or "
                             "`multiheap trace --run 'PROG ARGS'`)")
        raise UsageError(f"tracing is not supported in {host} (use gdb, lldb or "
                         "`multiheap trace --run 'PROG ARGS'`)")
    return tracer


def _esc(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _emit(out, recs: list[dict]) -> None:
    out.begin_list("records")
    for r in recs:
        out.item(_esc(describe(r)), **r)
    out.end_list()


@command("pttrace", "trace every malloc and free (start, stop, status, save, show)")
class PtTrace:
    """Trace the allocator: every malloc, calloc, realloc, free, memalign... in every
    thread, with its backtrace, to a JSON Lines file.  Errors (double free, invalid or
    misaligned free, free inside a chunk, realloc of a freed pointer) are caught at the
    call, before glibc runs.  At exit, a summary record lists the leaks.

      pttrace start [--backtrace N] [--break-on-error] [--watch] [-o FILE]
      pttrace stop | status | save FILE | show [--op OP] [--tid T] [-c N] [--errors]"""

    @staticmethod
    def args(p):
        p.add_argument("action", choices=("start", "stop", "status", "save", "show"))
        p.add_argument("file", nargs="?", metavar="FILE", help="save: where to copy the trace")
        p.add_argument("--backtrace", type=count, default=8, metavar="N",
                       help="frames per call (default 8)")
        p.add_argument("--break-on-error", action="store_true",
                       help="stop the program at an erroneous call, before glibc runs")
        p.add_argument("--watch", action="store_true",
                       help="hardware watchpoints on the most recently freed chunks")
        p.add_argument("-o", "--output", metavar="FILE",
                       help="start: stream the trace to FILE (default: a temporary file)")
        p.add_argument("--op", choices=(*OPS, "write", "error"), help="show: only this op")
        p.add_argument("--tid", type=small_int, help="show: only this thread id")
        p.add_argument("-c", "--count", type=count, default=None, help="show: the last N")
        p.add_argument("--errors", action="store_true", help="show: errors only")

    @staticmethod
    def run(session, args, out):
        tracer = _tracer(session)
        if args.action != "save" and args.file:
            raise UsageError(f"pttrace {args.action} takes no FILE")
        if args.action == "start":
            tracer.start(TraceOptions(backtrace=args.backtrace,
                                      break_on_error=args.break_on_error,
                                      watch=args.watch, output=args.output))
            st = tracer.status()
            out.fields({"running": True, "file": st["file"]})
            out.text(f"tracing to {st['file']} (backtrace {args.backtrace}"
                     + (", break on error" if args.break_on_error else "")
                     + (f", watching {tracer.watch_slots} freed chunks" if args.watch else "")
                     + "); continue the program")
            if args.watch and tracer.watch_slots == 0:
                out.note("--watch: no hardware watchpoints available here")
        elif args.action == "stop":
            s = tracer.stop()
            out.fields({"running": False, "file": tracer.path})
            out.field("summary", s)
            for line in summary_lines(s):
                out.text(line)
            out.text(f"trace in {tracer.path} (pttrace save FILE to keep it)")
        elif args.action == "status":
            st = tracer.status()
            out.fields(st)
            if not st["file"]:
                out.text("no trace (pttrace start)")
            else:
                state = "running" if st["running"] else f"ended ({st['end']})"
                out.text(f"trace {state}: {st['calls']} calls, {st['errors']} errors, "
                         f"{st['live_chunks']} chunks live; file {st['file']}")
        elif args.action == "save":
            if not args.file:
                raise UsageError("usage: pttrace save FILE")
            n = tracer.save(args.file)
            out.fields({"file": args.file, "records": n})
            out.text(f"{n} records saved to {args.file}")
        else:
            if not tracer.path:
                raise UsageError("no trace yet (pttrace start)")
            tracer.flush()
            recs = select(tracer.path, args.op, args.tid,
                          args.count if args.count is not None else 50, args.errors)
            _emit(out, recs)
            if tracer.summary is not None and not (args.op or args.tid or args.errors):
                for line in summary_lines(tracer.summary):
                    out.text(line)


@command("pthistory", "every traced event of the chunk holding ADDR")
class PtHistory:
    """The trace's story of the chunk holding ADDR (a user pointer or any address inside
    its user bytes): which call allocated it with which backtrace, who freed it, what it
    was reallocated into, errors naming it, and its later lives at the same address."""

    @staticmethod
    def args(p):
        p.add_argument("addr", metavar="ADDR", help="an address (expression)")

    @staticmethod
    def run(session, args, out):
        tracer = _tracer(session)
        if not tracer.path:
            raise UsageError("no trace yet (pttrace start)")
        addr = address(session, args.addr)
        tracer.flush()
        recs = history(tracer.path, addr)
        out.field("addr", addr, "#x")
        if not recs:
            out.text(f"{addr:#x}: no traced event")
        _emit(out, recs)
