"""Text builder: what a person reads in a terminal (ANSI colour when enabled)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any, Callable, Optional

from multiheap.builders.base import Builder, Column, Tagger

_BOLD, _YELLOW, _CYAN, _RESET = "\x1b[1m", "\x1b[33m", "\x1b[36m", "\x1b[0m"


def fmt_value(value: Any, spec: str = "") -> str:
    """Format one value for text: ``spec`` is a format spec, lists are joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_value(v, spec) for v in value) + "]"
    if spec and isinstance(value, int):
        return format(value, spec)
    return str(value)


class TextBuilder(Builder):
    """Accumulates lines; ``render`` returns the whole text at once (one host write)."""

    def __init__(self, tagger: Optional[Tagger] = None, color: bool = False,
                 sink: Optional[Callable[[str], None]] = None) -> None:
        super().__init__(tagger)
        self.color = color
        self.sink = sink
        self._lines: list[str] = []
        self._indent = 0
        self._open: list[bool] = []

    def _c(self, code: str, s: str) -> str:
        return f"{code}{s}{_RESET}" if self.color else s

    def _emit(self, line: str) -> None:
        self._lines.append("  " * self._indent + line)

    def begin(self, name: str = "", title: str = "") -> None:
        self._open.append(bool(title))
        if title:
            self._emit(self._c(_BOLD, title))
            self._indent += 1

    def end(self) -> None:
        if self._open.pop():
            self._indent -= 1

    def begin_list(self, name: str, title: str = "") -> None:
        self.begin(name, title)

    def end_list(self) -> None:
        self.end()

    def field(self, name: str, value: Any, fmt: str = "", label: str = "") -> None:
        s = fmt_value(value, fmt)
        tag = self.tag(value) if fmt == "#x" else None
        if tag:
            s += " " + self._c(_CYAN, f"[{tag}]")
        self._emit(f"{label or name}: {s}")

    def item(self, template: str, **values: Any) -> None:
        s = template.format(**values)
        tag = self.tag(values.get("addr"))
        if tag:
            s += " " + self._c(_CYAN, f"[{tag}]")
        for line in s.split("\n"):
            self._emit(line)

    def table(self, name: str, columns: list[Column], rows: Iterable[tuple]) -> int:
        pad = "  " * self._indent
        widths = [max(c.width, len(c.title)) for c in columns]
        parts = []  # str.format specs (the general path)
        cparts = []  # the same as %-specs: about twice as fast per row
        for i, (c, w) in enumerate(zip(columns, widths)):
            last = i == len(columns) - 1
            if c.fmt:  # "#x", "x", "d": right-aligned numbers
                alt = "#" if c.fmt.startswith("#") else ""
                parts.append("{:>%s%d%s}" % (alt, w, c.fmt.lstrip("#")))
                cparts.append("%%%s%d%s" % (alt, w, c.fmt.lstrip("#")))
            else:
                parts.append("{}" if last else "{:<%d}" % w)
                cparts.append("%s" if last else "%%-%ds" % w)
        fmt = pad + "  ".join(parts)
        cfmt = pad + "  ".join(cparts)
        head = pad + "  ".join(
            c.title.rjust(w) if c.fmt else c.title.ljust(w) for c, w in zip(columns, widths)
        )
        self._lines.append(self._c(_BOLD, head.rstrip()))
        has_addr = self.tagger is not None and columns and columns[0].name == "addr"
        form = fmt.format
        fast = all(c.fmt in ("", "#x", "x", "d") for c in columns) and not has_addr
        mod = cfmt.__mod__

        def one(r: tuple) -> str:
            try:
                line = form(*r)
            except (TypeError, ValueError):  # None in a numeric column
                try:
                    line = form(*("-" if v is None else v for v in r))
                except (TypeError, ValueError):
                    line = str(r)
            if has_addr:
                tag = self.tag(r[0])
                if tag:
                    line += " " + self._c(_CYAN, f"[{tag}]")
            return line

        n = 0
        it = iter(rows)
        while True:  # 64 Ki rows at a time, formatted without a Python loop per row
            batch = list(itertools.islice(it, 65536))
            if not batch:
                return n
            n += len(batch)
            try:
                lines = list(map(mod, batch)) if fast else list(map(one, batch))
            except (TypeError, ValueError):
                lines = list(map(one, batch))
            self._lines.extend(lines)
            if self.sink is not None:
                self._flush()

    def structured(self) -> bool:
        return False

    def text(self, line: str) -> None:
        for part in line.split("\n"):
            self._emit(part)

    def note(self, message: str, **data: Any) -> None:
        self._emit(self._c(_YELLOW, "note: " + message))

    def _flush(self) -> None:
        if self._lines and self.sink is not None:
            self.sink("\n".join(self._lines) + "\n")
            self._lines = []

    def render(self) -> str:
        """The text; with a sink, whatever was not streamed yet goes there and "" returns."""
        if self.sink is not None:
            self._flush()
            return ""
        return "\n".join(self._lines) + ("\n" if self._lines else "")
