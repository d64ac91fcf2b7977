"""A pure-Python memory image: a Target for the engine's unit tests and for scripts."""

from __future__ import annotations

import bisect
from typing import Optional

from multiheap.errors import TargetMemoryError
from multiheap.hookspecs import AdapterInfo, hookimpl
from multiheap.target import Module, Region, Thread, TypeLayout


class ImageTarget:
    """Memory given as {address: bytes} segments, symbols and threads as dicts."""

    name = "image"

    def __init__(self, segments: dict[int, bytes], *, pointer_size: int = 8,
                 arch: str = "x86_64", symbols: Optional[dict[str, int]] = None,
                 threads: Optional[dict[int, Optional[int]]] = None,
                 tls: Optional[dict[tuple[str, int], int]] = None,
                 modules: Optional[list[Module]] = None,
                 layouts: Optional[dict[str, TypeLayout]] = None,
                 region_names: Optional[dict[int, str]] = None) -> None:
        self._segs = sorted((a, bytes(b)) for a, b in segments.items())
        self._starts = [a for a, _ in self._segs]
        self._ptr = pointer_size
        self._arch = arch
        self._symbols = symbols or {}
        self._threads = threads if threads is not None else {1: None}
        self._tls = tls or {}
        self._modules = modules or []
        self._layouts = layouts or {}
        self._names = region_names or {}
        self.reads = 0

    pointer_size = property(lambda self: self._ptr)
    endianness = property(lambda self: "little")
    arch = property(lambda self: self._arch)
    state = property(lambda self: "core")
    pid = property(lambda self: None)

    def read(self, addr: int, size: int) -> bytes:
        self.reads += 1
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            start, data = self._segs[i]
            if addr + size <= start + len(data):
                return data[addr - start:addr - start + size]
        raise TargetMemoryError(addr, size)

    def regions(self) -> list[Region]:
        return [Region(a, a + len(d), "rw-", self._names.get(a, "")) for a, d in self._segs]

    def modules(self) -> list[Module]:
        return list(self._modules)

    def symbol(self, name: str, module: Optional[str] = None) -> Optional[int]:
        return self._symbols.get(name)

    def type_layout(self, name: str) -> Optional[TypeLayout]:
        return self._layouts.get(name)

    def threads(self) -> list[Thread]:
        return [Thread(n, 1000 + n) for n in sorted(self._threads)]

    def thread_pointer(self, thread: Thread) -> Optional[int]:
        return self._threads.get(thread.num)

    def tls_symbol(self, name: str, thread: Thread) -> Optional[int]:
        return self._tls.get((name, thread.num))

    def generation(self) -> int:
        return 0

    def evaluate(self, text: str) -> int:
        """Numbers only (0x..., decimal): an image has no debug info to look names up in."""
        try:
            return int(text, 0)
        except ValueError:
            raise ValueError(f"not an address: {text!r}") from None

    def close(self) -> None:
        """Nothing to release."""


@hookimpl
def multiheap_adapters() -> list[AdapterInfo]:
    return [AdapterInfo("image", "a memory image in Python (tests, scripts)", ImageTarget,
                        host="python")]
