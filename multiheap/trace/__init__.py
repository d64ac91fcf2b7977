"""Tracing malloc and free: the host-agnostic part (no debugger import here).

A host (gdb, lldb, gdb/MI through the CLI) stops the program at each allocator entry
point and at the caller's return address, and hands what it read to a
:class:`~multiheap.trace.control.TraceControl`.  The :class:`~multiheap.trace.state.Tracker`
keeps the allocation state machine (live and freed chunks), which detects errors at
the call and leaks at exit; :class:`~multiheap.trace.writer.TraceWriter` streams one
JSON object per line to the trace file; :mod:`~multiheap.trace.query` reads it back.
"""

from multiheap.trace.control import TraceControl, TraceOptions
from multiheap.trace.records import OPS, Frame
from multiheap.trace.state import Tracker
from multiheap.trace.writer import TraceWriter

__all__ = ["OPS", "Frame", "TraceControl", "TraceOptions", "Tracker", "TraceWriter"]
