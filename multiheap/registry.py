"""The plugin manager: built-in adapters plus any installed through entry points."""

from __future__ import annotations

import importlib
from functools import lru_cache

import pluggy

from multiheap import hookspecs
from multiheap.errors import MultiheapError

ENTRY_POINT_GROUP = "multiheap.adapters"
# Built-in adapter modules: each defines a ``multiheap_adapters`` hookimpl.  They are
# imported lazily by name so that importing the registry never imports a debugger.
BUILTIN = ("multiheap.adapters.image", "multiheap.adapters.registration")


@lru_cache(maxsize=None)
def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for mod in BUILTIN:
        pm.register(importlib.import_module(mod), name=mod)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def adapters() -> dict[str, hookspecs.AdapterInfo]:
    """Every known adapter by name."""
    out: dict[str, hookspecs.AdapterInfo] = {}
    for infos in plugin_manager().hook.multiheap_adapters():
        for info in infos:
            out.setdefault(info.name, info)
    return out


def adapter(name: str) -> hookspecs.AdapterInfo:
    known = adapters()
    if name not in known:
        raise MultiheapError(f"no adapter {name!r} (known: {', '.join(sorted(known))})")
    return known[name]
