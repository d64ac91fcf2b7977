"""glibc's own abort messages (malloc.c's malloc_printerr strings) per version range.

Read from glibc's sources, tags 2.23 to 2.42 and the 2.43 development tree: each
entry is the first version that has the check and the message it prints.
"""

from __future__ import annotations

from typing import Optional

Version = tuple[int, int]

# key -> [(since, until (exclusive), message)]
MESSAGES: dict[str, list[tuple[Version, Version, str]]] = {
    "tcache_double_free": [((2, 29), (99, 0), "free(): double free detected in tcache 2")],
    "tcache_unaligned": [((2, 32), (99, 0), "malloc(): unaligned tcache chunk detected")],
    "fast_unaligned": [((2, 32), (2, 43), "malloc(): unaligned fastbin chunk detected 2")],
    "fast_size": [((2, 23), (2, 43), "malloc(): memory corruption (fast)")],
    "fasttop": [((2, 23), (2, 43), "double free or corruption (fasttop)")],
    "unsorted_size": [((2, 23), (2, 29), "malloc(): memory corruption"),
                      ((2, 29), (99, 0), "malloc(): invalid size (unsorted)")],
    "unsorted_next_size": [((2, 29), (99, 0), "malloc(): invalid next size (unsorted)")],
    "unsorted_prev_size": [((2, 29), (99, 0),
                            "malloc(): mismatching next->prev_size (unsorted)")],
    "unsorted_links": [((2, 29), (99, 0), "malloc(): unsorted double linked list corrupted")],
    "unsorted_prev_inuse": [((2, 29), (99, 0),
                             "malloc(): invalid next->prev_inuse (unsorted)")],
    "small_links": [((2, 23), (99, 0), "malloc(): smallbin double linked list corrupted")],
    "unlink": [((2, 23), (99, 0), "corrupted double-linked list")],
    "unlink_nextsize": [((2, 23), (99, 0), "corrupted double-linked list (not small)")],
    "size_vs_prev": [((2, 26), (99, 0), "corrupted size vs. prev_size")],
    "consolidating": [((2, 29), (99, 0), "corrupted size vs. prev_size while consolidating")],
    "top_size": [((2, 29), (99, 0), "malloc(): corrupted top size")],
    "free_invalid_pointer": [((2, 23), (99, 0), "free(): invalid pointer")],
    "free_invalid_size": [((2, 23), (99, 0), "free(): invalid size")],
    "free_top": [((2, 23), (99, 0), "double free or corruption (top)")],
    "free_out": [((2, 23), (99, 0), "double free or corruption (out)")],
    "free_prev": [((2, 23), (99, 0), "double free or corruption (!prev)")],
    "free_next_size": [((2, 23), (99, 0), "free(): invalid next size (normal)")],
    "free_next_size_fast": [((2, 23), (2, 43), "free(): invalid next size (fast)")],
    "munmap": [((2, 23), (99, 0), "munmap_chunk(): invalid pointer")],
}


def message(version: Version, key: str) -> Optional[str]:
    """glibc's message for check ``key`` in ``version``, or None if it has no such check."""
    for since, until, text in MESSAGES.get(key, []):
        if since <= version < until:
            return text
    return None


def glibc(version: Version, key: str, operation: str) -> Optional[dict]:
    """The ``glibc`` field of a finding: {message, operation}, or None."""
    text = message(version, key)
    return {"message": text, "operation": operation} if text else None
