"""What a command is, and how any host runs one: parse, run, render, report errors."""

from __future__ import annotations

import argparse
import os
import shlex
import traceback
from dataclasses import dataclass
from typing import Callable, NoReturn, Optional

from multiheap.builders import Builder, JsonBuilder, PythonBuilder, TextBuilder
from multiheap.errors import MultiheapError, UsageError
from multiheap.session import Session

RunFn = Callable[[Session, argparse.Namespace, Builder], None]


class HelpRequested(Exception):
    """``-h`` was given: the help text is the result."""


class CommandParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting (a debugger must not exit)."""

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
    needs_heap: bool = True


COMMANDS: dict[str, Command] = {}


def command(name: str, summary: str, needs_heap: bool = True):
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
        parser = CommandParser(prog=name, description=(cls.__doc__ or summary).strip(),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        cls.args(parser)
        parser.add_argument("--json", action="store_true",
                            help="print exactly one JSON document")
        COMMANDS[name] = Command(name, summary, parser, cls.run, needs_heap)
        return cls

    return wrap


def address(session: Session, text: str) -> int:
    """Evaluate an address argument with the host's expression evaluator."""
    try:
        return session.evaluate(text)
    except MultiheapError:
        raise
    except Exception as e:  # host evaluators raise their own types
        raise UsageError(f"cannot evaluate {text!r}: {str(e).splitlines()[0] if str(e) else e}"
                         ) from None


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
    builder streams its output there in pieces instead of returning it.
    """
    if isinstance(argv, str):
        try:
            argv = shlex.split(argv)
        except ValueError as e:
            return Result(error=f"{name}: {e}", status=2)
    cmd = COMMANDS.get(name)
    if cmd is None:
        return Result(error=f"unknown command {name!r} (try pthelp)", status=2)
    try:
        args = cmd.parser.parse_args(argv)
    except HelpRequested as h:
        return Result(output=str(h))
    except MultiheapError as e:
        return Result(error=_one_line(e), status=2)
    if args.json:
        fmt = "json"
    tagger = session.meta.tagger(session.target.pointer_size) if session.meta.tags else None
    out: Builder
    if fmt == "json":
        out = JsonBuilder(name, tagger)
    elif fmt == "python":
        out = PythonBuilder(name, tagger)
    else:
        out = TextBuilder(tagger, color=color, sink=sink)
    try:
        cmd.run(session, args, out)
    except MultiheapError as e:
        return Result(error=f"{name}: {_one_line(e)}", status=2, json=fmt == "json")
    except Exception as e:  # never a traceback in the host
        if os.environ.get("MULTIHEAP_DEBUG"):
            traceback.print_exc()
        msg = str(e).splitlines()[0] if str(e) else ""
        return Result(error=f"{name}: internal error: {type(e).__name__}: {msg} "
                            "(MULTIHEAP_DEBUG=1 shows the traceback)",
                      status=1, json=fmt == "json")
    return Result(output=out.render(), json=fmt == "json")


def _one_line(e: Exception) -> str:
    """An error as one tidy line (host messages may carry newlines or trailing blanks)."""
    return " ".join(str(e).split())


def split_command_line(line: str) -> tuple[str, list[str]]:
    """``"ptchunk 0x10 -c 2"`` -> ("ptchunk", ["0x10", "-c", "2"])."""
    parts = shlex.split(line)
    if not parts:
        raise UsageError("empty command")
    return parts[0], parts[1:]
