"""mallinfo2 on real programs, against each program's own: python3, perl, bash,
sqlite3 and a threaded C++ program, on the system's glibc and on Debian's 2.41 and 2.43
(run by that build's ld.so).

tests/programs/mallinfo_shim.c is preloaded: on SIGURG it writes the program's own
mallinfo2() (without allocating) and stops the process, so the heap multiheap reads is
the one measured.  Each backend of the CLI (gdb/MI, lldb, radare2) then attaches and
its ``ptstats --json`` must equal that truth in all nine fields.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from glibcbuilds import other_builds
from harness import BUILD_DIR, PROGRAMS, require
from test_ptcheck import CLI, REAL, _threaded

BUILDS = {b.version: b for b in other_builds()}
SQL = ("create table t(a, b);\nwith recursive c(x) as (select 1 union all select x + 1 "
       "from c where x < 50000) insert into t select x, hex(randomblob(40)) from c;\n"
       "delete from t where a % 3 = 0;\nselect 'ready';\n")


def _shim() -> Path:
    out = BUILD_DIR / "mallinfo_shim.so"
    src = PROGRAMS / "mallinfo_shim.c"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", str(src), "-o", str(out)],
                       check=True)
    return out


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.parametrize("glibc", ["system", "2.41", "2.43"])
@pytest.mark.parametrize("name", [*REAL, "threaded-c++"])
def test_mallinfo_equals_the_programs_own(name, glibc, tmp_path):
    argv = _threaded() if name == "threaded-c++" else REAL[name]
    require(argv[0])
    shim, truth = _shim(), tmp_path / "truth.json"
    env = dict(os.environ, MH_TRUTH=str(truth))
    if glibc == "system":
        env["LD_PRELOAD"] = str(shim)
    else:
        lib = BUILDS[glibc].libdir
        argv = [str(lib / "ld-linux-x86-64.so.2"), "--library-path", str(lib),
                "--preload", str(shim), shutil.which(argv[0]) or argv[0], *argv[1:]]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        if name == "sqlite3":
            proc.stdin.write(SQL)
            proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        proc.send_signal(signal.SIGURG)  # a signal none of them handles
        deadline = time.time() + 30
        while not (truth.exists() and truth.stat().st_size and _stopped(proc.pid)):
            assert time.time() < deadline, "the program did not stop with its truth"
            time.sleep(0.05)
        want = json.loads(truth.read_text())
        assert want["arena"] > 0
        for backend in ("gdb-mi", "lldb", "r2"):
            res = subprocess.run([CLI, "--backend", backend, "--pid", str(proc.pid),
                                  "ptstats", "--json"], capture_output=True, text=True,
                                 timeout=240)
            assert res.returncode == 0, (backend, res.stderr[-2000:])
            assert json.loads(res.stdout)["mallinfo2"] == want, (name, glibc, backend)
    finally:
        proc.kill()
        proc.wait()
