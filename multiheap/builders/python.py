"""Python builder: the result as plain dicts and lists, for scripts."""

from __future__ import annotations

from typing import Any

from multiheap.builders.tree import TreeBuilder


class PythonBuilder(TreeBuilder):
    """Returns the same tree the JSON builder serialises."""

    def render(self) -> dict[str, Any]:
        return self.tree()
