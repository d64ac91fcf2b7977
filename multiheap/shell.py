"""The interactive shell of ``multiheap`` with no COMMAND: history and completion.

Every pt* command, with tab completion of command names and of each command's
options (taken from its argparse parser).  History is kept in ``~/.multiheap_history``
(``MULTIHEAP_HISTORY`` overrides).  Ctrl-C stops a running command; at the prompt,
Ctrl-C or Ctrl-D leaves.
"""

from __future__ import annotations

import cmd
import os
import shlex
import sys
from typing import Optional

from multiheap.commands import COMMANDS, run_command
from multiheap.session import Session

HISTORY_LENGTH = 1000


def history_file() -> str:
    return os.environ.get("MULTIHEAP_HISTORY") or os.path.expanduser("~/.multiheap_history")


def options_of(name: str) -> list[str]:
    """The option strings of command ``name`` (for completion)."""
    command = COMMANDS.get(name)
    if command is None:
        return []
    return sorted(o for a in command.parser._actions for o in a.option_strings)


def complete(line: str, text: str) -> list[str]:
    """Completions of ``text`` (the word under the cursor) in ``line`` (before it)."""
    words = line.split()
    if not words or (len(words) == 1 and not line.endswith(" ")):
        names = sorted(COMMANDS) + ["help", "quit"]
        return [n for n in names if n.startswith(text)]
    return [o for o in options_of(words[0]) if o.startswith(text)]



def run_one(session, name: str, argv: list[str]) -> int:
    """Run one command, print its result; returns the exit status."""
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    res = run_command(session, name, argv, color=color, sink=sys.stdout.write)
    if res.output:  # with --json, also an error's one JSON document
        sys.stdout.write(str(res.output))
    sys.stdout.flush()
    if res.error:
        print(f"multiheap: {res.error}", file=sys.stderr)
        return res.status or 2
    return 0


class Shell(cmd.Cmd):
    """Reads command lines and runs them through the session."""

    intro = ""

    def __init__(self, session: Session, interactive: bool) -> None:
        super().__init__()
        self.session = session
        self.interactive = interactive
        self.prompt = "multiheap> " if interactive else ""
        self.status = 0
        self.identchars += "-"

    # dispatch --------------------------------------------------------------------
    def default(self, line: str) -> bool:
        try:
            name, *argv = shlex.split(line)
        except ValueError as e:
            print(f"multiheap: {e}", file=sys.stderr)
            self.status = 2
            return False
        if name not in COMMANDS:
            print(f"multiheap: unknown command {name!r} (try pthelp)", file=sys.stderr)
            self.status = 2
            return False
        try:
            self.status = run_one(self.session, name, argv)
        except KeyboardInterrupt:
            print("\nmultiheap: interrupted", file=sys.stderr)
            self.status = 130
        return False

    def emptyline(self) -> bool:
        return False

    def do_quit(self, _arg: str) -> bool:
        """Leave the shell."""
        return True

    do_exit = do_quit

    def do_EOF(self, _arg: str) -> bool:
        if self.interactive:
            print()
        return True

    def do_help(self, arg: str) -> None:
        """help [COMMAND]: the command list, or one command's options."""
        self.default(f"{arg} -h" if arg else "pthelp")

    def completenames(self, text: str, *ignored) -> list[str]:
        return complete("", text)

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        return complete(line[:begidx], text)

    def complete_help(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        return [n for n in sorted(COMMANDS) if n.startswith(text)]


def _readline():
    try:
        import readline
    except ImportError:
        return None
    return readline


def run_shell(session: Session, stdin=None) -> int:
    """Run the shell until quit/EOF/Ctrl-C at the prompt; returns the last status."""
    stdin = stdin or sys.stdin
    interactive = stdin.isatty()
    shell = Shell(session, interactive)
    rl = _readline() if interactive else None
    hist: Optional[str] = None
    if rl is not None:
        hist = history_file()
        try:
            rl.read_history_file(hist)
        except OSError:
            pass
        rl.set_history_length(HISTORY_LENGTH)
        rl.set_completer_delims(" \t\n")
    else:
        shell.use_rawinput = False
        shell.stdin = stdin
    try:
        shell.cmdloop()
    except KeyboardInterrupt:
        if interactive:
            print()
        shell.status = 130
    finally:
        if rl is not None and hist is not None:
            try:
                os.makedirs(os.path.dirname(hist) or ".", exist_ok=True)
                rl.write_history_file(hist)
            except OSError:
                pass
    return shell.status
