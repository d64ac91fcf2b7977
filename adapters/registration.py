"""Registers the built-in debugger adapters without importing any debugger module."""

from __future__ import annotations

from multiheap.hookspecs import AdapterInfo, hookimpl


def _gdb(**_options):
    from multiheap.adapters.gdb import GdbTarget

    return GdbTarget()


def _gdb_mi(**options):
    from multiheap.adapters.gdbmi_open import open_target

    return open_target(**options)


def _lldb(**options):
    from multiheap.adapters.lldb_open import open_target

    return open_target(**options)


def _r2(**options):
    from multiheap.adapters.r2_spawn import open_target

    return open_target(**options)


@hookimpl
def multiheap_adapters() -> list[AdapterInfo]:
    return [
        AdapterInfo("gdb", "gdb's Python API (inside gdb)", _gdb, host="gdb"),
        AdapterInfo("gdb-mi", "a gdb subprocess driven through gdb/MI", _gdb_mi),
        AdapterInfo("r2", "a radare2 subprocess driven through r2pipe", _r2),
        AdapterInfo("lldb", "lldb's SB API (an SBDebugger of our own, or inside lldb)", _lldb),
    ]
