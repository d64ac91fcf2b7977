"""``multiheap trace``: run a program (or attach to a process) under a debugger with
every malloc and free traced, write the trace (JSON Lines) and print a summary.

    multiheap trace (--run 'PROG ARGS' | --pid PID) [-o FILE] [--backend gdb-mi|lldb]
                    [--backtrace N] [--break-on-error] [--watch]

--break-on-error from a terminal opens multiheap's shell on the program stopped at the
error; otherwise the error is printed and the trace ends.
Exit status: 0 when no error was caught, 1 when one was, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import signal
import sys
from typing import NoReturn, Optional

from multiheap.errors import MultiheapError, UsageError
from multiheap.progio import program_argv
from multiheap.trace import TraceOptions
from multiheap.trace.query import describe, records, summary_lines

# backend -> "module:class" of its trace driver, loaded by name like an entry point (the
# engine never imports an adapter directly)
DRIVERS = {"gdb-mi": "multiheap.adapters.gdbmi_trace:MiTrace",
           "lldb": "multiheap.adapters.lldb_trace:CliTrace"}
BACKENDS = tuple(DRIVERS)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see: multiheap trace -h)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="multiheap trace",
                description="Trace every malloc, calloc, realloc, free, memalign... of a "
                "program (all threads) with backtraces to a JSON Lines file; errors are "
                "caught at the call, before glibc runs; leaks are listed at exit.",
                epilog="exit status: 0 no error caught, 1 errors caught, 2 bad usage")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="'PROG ARGS'", help="run this program to its end")
    src.add_argument("--pid", type=int, metavar="PID",
                     help="attach; trace until Ctrl-C, then detach (it keeps running)")
    p.add_argument("-o", "--output", metavar="FILE", default="multiheap-trace.jsonl",
                   help="the trace file (default: %(default)s)")
    p.add_argument("--backend", default="gdb-mi", choices=BACKENDS,
                   help="debugger (default: %(default)s)")
    p.add_argument("--backtrace", type=int, default=8, metavar="N",
                   help="frames per call (default 8)")
    p.add_argument("--break-on-error", action="store_true",
                   help="stop at the first erroneous call (a shell on a terminal), then end")
    p.add_argument("--watch", action="store_true",
                   help="hardware watchpoints on recently freed chunks (write after free)")
    return p


def _check(args: argparse.Namespace) -> None:
    if not 0 <= args.backtrace <= 256:
        raise UsageError("--backtrace must be between 0 and 256")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
        raise UsageError(f"cannot write {args.output}: no writable directory {out_dir}")
    args.output = os.path.abspath(args.output)
    if args.run is not None:
        args.run = shlex.join(program_argv(args.run))
    elif args.pid is not None:
        if args.pid <= 0 or args.pid == os.getpid() or not os.path.isdir(f"/proc/{args.pid}"):
            raise UsageError(f"no process {args.pid} to attach to")


def _raise_exit(signum, _frame) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    """``multiheap trace ARGS``; returns the exit status."""
    args = parser().parse_args(argv)
    _check(args)
    opts = TraceOptions(backtrace=args.backtrace, break_on_error=args.break_on_error,
                        watch=args.watch, output=args.output, complete=args.run is not None)
    module, _, name = DRIVERS[args.backend].partition(":")
    try:
        driver = getattr(importlib.import_module(module), name)
    except ImportError as e:
        raise UsageError(f"backend {args.backend} is not usable here: {e}") from None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    tracer = driver(opts, run=args.run, pid=args.pid)
    detach = args.pid is not None
    try:
        tracer.start()
        if detach:
            print(f"multiheap: tracing process {args.pid} to {args.output}; Ctrl-C detaches",
                  file=sys.stderr)
        try:
            tracer.wait(on_error=lambda st: _at_error(args.output, tracer))
        except KeyboardInterrupt:
            tracer.interrupt()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        tracer.finish(detach)
    return _report(args.output)


def _at_error(path: str, tracer) -> None:
    """--break-on-error: show the error; on a terminal, a multiheap shell at the stop."""
    errs = [r for r in records(path) if r.get("error")]
    if errs:
        print("multiheap: stopped at " + describe(errs[-1]), file=sys.stderr)
        for f in errs[-1].get("backtrace", []):
            print(f"    {f['pc']:#x} {f.get('function') or '?'}", file=sys.stderr)
    shell = getattr(tracer, "shell", None)
    if shell is not None and sys.stdin.isatty() and sys.stdout.isatty():
        print("multiheap: a shell on the stopped program (quit or Ctrl-D ends the trace "
              "and the program)", file=sys.stderr)
        shell()


def _report(path: str) -> int:
    summary: Optional[dict] = None
    errors = []
    for r in records(path):
        if r.get("op") == "summary":
            summary = r
        elif r.get("error"):
            errors.append(r)
    for r in errors[:20]:
        print("error: " + describe(r))
    if summary is None:
        print(f"multiheap: the trace in {path} has no summary (the debugger was cut short)",
              file=sys.stderr)
        return 1 if errors else 0
    for line in summary_lines(summary):
        print(line)
    print(f"trace: {path}")
    return 1 if summary.get("errors") else 0


def run(argv: list[str]) -> int:
    """Entry from cli.py: one line on bad usage (status 2), never a traceback."""
    try:
        return main(argv)
    except MultiheapError as e:
        print(f"multiheap trace: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
