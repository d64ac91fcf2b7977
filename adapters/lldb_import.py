"""lldb's Python module, found outside lldb too (lldb-16 preferred): ``lldb`` here."""

from __future__ import annotations

import glob
import os
import subprocess
import sys


def import_lldb():
    """Import lldb's Python module, finding it outside lldb too (lldb-16 preferred)."""
    try:
        import lldb  # type: ignore[import-not-found]

        return lldb
    except ImportError:
        pass
    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    cands = [os.environ.get("MULTIHEAP_LLDB_PYTHONPATH", "")]
    cands += sorted(glob.glob(f"/usr/lib/llvm-*/lib/{ver}/site-packages"),
                    key=lambda p: -int(p.split("llvm-")[1].split("/")[0]))
    for tool in ("lldb-16", "lldb"):
        try:
            out = subprocess.run([tool, "-P"], capture_output=True, text=True, timeout=10)
            cands.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    for path in cands:
        if path and os.path.isfile(os.path.join(path, "lldb", "__init__.py")):
            sys.path.insert(0, path)
            try:
                import lldb  # type: ignore[import-not-found]

                return lldb
            except ImportError:
                sys.path.remove(path)
    raise ImportError("lldb's Python module not found: install lldb-16 and python3-lldb-16 "
                      "(bash scripts/install/lldb.sh)")


lldb = import_lldb()
