"""ptmeta: tags on addresses, shown by the other commands."""

from __future__ import annotations

from multiheap.builders import plural
from multiheap.commands.base import address, command
from multiheap.errors import UsageError


@command("ptmeta", "attach tags to addresses; other commands show them")
class PtMeta:
    """Tag addresses for this session: ``ptmeta add ADDR TAG``, ``ptmeta del ADDR``,
    ``ptmeta list``, ``ptmeta clear``.  A tag on a user pointer also marks its chunk."""

    @staticmethod
    def args(p):
        p.add_argument("action", choices=("add", "del", "list", "clear"), nargs="?",
                       default="list")
        p.add_argument("addr", nargs="?", metavar="ADDR")
        p.add_argument("tag", nargs="*", metavar="TAG")

    @staticmethod
    def run(session, args, out):
        meta = session.meta
        if args.action == "add":
            if not args.addr or not args.tag:
                raise UsageError("usage: ptmeta add ADDR TAG")
            meta.add(address(session, args.addr), " ".join(args.tag))
        elif args.action == "del":
            if not args.addr:
                raise UsageError("usage: ptmeta del ADDR")
            addr = address(session, args.addr)
            if not meta.remove(addr):
                raise UsageError(f"no tag at {addr:#x}")
        elif args.action == "clear":
            meta.clear()
        out.begin_list("tags", title=plural(len(meta.tags), "tag"))
        for addr, tag in sorted(meta.tags.items()):
            out.item("{addr:#x}: {tag}", addr=addr, tag=tag)
        out.end_list()
