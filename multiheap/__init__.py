"""multiheap: one glibc ptmalloc engine for gdb, lldb, radare2 and the command line."""

__version__ = "0.1.0"
