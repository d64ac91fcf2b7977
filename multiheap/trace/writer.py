"""Streaming JSON Lines: each record becomes one line, written whole.

Lines are kept in a small buffer and written with one ``os.write`` of complete lines,
so a trace file cut short (the debugger killed) still holds only whole JSON lines, and
memory stays flat however long the trace runs.
"""

from __future__ import annotations

import json
import os
from typing import Any

_dumps = json.JSONEncoder(separators=(",", ":")).encode


class TraceWriter:
    """Appends records to ``path`` (created or truncated)."""

    def __init__(self, path: str, limit: int = 1 << 16) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._buf: list[str] = []
        self._size = 0
        self._limit = limit
        self.lines = 0

    def write(self, record: dict[str, Any]) -> None:
        line = _dumps(record) + "\n"
        self._buf.append(line)
        self._size += len(line)
        self.lines += 1
        if self._size >= self._limit:
            self.flush()

    def flush(self) -> None:
        if self._buf and self._fd >= 0:
            data = "".join(self._buf).encode()
            self._buf.clear()
            self._size = 0
            while data:
                n = os.write(self._fd, data)
                data = data[n:]

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0
