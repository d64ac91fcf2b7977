"""JSON builder: exactly one JSON document, stable field names.

Without a sink the result tree is built and rendered at once.  With a sink (a host's
write function) the document is written as the command goes: a table of ten million
chunks is never held whole, its rows go out 64 Ki at a time.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from typing import Any, Callable, Optional

from multiheap.builders.base import Column, Tagger
from multiheap.builders.tree import TreeBuilder

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_FLUSH = 1 << 20  # characters buffered before they go to the sink


class JsonBuilder(TreeBuilder):
    """Renders the result tree as one JSON document (addresses are plain integers)."""

    def __init__(self, command: str = "", tagger: Optional[Tagger] = None,
                 sink: Optional[Callable[[str], None]] = None) -> None:
        super().__init__(command, tagger)
        self.sink = sink
        self._parts: list[str] = []
        self._size = 0
        # open containers: [is_list, has_items, is_grouping]
        self._open: list[list[bool]] = [[False, bool(command), False]]
        if sink is not None:
            self._write("{" + (f'"command":{_dumps(command)}' if command else ""))

    # the streamed document -------------------------------------------------------
    def _write(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= _FLUSH:
            self._flush()

    def _flush(self) -> None:
        if self._parts and self.sink is not None:
            self.sink("".join(self._parts))
            self._parts, self._size = [], 0

    def _frame(self) -> list[bool]:
        for f in reversed(self._open):
            if not f[2]:
                return f
        return self._open[0]

    def _key(self, name: str) -> None:
        """A comma if needed, then ``"name":`` in an object (nothing in a list)."""
        f = self._frame()
        text = "," if f[1] else ""
        f[1] = True
        self._write(text if f[0] else text + _dumps(name) + ":")

    def begin(self, name: str = "", title: str = "") -> None:
        if self.sink is None:
            return super().begin(name, title)
        if not name and not self._frame()[0]:
            self._open.append([False, False, True])  # a text grouping: the same object
            return
        self._key(name)
        self._write("{")
        self._open.append([False, False, False])

    def end(self) -> None:
        if self.sink is None:
            return super().end()
        if not self._open.pop()[2]:
            self._write("}")

    def begin_list(self, name: str, title: str = "") -> None:
        if self.sink is None:
            return super().begin_list(name, title)
        self._key(name)
        self._write("[")
        self._open.append([True, False, False])

    def end_list(self) -> None:
        if self.sink is None:
            return super().end_list()
        self._open.pop()
        self._write("]")

    def field(self, name: str, value: Any, fmt: str = "", label: str = "") -> None:
        if self.sink is None:
            return super().field(name, value, fmt, label)
        self._key(name)
        self._write(_dumps(value))
        tag = self.tag(value) if fmt == "#x" else None
        if tag is not None and not self._frame()[0]:
            self._key(name + "_tag")
            self._write(_dumps(tag))

    def item(self, template: str, **values: Any) -> None:
        if self.sink is None:
            return super().item(template, **values)
        obj = dict(values)
        tag = self.tag(values.get("addr"))
        if tag is not None:
            obj["tag"] = tag
        if self._frame()[0]:
            self._key("")
            self._write(_dumps(obj))
        else:
            for k, v in obj.items():
                self._key(k)
                self._write(_dumps(v))

    def table(self, name: str, columns: list[Column], rows: Iterable[tuple]) -> int:
        if self.sink is None:
            return super().table(name, columns, rows)
        names = [c.name for c in columns]
        tagged = self.tagger is not None and "addr" in names
        self._key(name)
        self._write("[")
        n = 0
        it = iter(rows)
        while True:
            batch = [dict(zip(names, r)) for r in itertools.islice(it, 65536)]
            if not batch:
                break
            if tagged:
                for obj in batch:
                    tag = self.tag(obj["addr"])
                    if tag is not None:
                        obj["tag"] = tag
            self._write(("," if n else "") + _dumps(batch)[1:-1])
            n += len(batch)
            self._flush()
        self._write("]")
        return n

    def render(self) -> str:
        if self.sink is None:
            return _dumps(self.tree()) + "\n"
        if self._notes:
            self._key("notes")
            self._write(_dumps(self._notes))
        self._write("}\n")
        self._flush()
        return ""
