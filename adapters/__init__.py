"""Debugger adapters: each implements :class:`multiheap.target.Target` for one API.

Installed as ``multiheap.adapters``.  Adapter modules import their debugger's module;
the engine never imports them.
"""
