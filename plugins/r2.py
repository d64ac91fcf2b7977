"""radare2 frontend: each ``$ptXXX`` alias runs ``python -m multiheap.plugins.r2 ptXXX ARGS``
through r2's ``#!pipe``, which talks back to the running r2 session.

``multiheap init r2`` prints the ``~/.radare2rc`` lines defining the aliases.  Every
run is a fresh Python process, so this module imports as little as it can (about
0.15 s in all; see benchmarks/r2_measure.py).  Address arguments may be r2
expressions (``rax``, ``sym.foo+8``).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Optional


def _evaluate(target, expr: str) -> int:
    try:
        return int(expr, 0)
    except ValueError:
        pass
    if any(c in expr for c in ";|`~@>\n"):
        raise ValueError(f"not an address expression: {expr!r}")
    # r2 prints errors for unknown names on its own stderr (and `2>` redirection loses
    # the answer), so every name is checked first: a register or an existing flag
    regs: Optional[set[str]] = None
    for name in re.findall(r"(?<![\w$])[A-Za-z_][\w.]*", expr):  # (never 0x.. digits)
        if regs is None:
            regs = set(target.cmd("drl").split())
        if name not in regs and target.cmd(f"fd {name}").strip() != name:
            raise ValueError(f"r2 knows no register or flag {name!r}")
    answer = target.cmd(f"?v {expr}").strip()
    try:
        return int(answer, 16)
    except ValueError:
        raise ValueError(f"r2 cannot evaluate {expr!r}") from None


def _color(target) -> bool:
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return False
    return target.cmd("e scr.color").strip() not in ("", "0", "false")


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write("usage: python -m multiheap.plugins.r2 COMMAND [ARGS] "
                         "(inside r2: #!pipe, or a $alias from `multiheap init r2`)\n")
        return 2
    from multiheap.adapters.r2 import PipeLink, R2Target
    from multiheap.commands import run_command
    from multiheap.errors import MultiheapError
    from multiheap.session import Session

    try:
        target = R2Target(PipeLink())
    except MultiheapError as e:
        sys.stderr.write(f"multiheap: {e}\n")
        return 2
    session = Session(target, lambda expr: _evaluate(target, expr))
    try:
        color = _color(target)
    except (MultiheapError, OSError):  # r2 gone: the command itself says so in one line
        color = False
    try:
        res = run_command(session, argv[0], argv[1:], color=color, sink=sys.stdout.write)
    except KeyboardInterrupt:
        sys.stderr.write(f"{argv[0]}: interrupted\n")
        return 130
    finally:
        target.close()
    if res.output:
        sys.stdout.write(res.output if isinstance(res.output, str) else str(res.output))
        if isinstance(res.output, str) and not res.output.endswith("\n"):
            sys.stdout.write("\n")
    sys.stdout.flush()
    if res.error:
        sys.stderr.write(res.error + "\n")
        return res.status or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
