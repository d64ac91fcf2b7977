"""JSON builder: exactly one JSON document, stable field names."""

from __future__ import annotations

import json

from multiheap.builders.tree import TreeBuilder


class JsonBuilder(TreeBuilder):
    """Renders the result tree as one JSON document (addresses are plain integers)."""

    def render(self) -> str:
        return json.dumps(self.tree(), indent=None, separators=(",", ":")) + "\n"
