"""Output builders: a command describes its result; a builder renders it.

Commands call the :class:`Builder` API and never print.  The text builder renders for a
terminal, the JSON builder renders exactly one JSON document, and the Python builder
returns plain objects for scripts.  See docs/output.md for the stable field names.
"""

from __future__ import annotations

from multiheap.builders.base import Builder, Column, plural
from multiheap.builders.json import JsonBuilder
from multiheap.builders.python import PythonBuilder
from multiheap.builders.text import TextBuilder

__all__ = ["Builder", "Column", "JsonBuilder", "PythonBuilder", "TextBuilder", "plural"]
