"""multiheap.debugfile: a module's build-id from its file, else from its memory image."""

from __future__ import annotations

from pathlib import Path

from multiheap.debugfile import build_id
from multiheap.elffile import file_build_id
from multiheap.errors import TargetMemoryError
from multiheap.target import Module, Region

LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6").resolve()


class _ImageTarget:
    """A target whose only mapping holds the first 64 KiB of a file at ``base``."""

    def __init__(self, image: bytes, base: int) -> None:
        self.image, self.base = image, base

    def regions(self) -> list[Region]:
        return [Region(self.base, self.base + len(self.image), "r--p", "")]

    def read(self, addr: int, size: int) -> bytes:
        off = addr - self.base
        if off < 0 or off + size > len(self.image):
            raise TargetMemoryError(addr, size, "unmapped")
        return self.image[off:off + size]


def test_a_truncated_file_falls_back_to_memory(tmp_path):
    want = file_build_id(str(LIBC))
    assert want
    image = LIBC.read_bytes()[:0x10000]
    stub = tmp_path / "libc.so.6"
    stub.write_bytes(image[:64])  # the ELF header only: its program headers are cut off
    target = _ImageTarget(image, 0x7F0000000000)
    assert build_id(target, Module(str(stub), target.base)) == want  # type: ignore[arg-type]
    missing = Module(str(tmp_path / "gone.so"), target.base)
    assert build_id(target, missing) == want  # type: ignore[arg-type]
