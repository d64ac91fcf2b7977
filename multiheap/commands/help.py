"""pthelp: the command list."""

from __future__ import annotations

from multiheap.commands.base import COMMANDS, command


@command("pthelp", "this list; COMMAND -h shows a command's options")
class PtHelp:
    """List the multiheap commands."""

    @staticmethod
    def args(p):
        pass

    @staticmethod
    def run(session, args, out):
        out.begin_list("commands", title="multiheap commands (each takes -h and --json)")
        for name in sorted(COMMANDS):
            out.item("  {name:<10} {summary}", name=name, summary=COMMANDS[name].summary)
        out.end_list()
