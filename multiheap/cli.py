"""The ``multiheap`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from multiheap.errors import MultiheapError


def _init(args: argparse.Namespace) -> int:
    from multiheap.hosts import init_lines

    rc, lines = init_lines(args.host)
    text = "\n".join(lines) + "\n"
    if not args.install:
        sys.stdout.write(text)
        return 0
    path = os.path.expanduser(rc)
    existing = open(path).read() if os.path.exists(path) else ""
    if all(line in existing for line in lines):
        print(f"multiheap: {rc} already loads multiheap", file=sys.stderr)
        return 0
    with open(path, "a") as f:
        f.write(("\n" if existing and not existing.endswith("\n") else "")
                + "# multiheap\n" + text)
    print(f"multiheap: added to {rc}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from multiheap.demo import run_demo

    return run_demo()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="multiheap",
        description="glibc ptmalloc heap analysis for gdb, lldb, radare2 and the shell")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sp = sub.add_parser("init", help="print the lines that load multiheap in a debugger")
    sp.add_argument("host", choices=("gdb",))
    sp.add_argument("--install", action="store_true", help="append them to the rc file")
    sp.set_defaults(fn=_init)
    sp = sub.add_parser("demo", help="build the bundled sample and show its heap")
    sp.set_defaults(fn=_demo)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    try:
        return args.fn(args)
    except MultiheapError as e:
        print(f"multiheap: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
