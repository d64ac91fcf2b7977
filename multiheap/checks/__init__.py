"""Heap checks: glibc's own rules on the structures at rest, and the cross-checks glibc
cannot make.  ``run_checks(heap, arena=None)`` returns a list of :class:`Finding`;
a healthy heap gives an empty list.
"""

from __future__ import annotations

from multiheap.checks.engine import Finding, run_checks

__all__ = ["Finding", "run_checks"]
