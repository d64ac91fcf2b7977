"""Runs inside gdb (sourced by benchmarks/run.py): time one measurement, print JSON.

MH_BENCH selects it: ``floor`` (one bulk read of the main heap plus a bare walk of its
chunk headers), or a multiheap command line run cold (fresh session).  Peak extra
memory is VmHWM minus VmRSS before the measurement.
"""

import json
import os
import struct
import time

import gdb  # type: ignore[import-not-found]


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def floor():
    inf = gdb.selected_inferior()
    base = int(gdb.parse_and_eval("mp_.sbrk_base"))
    top = int(gdb.parse_and_eval("main_arena.top"))
    end = top + (int(gdb.parse_and_eval("((size_t*)main_arena.top)[1]")) & ~7)
    buf = inf.read_memory(base, end - base).tobytes()
    unpack = struct.Struct("<Q").unpack_from
    addr, n, limit = 0, 0, len(buf)
    while addr < limit:
        addr += unpack(buf, addr + 8)[0] & ~7
        n += 1
    return n


what = os.environ["MH_BENCH"]
if what.startswith("repeated "):  # the command twice in this session: the first, then again
    what = what.removeprefix("repeated ")
    t0 = time.perf_counter()
    gdb.execute(what)
    first = time.perf_counter() - t0
    reset_peak()
    rss0 = status("VmRSS")
    t0 = time.perf_counter()
    gdb.execute(what)
    again = time.perf_counter() - t0
    print("MH_RESULT " + json.dumps({"what": what, "seconds": again, "first": first,
                                     "peak_extra": status("VmHWM") - rss0, "detail": None}))
    what = None
if what is not None:
    reset_peak()
    rss0 = status("VmRSS")
    t0 = time.perf_counter()
    if what == "floor":
        detail = floor()
    else:
        import multiheap  # noqa: F401  (loaded by the plugin)
        gdb.execute(what)
        detail = None
    elapsed = time.perf_counter() - t0
    peak = status("VmHWM") - rss0
    print("MH_RESULT " + json.dumps({"what": what, "seconds": elapsed, "peak_extra": peak,
                                     "detail": detail}))
