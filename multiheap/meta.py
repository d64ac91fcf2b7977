"""ptmeta's store: tags people attach to addresses, shown by every command."""

from __future__ import annotations

from typing import Optional


class MetaStore:
    """Address -> tag, kept for the session."""

    def __init__(self) -> None:
        self.tags: dict[int, str] = {}

    def add(self, addr: int, tag: str) -> None:
        self.tags[addr] = tag

    def remove(self, addr: int) -> bool:
        return self.tags.pop(addr, None) is not None

    def clear(self) -> None:
        self.tags.clear()

    def lookup(self, addr: int) -> Optional[str]:
        return self.tags.get(addr)

    def tagger(self, ptr_size: int = 8):
        """A builder tagger, or None when there are no tags (keeps hot paths fast).

        A chunk address also finds the tag put on its user pointer.
        """
        if not self.tags:
            return None
        tags, hdr = self.tags, 2 * ptr_size
        return lambda addr: tags.get(addr) or tags.get(addr + hdr)
