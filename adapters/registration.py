"""Registers the built-in debugger adapters without importing any debugger module."""

from __future__ import annotations

from multiheap.hookspecs import AdapterInfo, hookimpl


def _gdb(**_options):
    from multiheap.adapters.gdb import GdbTarget

    return GdbTarget()


@hookimpl
def multiheap_adapters() -> list[AdapterInfo]:
    return [
        AdapterInfo("gdb", "gdb's Python API (inside gdb)", _gdb, host="gdb"),
    ]
