"""What a command is, and how any host runs one: parse, run, render, report errors."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import shlex
import traceback
from dataclasses import dataclass
from typing import Callable, NoReturn, Optional, Sequence

from multiheap.builders import Builder, JsonBuilder, PythonBuilder, TextBuilder
from multiheap.errors import MultiheapError, UsageError
from multiheap.session import Session
from multiheap.symbols import LazySymbols

RunFn = Callable[[Session, argparse.Namespace, Builder], None]


class HelpRequested(Exception):
    """``-h`` was given: the help text is the result."""


class CommandParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting (a debugger must not exit).

    A value that looks like a negative number (``-1``, ``-0x48``) is a value, not an
    option: ``--tcache-offset -0x48`` means ``--tcache-offset=-0x48``.
    """

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._negative_number_matcher = re.compile(r"^-(0[xX][0-9a-fA-F]+|\d+)$")

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see: {self.prog} -h)")

    def exit(self, status: int = 0, message: Optional[str] = None) -> NoReturn:
        raise HelpRequested(message or "")

    def print_help(self, file=None) -> None:
        raise HelpRequested(self.format_help())


@dataclass
class Command:
    """One command: its parser (the single source of its help) and its run function."""

    name: str
    summary: str
    parser: CommandParser
    run: RunFn


COMMANDS: dict[str, Command] = {}


def command(name: str, summary: str):
    """Decorator: ``@command("ptchunk", "...")`` on ``def setup(p)`` + ``def run``.

    Used as::

        @command("ptfoo", "one line")
        class _:
            @staticmethod
            def args(p): ...
            @staticmethod
            def run(session, args, out): ...
    """

    def wrap(cls):
        parser = CommandParser(prog=name, description=inspect.cleandoc(cls.__doc__ or summary),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        cls.args(parser)
        parser.add_argument("--json", action="store_true",
                            help="print exactly one JSON document")
        COMMANDS[name] = Command(name, summary, parser, cls.run)
        return cls

    return wrap


MAX_COUNT = 1 << 32


def count(text: str) -> int:
    """An argparse type for ``-c N``: a whole number a walk can take (0 to 2**32)."""
    try:
        n = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {quote(text)}") from None
    if not 0 <= n <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{quote(text)} is out of range (0 to {MAX_COUNT})")
    return n


def small_int(text: str) -> int:
    """An argparse type for indexes and thread numbers: an int of at most 64 bits."""
    try:
        n = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {quote(text)}") from None
    if abs(n) >= 1 << 64:
        raise argparse.ArgumentTypeError(f"{quote(text)} is out of range")
    return n


def quote(text: str, limit: int = 80) -> str:
    """``repr`` of a user's argument, cut to about ``limit`` characters."""
    r = repr(text)
    return r if len(r) <= limit else r[:limit - 4] + "...'"


def address(session: Session, text: str) -> int:
    """Evaluate an address argument with the host's expression evaluator.

    A negative value means the same in every host: two's complement at the target's
    pointer size (``ptchunk -1`` is 0xffffffffffffffff on x86_64).
    """
    try:
        value = session.evaluate(text)
    except MultiheapError:
        raise
    except Exception as e:  # host evaluators raise their own types
        raise UsageError(f"cannot evaluate {quote(text)}: "
                         f"{str(e).splitlines()[0] if str(e) else e}") from None
    bits = 8 * session.target.pointer_size
    if not -(1 << bits) < value < 1 << bits:
        raise UsageError(f"{quote(text)} is not an address: it needs more than {bits} bits")
    return value & ((1 << bits) - 1)


def offset(session: Session, text: str) -> int:
    """A signed offset argument (``--tcache-offset -0x48``), evaluated as an address."""
    bits = 8 * session.target.pointer_size
    value = address(session, text)
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass
class Result:
    """What a host prints: ``output`` on success, ``error`` (one line) otherwise."""

    output: object = ""
    error: str = ""
    status: int = 0
    json: bool = False


def run_command(session: Session, name: str, argv: list[str] | str, *,
                fmt: str = "text", color: bool = False,
                sink: Optional[Callable[[str], None]] = None) -> Result:
    """Parse ``argv`` for command ``name`` and run it; never raises for user errors.

    ``fmt`` is text, json or python (``--json`` forces json).  With ``sink``, the text
    and JSON builders stream their output there in pieces instead of returning it.
    """
    if isinstance(argv, str):
        wants_json = "--json" in argv.split()
        try:
            argv = shlex.split(argv)
        except ValueError as e:
            return _failed(name, f"{name}: {e}", 2, wants_json, [argv])
    wants_json = fmt == "json" or "--json" in argv
    cmd = COMMANDS.get(name)
    if cmd is None:
        return _failed(name, f"unknown command {quote(name)} (try pthelp)", 2, wants_json)
    try:
        args = cmd.parser.parse_args(argv)
    except HelpRequested as h:
        if wants_json:
            return Result(output=_json_doc({"command": name, "help": str(h)}), json=True)
        return Result(output=str(h))
    except MultiheapError as e:
        return _failed(name, _one_line(e), 2, wants_json, argv)
    if args.json:
        fmt = "json"
    tagger = session.meta.tagger(session.target.pointer_size) if session.meta.tags else None
    out: Builder
    if fmt == "json":
        out = JsonBuilder(name, tagger, sink=sink)
    elif fmt == "python":
        out = PythonBuilder(name, tagger)
    else:
        out = TextBuilder(tagger, color=color, sink=sink, symbolizer=LazySymbols(session))
    try:
        cmd.run(session, args, out)
    except MultiheapError as e:
        return _failed(name, f"{name}: {_one_line(e)}", 2, fmt == "json", argv)
    except Exception as e:  # never a traceback in the host
        if os.environ.get("MULTIHEAP_DEBUG"):
            traceback.print_exc()
        msg = _one_line(e)
        return _failed(name, f"{name}: internal error: {type(e).__name__}: {msg} "
                             "(MULTIHEAP_DEBUG=1 shows the traceback)", 1, fmt == "json", argv)
    return Result(output=out.render(), json=fmt == "json")


def _json_doc(data: dict) -> str:
    return json.dumps(data, separators=(",", ":")) + "\n"


def error_document(name: Optional[str], error: str) -> str:
    """The one JSON document of a failed ``--json`` command."""
    return _json_doc({"command": name, "error": _short(error)})


def _failed(name: str, error: str, status: int, as_json: bool,
            argv: Sequence[str] = ()) -> Result:
    """An error; with ``--json`` its output is also the one JSON document."""
    error = _short(error, argv)
    out = error_document(name, error) if as_json else ""
    return Result(output=out, error=error, status=status, json=as_json)


def _short(line: str, argv: Sequence[str] = ()) -> str:
    """An error line that quotes a huge argument stays readable: each argument longer
    than 80 characters is quoted by its first 76, and so is any word that long (a host
    may quote a piece of the argument in its own words)."""
    for arg in argv:
        if len(arg) > 80:
            line = _cut_echoes(line, arg)
    return " ".join(w if len(w) <= 80 else w[:76] + "..." + w[-1] for w in line.split(" "))


def _cut_echoes(line: str, arg: str, keep: int = 76) -> str:
    """Every run of more than 80 characters of ``line`` that is a piece of ``arg`` (a
    host may echo a suffix: "near `...'") shortened to its first ``keep``."""
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if i + 81 <= n and line[i:i + 81] in arg:
            lo, hi = i + 81, n  # the longest line[i:j] that is still in arg
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if line[i:mid] in arg:
                    lo = mid
                else:
                    hi = mid - 1
            out.append(line[i:i + keep] + "...")
            i = lo
        else:
            out.append(line[i])
            i += 1
    return "".join(out)


def _one_line(e: Exception) -> str:
    """An error as one tidy line (host messages may carry newlines or trailing blanks)."""
    return " ".join(str(e).split())
