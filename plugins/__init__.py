"""Host frontends: each turns the shared command set into native debugger commands.

Installed as ``multiheap.plugins``.
"""
