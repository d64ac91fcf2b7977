"""The ``multiheap`` command line: one heap command (or a shell) on a core, PID or program.

    multiheap [--backend NAME] [--debug-dir DIR]... (--core CORE [--exe EXE] | --pid PID
              | --run 'PROG ARGS' [--break FUNC]) [COMMAND [ARGS...]]
    multiheap init gdb|lldb|r2 [--install]
    multiheap demo
    multiheap triage CORE... [--workers N | --scheduler ADDRESS] [-o OUT.parquet]

Exit status: the command's (0 success), 2 for bad usage or unusable input, 130 on
Ctrl-C.  With ``--json`` a command prints exactly one JSON document on stdout;
diagnostics always go to stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import NoReturn, Optional

from multiheap.errors import MultiheapError

DEFAULT_BACKEND = "gdb-mi"
ACTIONS = ("init", "demo", "triage")


class UsageExit(Exception):
    """Bad command-line usage: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageExit(f"{message} (see: {self.prog} -h)")


def _init(args: argparse.Namespace) -> int:
    from multiheap.hosts import init_lines

    try:
        rc, lines = init_lines(args.host)
    except ValueError as e:
        raise UsageExit(str(e)) from None
    text = "\n".join(lines) + "\n"
    if not args.install:
        sys.stdout.write(text)
        return 0
    home = os.environ.get("HOME", "")
    if not home or not os.path.isdir(home):
        what = "not set" if not home else f"{home[:80]!r}, not a directory"
        raise UsageExit(f"cannot install: HOME is {what}"
                        f" (print the lines with `multiheap init {args.host}` and add them to "
                        f"{rc} yourself)")
    path = os.path.join(home, rc.removeprefix("~/"))
    try:
        existing = ""
        if os.path.exists(path):
            with open(path) as f:
                existing = f.read()
        active = {ln.strip() for ln in existing.splitlines()
                  if ln.strip() and not ln.lstrip().startswith("#")}
        if all(line.strip() in active for line in lines):
            print(f"multiheap: {rc} already loads multiheap", file=sys.stderr)
            return 0
        with open(path, "a") as f:
            f.write(("\n" if existing and not existing.endswith("\n") else "")
                    + "# multiheap\n" + text)
    except (OSError, UnicodeDecodeError) as e:
        raise MultiheapError(f"cannot update {path}: {getattr(e, 'strerror', None) or e}"
                             ) from None
    print(f"multiheap: added to {rc}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from multiheap.demo import run_demo

    return run_demo(backend=args.backend)


def action_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="multiheap", description="set-up and demo actions")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sp = sub.add_parser("init", help="print the lines that load multiheap in a debugger")
    sp.add_argument("host", choices=("gdb", "lldb", "r2"), help="the debugger: %(choices)s")
    sp.add_argument("--install", action="store_true", help="append them to the rc file")
    sp.set_defaults(fn=_init)
    sp = sub.add_parser("demo", help="build the bundled sample and show its heap")
    sp.add_argument("--backend", default=DEFAULT_BACKEND, help="adapter (default: %(default)s)")
    sp.set_defaults(fn=_demo)
    from multiheap.triage.run import add_parser as add_triage  # imports no Dask

    add_triage(sub)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="multiheap",
        usage="multiheap [--backend NAME] [--debug-dir DIR]... (--core CORE [--exe EXE] | "
              "--pid PID | --run 'PROG ARGS' [--break FUNC]) [COMMAND [ARGS...]]\n"
              "       multiheap init gdb|lldb|r2 [--install]\n"
              "       multiheap demo\n"
              "       multiheap triage CORE... [--exe EXE] [-o OUT.parquet] [--jsonl OUT.jsonl] "
              "[--workers N] [--scheduler ADDRESS] [--timeout S]",
        description="glibc ptmalloc heap analysis of a core file, a running process or a "
                    "program, from the shell.  Without COMMAND: an interactive shell.  "
                    "Commands: multiheap --core CORE pthelp; each takes -h and --json.",
        epilog="exit status: 0 success, 2 bad usage or unusable input, 130 Ctrl-C")
    p.add_argument("--backend", default=DEFAULT_BACKEND, metavar="NAME",
                   help="debugger adapter to use (default: %(default)s)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--core", metavar="CORE", help="a core file (post-mortem)")
    src.add_argument("--pid", metavar="PID", type=_pid, help="attach to a running process, "
                     "read, detach (it goes on running)")
    src.add_argument("--run", metavar="'PROG ARGS'",
                     help="run a program until it stops (signal or --break), then look")
    p.add_argument("--exe", metavar="EXE", help="the executable of --core (default: "
                   "the one the core names)")
    p.add_argument("--break", dest="brk", metavar="FUNC",
                   help="with --run: stop at this function (a breakpoint)")
    p.add_argument("--debug-dir", dest="debug_dirs", action="append", default=[],
                   metavar="DIR", help="also look for separate debug files (.build-id/...) "
                   "here, e.g. another glibc's usr/lib/debug or its sysroot (repeatable)")
    p.add_argument("--sysroot", metavar="DIR", help="the target's libraries are under "
                   "DIR (gdb's set sysroot), e.g. /usr/aarch64-linux-gnu for a core of "
                   "qemu-aarch64 -L /usr/aarch64-linux-gnu")
    p.add_argument("command", nargs="?", metavar="COMMAND", help="a multiheap command")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="its arguments")
    return p


def _pid(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r}") from None


def _raise_exit(signum, _frame) -> NoReturn:
    raise SystemExit(128 + signum)


def _backend(name: str):
    """The adapter the shell can start for ``--backend NAME``, or a usage error."""
    from multiheap import registry

    known = registry.adapters()
    shell = sorted(n for n, i in known.items() if i.host is None)
    info = known.get(name)
    if info is None:
        raise UsageExit(f"unknown backend {name[:80]!r} (backends: "
                        + ", ".join(shell) + ")")
    if info.host == "python":
        raise UsageExit(f"backend {name!r} is a memory image built in Python (for "
                        "tests and scripts), not a debugger (backends: " + ", ".join(shell)
                        + ")")
    if info.host is not None:
        raise UsageExit(f"backend {name!r} runs inside {info.host}, not from the "
                        "shell (use: multiheap init " + info.host + ")")
    return info


def _open(args: argparse.Namespace):
    """The chosen backend started on one request, checked once (multiheap.startup)."""
    from multiheap.startup import validate

    info = _backend(args.backend)
    request = validate(core=args.core, exe=args.exe, pid=args.pid, run=args.run,
                       brk=args.brk, debug_dirs=args.debug_dirs, sysroot=args.sysroot)
    if request.sysroot:  # for the engine's own reads of the target's files
        os.environ["MULTIHEAP_SYSROOT"] = request.sysroot
        debug = os.path.join(request.sysroot, "usr", "lib", "debug")
        if os.path.isdir(debug):  # where gdb looks too (its debug-file-directory there)
            from multiheap.startup import export_debug_dirs

            export_debug_dirs([debug])
    return info.open(request=request)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except (UsageExit, MultiheapError) as e:
        _fail(argv, str(e))
        return 2
    except KeyboardInterrupt:
        print("multiheap: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `multiheap ... ptlist | head`
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 0


def _fail(argv: list[str], error: str) -> None:
    """One line on stderr; with ``--json`` also the one JSON document on stdout."""
    from multiheap.commands.base import error_document

    error = " ".join(error.split())
    if "--json" in argv:
        name = next((a for a in argv if a.startswith("pt")), None)
        sys.stdout.write(error_document(name, error))
        sys.stdout.flush()
    print(f"multiheap: {error}", file=sys.stderr)


def _help_only(args: argparse.Namespace) -> bool:
    """``pthelp`` or ``COMMAND -h``: answered without a target."""
    from multiheap.commands import COMMANDS

    return args.command in COMMANDS and (
        args.command == "pthelp" or any(a in ("-h", "--help") for a in args.args))


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "trace":  # multiheap/tracecli.py
        from multiheap.tracecli import run
        return run(argv[1:])
    if argv and argv[0] in ACTIONS:
        args = action_parser().parse_args(argv)
        return args.fn(args)
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    _backend(args.backend)
    if args.core is None and args.pid is None and args.run is None and _help_only(args):
        from multiheap.session import Session
        from multiheap.shell import run_one

        return run_one(Session(None), args.command, args.args)  # type: ignore[arg-type]
    if args.core is None and args.pid is None and args.run is None:
        raise UsageExit("give a target: --core CORE, --pid PID or --run 'PROG ARGS'")
    if args.exe and args.core is None:
        raise UsageExit("--exe goes with --core")
    if args.brk and args.run is None:
        raise UsageExit("--break goes with --run")
    from multiheap.commands import COMMANDS

    if args.command is not None and args.command not in COMMANDS:
        raise UsageExit(f"unknown command {args.command!r} (commands: "
                        + ", ".join(sorted(COMMANDS)) + ")")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)  # unwind, so the debugger is ended cleanly
    target = _open(args)
    try:
        from multiheap.session import Session

        session = Session(target, target.evaluate)
        if args.command is None:
            from multiheap.shell import run_shell

            return run_shell(session)
        from multiheap.shell import run_one

        return run_one(session, args.command, args.args)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        target.close()


if __name__ == "__main__":
    sys.exit(main())
