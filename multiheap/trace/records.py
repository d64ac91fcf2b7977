"""What is traced: the allocator entry points, their arguments, and frames."""

from __future__ import annotations

from typing import NamedTuple, Optional


class Frame(NamedTuple):
    """One backtrace frame: the pc and the function's name (None when unknown)."""

    pc: int
    function: Optional[str]


# entry point -> the names of its integer arguments, in calling-convention order
OPS: dict[str, tuple[str, ...]] = {
    "malloc": ("size",),
    "free": ("ptr",),
    "calloc": ("nmemb", "size"),
    "realloc": ("ptr", "size"),
    "reallocarray": ("ptr", "nmemb", "size"),
    "memalign": ("align", "size"),
    "aligned_alloc": ("align", "size"),
    "posix_memalign": ("memptr", "align", "size"),
    "valloc": ("size",),
    "pvalloc": ("size",),
}

# the calls whose caller we also stop at on return (free returns nothing)
RETURNS = frozenset(op for op in OPS if op != "free")


def call_size(op: str, args: dict[str, int], page: int = 4096) -> int:
    """The bytes asked for (calloc and reallocarray: the product)."""
    size = args.get("size", 0)
    if "nmemb" in args:
        size = (args["nmemb"] * size) & ((1 << 64) - 1)
    if op == "pvalloc":
        size = (size + page - 1) & ~(page - 1) or page
    return size


def frames_json(frames: tuple[Frame, ...]) -> list[dict]:
    return [{"pc": f.pc, "function": f.function} for f in frames]


def where(frames: tuple[Frame, ...]) -> str:
    """A backtrace's first named frame, for one-line summaries."""
    for f in frames:
        if f.function:
            return f.function
    return f"{frames[0].pc:#x}" if frames else "?"
