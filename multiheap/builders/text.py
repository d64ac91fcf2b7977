"""Text builder: what a person reads in a terminal (ANSI colour when enabled)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any, Callable, Optional

from multiheap.builders.base import Builder, Column, Tagger

_BOLD, _YELLOW, _CYAN, _RESET = "\x1b[1m", "\x1b[33m", "\x1b[36m", "\x1b[0m"

# One colour per meaning, the same in every command: chunk states and the lists named
# after them, addresses, symbols, tags, problems; chunk0-3 alternate in ptvis.
PALETTE = {
    "addr": "\x1b[36m", "sym": "\x1b[35m", "tag": "\x1b[1;36m", "problem": "\x1b[1;31m",
    "dim": "\x1b[2m", "note": _YELLOW, "header": _BOLD,
    "inuse": "\x1b[32m", "free": "\x1b[94m", "unsorted": "\x1b[94m", "small": "\x1b[94m",
    "large": "\x1b[94m", "fast": "\x1b[93m", "tcache": "\x1b[95m", "top": "\x1b[96m",
    "mmapped": "\x1b[91m", "list": "\x1b[93m",
    "chunk0": "\x1b[32m", "chunk1": "\x1b[34m", "chunk2": "\x1b[33m", "chunk3": "\x1b[35m",
}
# Fields that hold pointers worth naming (<main_arena+0x60>, [heap]), in any command.
POINTER_FIELDS = frozenset({"fd", "bk", "fd_nextsize", "bk_nextsize", "top", "last_remainder",
                            "next", "next_free", "ar_ptr", "prev", "sbrk_base"})
ADDRESS_COLUMNS = frozenset({"addr", "chunk", "mem", "top", "start", "end"})
_PLACEHOLDER = re.compile(r"(?<!\{)\{(\w+)(:[^{}]*)?\}(?!\})")
_DUMP_ROW = re.compile(r"^\s*(0x[0-9a-f]+): ")
_STREAM_LINES = 1 << 16  # lines held before a sink gets them
Symbolizer = Callable[[int], Optional[str]]


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
                 sink: Optional[Callable[[str], None]] = None,
                 symbolizer: Optional[Symbolizer] = None) -> None:
        super().__init__(tagger)
        self.color = color
        self.sink = sink
        self.symbolizer = symbolizer
        self._lines: list[str] = []
        self._indent = 0
        self._open: list[bool] = []
        self._said: set[tuple] = set()  # (addr, reason) of the stops notes told already

    def _c(self, code: str, s: str) -> str:
        return f"{code}{s}{_RESET}" if self.color else s

    def paint(self, role: str, text: str) -> str:
        code = PALETTE.get(role) if self.color else None
        return f"{code}{text}{_RESET}" if code else text

    def symbol(self, value: Any) -> Optional[str]:
        """What a pointer value points at (``<main_arena+0x60>``), when known."""
        if self.symbolizer is None or not isinstance(value, int) or isinstance(value, bool):
            return None
        return self.symbolizer(value)

    def _emit(self, line: str) -> None:
        self._lines.append("  " * self._indent + line)
        if len(self._lines) >= _STREAM_LINES and self.sink is not None:
            self._flush()  # a long answer (ptfree of millions) goes out as it is made

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
        if isinstance(value, dict):
            self._object_field(label or name, value)
            return
        s = fmt_value(value, fmt)
        if fmt == "#x" and isinstance(value, int):
            s = self.paint("addr", s)
            if name in POINTER_FIELDS:
                sym = self.symbol(value)
                if sym:
                    s += " " + self.paint("sym", sym)
        elif name in ("state", "kind") and isinstance(value, str):
            s = self.paint(value, s)
        tag = self.tag(value) if fmt == "#x" else None
        if tag:
            s += " " + self._c(_CYAN, f"[{tag}]")
        self._emit(f"{label or name}: {s}")

    def _object_field(self, label: str, value: dict) -> None:
        """A small object as one line: a walk stop reads ``stopped at 0x...: why`` (and
        not at all when a note said it already); others ``key=value`` with hex addresses."""
        if isinstance(value.get("addr"), int) and "reason" in value:
            if (value["addr"], value["reason"]) in self._said:
                return
            at = self.paint("addr", format(value["addr"], "#x"))
            self._emit(f"{label} at {at}: {value['reason']}")
            return
        parts = [f"{k}={fmt_value(v, '#x' if k in ADDRESS_COLUMNS else '')}"
                 for k, v in value.items()]
        self._emit(f"{label}: " + ", ".join(parts))

    def item(self, template: str, **values: Any) -> None:
        head, nl, rest = template.partition("\n")
        if self.color or self.symbolizer is not None:
            head = _PLACEHOLDER.sub(lambda m: self._dress(m, values), head)
        s = (head + nl + rest).format(**values)
        tag = self.tag(values.get("addr"))
        lines = s.split("\n")
        if tag and tag != values.get("tag"):  # an item that shows its own tag (ptmeta)
            lines[0] += " " + self._c(_CYAN, f"[{tag}]")
        if self.symbolizer is not None and isinstance(values.get("hexdump"), str):
            lines = self._dump_symbols(lines, bytes.fromhex(values["hexdump"]),
                                       values.get("mem"))
        for line in lines:
            self._emit(line)

    def _dress(self, m: re.Match, values: dict) -> str:
        """One ``{name:spec}`` of an item's template, coloured and annotated."""
        key, ph = m.group(1), m.group(0)
        value = values.get(key)
        if key == "state" and isinstance(value, str):
            code = PALETTE.get(value) if self.color else None
            ph = f"{code}{ph}{_RESET}" if code else ph
        elif key in ("addr", "mem") or key in POINTER_FIELDS:
            ph = self.paint("addr", ph)
        if key in POINTER_FIELDS and isinstance(value, int):
            sym = self.symbol(value)
            if sym:
                ph += " " + self.paint("sym", sym).replace("{", "{{").replace("}", "}}")
        return ph

    def _dump_symbols(self, lines: list[str], data: bytes, mem: Any) -> list[str]:
        """Hexdump rows (``0xADDR: bytes  ascii``) get the names of the words they hold."""
        if not isinstance(mem, int):
            return lines
        width = getattr(self.symbolizer, "pointer_size", 8)
        out = []
        for line in lines:
            m = _DUMP_ROW.match(line)
            if m:
                at = int(m.group(1), 16) - mem
                row = data[at:at + 16] if 0 <= at < len(data) else b""
                names = [self.symbol(int.from_bytes(row[i:i + width], "little"))
                         for i in range(0, len(row) - width + 1, width)]
                names = [n for n in names if n]
                if names:
                    line += "  " + " ".join(self.paint("sym", n) for n in names)
            out.append(line)
        return out

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
        fast = all(c.fmt in ("", "#x", "x", "d") for c in columns) and not has_addr \
            and not self.color
        mod = cfmt.__mod__
        if self.color:  # each cell formatted alone, then painted (padding stays right)
            cells = [("{:>%s%d%s}" % ("#" if c.fmt.startswith("#") else "", w,
                                      c.fmt.lstrip("#")) if c.fmt else
                      "{}" if i == len(columns) - 1 else "{:<%d}" % w).format
                     for i, (c, w) in enumerate(zip(columns, widths))]
            roles = [("addr" if c.fmt == "#x" and c.name in ADDRESS_COLUMNS else
                      "state" if c.name in ("state", "kind") else "") for c in columns]

            def form(*r: Any) -> str:  # noqa: F811
                parts = []
                for f, role, v in zip(cells, roles, r):
                    cell = f(v)
                    if role == "state":
                        code = PALETTE.get(str(v).strip())
                        cell = f"{code}{cell}{_RESET}" if code else cell
                    elif role:
                        cell = self.paint(role, cell)
                    parts.append(cell)
                return pad + "  ".join(parts)

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
        if "reason" in data:
            self._said.add((data.get("addr"), data["reason"]))
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
