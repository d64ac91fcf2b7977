"""Which glibc the target runs: the version banner in libc, found without symbols."""

from __future__ import annotations

import os
import re
from typing import Optional

from multiheap.memory import region_contents
from multiheap.target import Module, Target

Version = tuple[int, int]
_BANNER = re.compile(rb"release version (\d+)\.(\d+)")
_LIBC_NAME = re.compile(r"(^|/)libc(\.so\.6|-2\.\d+\.so|\.so)$")
SUPPORTED = ((2, 23), (2, 43))


def parse_version(text: str) -> Version:
    """``"2.36"`` -> (2, 36)."""
    m = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.\d+)?\s*", text)
    if not m:
        raise ValueError(f"not a glibc version: {text!r} (expected e.g. 2.36)")
    return int(m.group(1)), int(m.group(2))


def format_version(v: Version) -> str:
    return f"{v[0]}.{v[1]}"


def find_libc(target: Target) -> Optional[Module]:
    """The libc module, or None (static binary, musl, no process)."""
    for m in target.modules():
        if _LIBC_NAME.search(m.path):
            return m
    return None


def version_from_file(path: str) -> Optional[Version]:
    """Read the banner from libc's file on disk (its read-only data)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    m = _BANNER.search(data)
    return (int(m.group(1)), int(m.group(2))) if m else None


def version_from_memory(target: Target, module: Optional[Module]) -> Optional[Version]:
    """Search libc's mapped, readable regions for the banner."""
    regions = [r for r in target.regions() if "r" in r.perms]
    if module is not None:
        base = os.path.basename(module.path)
        regions = [r for r in regions if r.name and os.path.basename(r.name) == base]
    for _r, data in region_contents(target, regions, 64 << 20):
        m = _BANNER.search(data)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None
