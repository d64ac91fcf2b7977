"""A builder that assembles a plain Python tree (dicts and lists)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional

from multiheap.builders.base import Builder, Column, Tagger


class TreeBuilder(Builder):
    """Collects the command's result as nested dicts/lists; base of JSON and Python."""

    def __init__(self, command: str = "", tagger: Optional[Tagger] = None) -> None:
        super().__init__(tagger)
        self.root: dict[str, Any] = {"command": command} if command else {}
        self._stack: list[Any] = [self.root]
        self._notes: list[dict[str, Any]] = []

    def _put(self, name: str, value: Any) -> None:
        top = self._stack[-1]
        if isinstance(top, list):
            top.append(value)
        else:
            top[name] = value

    def begin(self, name: str = "", title: str = "") -> None:
        top = self._stack[-1]
        if not name and isinstance(top, dict):
            self._stack.append(top)  # an unnamed object in an object: a text grouping
            return
        obj: dict[str, Any] = {}
        self._put(name, obj)
        self._stack.append(obj)

    def end(self) -> None:
        self._stack.pop()

    def begin_list(self, name: str, title: str = "") -> None:
        lst: list[Any] = []
        self._put(name, lst)
        self._stack.append(lst)

    def end_list(self) -> None:
        self._stack.pop()

    def field(self, name: str, value: Any, fmt: str = "", label: str = "") -> None:
        self._put(name, value)
        tag = self.tag(value) if fmt == "#x" else None
        if tag is not None and isinstance(self._stack[-1], dict):
            self._stack[-1][name + "_tag"] = tag

    def item(self, template: str, **values: Any) -> None:
        obj = dict(values)
        tag = self.tag(values.get("addr"))
        if tag is not None:
            obj["tag"] = tag
        top = self._stack[-1]
        if isinstance(top, list):
            top.append(obj)
        else:
            top.update(obj)

    def table(self, name: str, columns: list[Column], rows: Iterable[tuple]) -> int:
        names = [c.name for c in columns]
        out = [dict(zip(names, r)) for r in rows]
        if self.tagger is not None and "addr" in names:
            for obj in out:
                tag = self.tag(obj["addr"])
                if tag is not None:
                    obj["tag"] = tag
        self._put(name, out)
        return len(out)

    def note(self, message: str, **data: Any) -> None:
        self._notes.append({"message": message, **data})

    def tree(self) -> dict[str, Any]:
        if self._notes:
            self.root["notes"] = self._notes
        return self.root
