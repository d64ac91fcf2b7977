"""Benchmark only: ``python -m multiheap.plugins.r2`` as r2's ``#!pipe`` runs it, plus a
measurement of the command (scale.py's r2 aliases run this file instead).

The frontend runs unchanged; around its run_command it records the seconds and the peak
RSS over the RSS just before the command (as scale.py does for the other hosts), and
at the end the process's whole peak (ru_maxrss: Python, imports and all).  One JSON
line per run is appended to the file $MH_R2_MEASURE.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rss import reset_peak, status  # noqa: E402


def main() -> int:
    import multiheap.commands as commands
    from multiheap.plugins import r2 as frontend

    real, box = commands.run_command, {}

    def measured(*args, **kwargs):
        reset_peak()
        rss0, t0 = status("VmRSS"), time.perf_counter()
        res = real(*args, **kwargs)
        box.update(seconds=time.perf_counter() - t0, peak_extra=status("VmHWM") - rss0,
                   rss_before=rss0)
        return res

    commands.run_command = measured
    try:
        return frontend.main()
    finally:
        box["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        with open(os.environ["MH_R2_MEASURE"], "a") as f:
            f.write(json.dumps(box) + "\n")


if __name__ == "__main__":
    sys.exit(main())
