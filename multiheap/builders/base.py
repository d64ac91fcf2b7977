"""The builder interface shared by every output format."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

Tagger = Callable[[int], Optional[str]]


def plural(n: int, noun: str, nouns: str = "") -> str:
    """``1 tag``, ``2 tags``: a count with its noun in the right number."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


@dataclass(frozen=True)
class Column:
    """A table column: its JSON name, its text header and a format spec for text."""

    name: str
    header: str = ""
    fmt: str = ""  # format spec for text, e.g. "#x"; JSON keeps the raw value
    width: int = 0

    @property
    def title(self) -> str:
        return self.header or self.name


class Builder:
    """Receives a command's result as a tree of objects, lists, fields and tables.

    Nesting: ``begin``/``end`` open an object (named in an object, anonymous in a list),
    ``begin_list``/``end_list`` a list.  ``item`` adds one small object with a text
    template.  ``text`` is prose for people only; ``note`` is a remark both formats keep
    (walk stops, warnings).  ``tagger`` maps an address to a ptmeta tag.
    """

    def __init__(self, tagger: Optional[Tagger] = None) -> None:
        self.tagger = tagger

    # structure -----------------------------------------------------------------
    def begin(self, name: str = "", title: str = "") -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError

    def begin_list(self, name: str, title: str = "") -> None:
        raise NotImplementedError

    def end_list(self) -> None:
        raise NotImplementedError

    # content -------------------------------------------------------------------
    def field(self, name: str, value: Any, fmt: str = "", label: str = "") -> None:
        raise NotImplementedError

    def fields(self, values: Mapping[str, Any], fmts: Optional[Mapping[str, str]] = None) -> None:
        """Several fields at once; ``fmts`` maps a name to its text format spec."""
        fmts = fmts or {}
        for k, v in values.items():
            self.field(k, v, fmts.get(k, ""))

    def item(self, template: str, **values: Any) -> None:
        """One object: text renders ``template.format(**values)``."""
        raise NotImplementedError

    def table(self, name: str, columns: list[Column], rows: Iterable[tuple]) -> int:
        """Rows of values in column order; returns how many rows there were."""
        raise NotImplementedError

    def structured(self) -> bool:
        """True when the output keeps raw values (JSON, Python), False for text."""
        return True

    def text(self, line: str) -> None:
        """Prose for people; not part of the JSON document."""

    def note(self, message: str, **data: Any) -> None:
        raise NotImplementedError

    def paint(self, role: str, text: str) -> str:
        """``text`` in the colour of ``role`` (a chunk state, a list kind, "addr",
        "sym"...) when the output is coloured; as it is otherwise."""
        return text

    def tag(self, addr: Any) -> Optional[str]:
        if self.tagger is None or not isinstance(addr, int):
            return None
        return self.tagger(addr)

    # result --------------------------------------------------------------------
    def render(self) -> Any:
        """Text: the string to write; JSON: the document string; Python: the object."""
        raise NotImplementedError
