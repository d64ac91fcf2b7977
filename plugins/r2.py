"""radare2 frontend: each ``$ptXXX`` alias runs ``python -m multiheap.plugins.r2`` through
r2's ``#!pipe``, which talks back to the running r2 session.

``multiheap init r2`` prints the ``~/.radare2rc`` lines defining the aliases.  r2 appends
what the user typed after ``$ptXXX`` to the alias and ``#!pipe`` hands the whole line to
``/bin/sh -c``; so the alias (multiheap/hosts.py) is raw (``'``: r2 does not parse it a
second time) and ends its shell text with ``; exit #``: the user's text is a shell
comment, never expanded or run, and ``exit`` ends the shell before any line after a
newline is read.  This process reads that text back as data from its parent shell's
command line (:func:`alias_arguments`) and splits it with shell-like quoting of its own.

Every run is a fresh Python process, so this module imports as little as it can (about
0.15 s in all; see benchmarks/r2_measure.py); what must last for the r2 session
(ptconfig overrides, ptmeta tags) is kept inside that r2, in its sdb (``k``), hex-encoded
JSON (:func:`load_state`, :func:`save_state`).  Address arguments may be r2 expressions
(``rax``, ``sym.foo+8``, ``obj.nkeep``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

ALIAS_END = "; exit #"  # ends the alias's shell text (multiheap/hosts.py r2_aliases)
STATE_KEY = "multiheap.state"  # r2 sdb keys: STATE_KEY.n (parts), STATE_KEY.0, .1, ...
STATE_PART = 3000  # hex characters per sdb key: r2's #!pipe reads commands 8191 bytes at a time


class AliasError(Exception):
    """The alias's own text could not be read back."""


def alias_arguments(command: str) -> list[str]:
    """What the user typed after ``$COMMAND``, as data.

    r2 ran ``sh -c 'PYTHON -m multiheap.plugins.r2 --alias COMMAND; exit # TEXT'``: the
    shell saw TEXT only as a comment; it is read back from that shell's command line
    and split with shell-like quoting (an unbalanced quote is a usage error).
    """
    import shlex

    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            parts = f.read().split(b"\0")
    except OSError as e:
        raise AliasError(f"cannot read the alias's arguments ({e.strerror})") from None
    mark = f" --alias {command}{ALIAS_END}".encode()
    script = next((p for p in parts if mark in p), None)
    if script is None:
        raise AliasError("cannot read the alias's arguments (run through "
                         "the $aliases of `multiheap init r2`)")
    text = script.split(mark, 1)[1].decode("utf-8", "replace")
    try:
        return shlex.split(text)
    except ValueError as e:
        raise AliasError(f"{str(e).lower()} in: {text.strip()[:80]}") from None


def _color(target) -> bool:
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return False
    return target.cmd("e scr.color").strip() not in ("", "0", "false")


def _state(session) -> dict[str, Any]:
    ov = session.overrides
    return {"overrides": {"version": list(ov.version) if ov.version else None,
                          "main_arena": ov.main_arena, "mp": ov.mp,
                          "tcache_offset": ov.tcache_offset},
            "tags": [[a, t] for a, t in sorted(session.meta.tags.items())]}


def load_state(target, session) -> None:
    """Put back the overrides and tags this r2 session keeps (nothing when it keeps none)."""
    try:
        n = int(target.cmd(f"k {STATE_KEY}.n").strip() or "0")
        text = "".join(target.cmd(f"k {STATE_KEY}.{i}").strip() for i in range(n))
        doc = json.loads(bytes.fromhex(text)) if text else {}
    except ValueError:  # not ours, or damaged: start afresh rather than fail every command
        return
    ov = doc.get("overrides") or {}
    v = ov.get("version")
    session.overrides.version = (int(v[0]), int(v[1])) if v else None
    for key in ("main_arena", "mp", "tcache_offset"):
        setattr(session.overrides, key, ov.get(key))
    for addr, tag in doc.get("tags") or []:
        session.meta.add(int(addr), str(tag))


def save_state(target, state: dict[str, Any]) -> None:
    """Keep ``state`` in the r2 session's sdb: that r2 only, gone when it quits."""
    text = json.dumps(state, separators=(",", ":")).encode().hex()
    parts = [text[i:i + STATE_PART] for i in range(0, len(text), STATE_PART)]
    for i, part in enumerate(parts):
        target.cmd(f"k {STATE_KEY}.{i}={part}")
    target.cmd(f"k {STATE_KEY}.n={len(parts)}")


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] == "--alias" and len(argv) != 2:
        sys.stderr.write("usage: python -m multiheap.plugins.r2 COMMAND [ARGS] "
                         "(inside r2: #!pipe, or a $alias from `multiheap init r2`)\n")
        return 2
    if argv[0] == "--alias":
        try:
            argv = [argv[1], *alias_arguments(argv[1])]
        except AliasError as e:
            sys.stderr.write(f"{argv[1]}: {e}\n")
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
    session = Session(target, target.evaluate)
    try:
        color = _color(target)
        load_state(target, session)
        before = _state(session)
    except (MultiheapError, OSError):  # r2 gone: the command itself says so in one line
        color, before = False, None
    try:
        res = run_command(session, argv[0], argv[1:], color=color, sink=sys.stdout.write)
        if before is not None and _state(session) != before:
            save_state(target, _state(session))
    except KeyboardInterrupt:
        sys.stderr.write(f"{argv[0]}: interrupted\n")
        return 130
    except (MultiheapError, OSError) as e:
        sys.stderr.write(f"{argv[0]}: cannot keep the session's state: {e}\n")
        return 1
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
