"""Runs inside gdb (sourced by benchmarks/first_answer.py): each command of MH_CMDS
once on the fresh stop, then twice again; prints one MH_RESULT JSON line."""

import json
import os
import time

import gdb  # type: ignore[import-not-found]

out = {}
for cmd in os.environ["MH_CMDS"].split(","):
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        gdb.execute(cmd, to_string=True)
        times.append(time.perf_counter() - t0)
    out[cmd] = times
print("MH_RESULT " + json.dumps(out))
