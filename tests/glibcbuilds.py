"""The glibc builds of the test matrix: the system's and Debian's others, unpacked.

scripts/install/glibcs.sh unpacks bullseye, trixie and sid's libc6, libc6-dev and
libc6-dbg under MULTIHEAP_GLIBC_ROOT (default /opt/multiheap-glibc); the version of
each is read from its libc's banner, since sid moves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness import GlibcBuild

from multiheap.glibc import format_version, version_from_file

GLIBC_ROOT = Path(os.environ.get("MULTIHEAP_GLIBC_ROOT", "/opt/multiheap-glibc"))
SUITES = ("bullseye", "trixie", "sid")


@dataclass(frozen=True)
class Libc:
    """One libc.so.6 with the debug-file directory that holds its debug info."""

    name: str  # e.g. "2.31", "2.36-i386"
    version: tuple[int, int]
    ptr_size: int
    path: Path
    debug_dir: Path
    build: Optional[GlibcBuild]  # None for the system's own glibc


def other_builds() -> list[GlibcBuild]:
    """Debian's other glibcs; missing ones are an error (set-up installs them)."""
    out = []
    for suite in SUITES:
        root = GLIBC_ROOT / suite
        if not (root / "VERSION").exists():
            raise RuntimeError(f"glibc of {suite} missing in {GLIBC_ROOT}: run "
                               "`bash scripts/setup.sh --tests` (scripts/install/glibcs.sh)")
        b = GlibcBuild("?", root)
        v = version_from_file(str(b.libdir / "libc.so.6"))
        assert v is not None, f"no version banner in {b.libdir}/libc.so.6"
        out.append(GlibcBuild(format_version(v), root))
    return out


def all_libcs() -> list[Libc]:
    """Every libc we can run: the system's (x86_64, i386) and the other builds."""
    out = []
    for arch, sz, suffix in (("x86_64", 8, ""), ("i386", 4, "-i386")):
        path = Path(f"/lib/{arch}-linux-gnu/libc.so.6")
        v = version_from_file(str(path))
        assert v is not None, f"no version banner in {path}"
        out.append(Libc(format_version(v) + suffix, v, sz, path,
                        Path("/usr/lib/debug"), None))
    for b in other_builds():
        v = version_from_file(str(b.libdir / "libc.so.6"))
        assert v is not None
        out.append(Libc(b.version, v, 8, b.libdir / "libc.so.6", b.debug_dir, b))
    return out
