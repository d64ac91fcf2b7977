"""Argument completion in lldb (issue 12): lldb 17+ completes a Python command's
arguments when it is added with ``-C``; the plugin probes for it.

Both lldbs attach to tests/programs/vis.c (stopped, its frame in main selected, as
a user stopped there) and ask SBCommandInterpreter.HandleCompletion, lldb's own
completion API.  lldb 19 comes from scripts/install/lldb19.sh (a private prefix beside
lldb 16); the same commands must also still run in both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from harness import PLUGIN_GDB, VENV, gdb_env, require, waiting_program

_DRIVER = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import lldb
dbg = lldb.SBDebugger.Create(False)
dbg.SetAsync(False)
ci = dbg.GetCommandInterpreter()
r = lldb.SBCommandReturnObject()
ci.HandleCommand("command script import " + sys.argv[2], r)
target = dbg.CreateTarget(sys.argv[3])
err = lldb.SBError()
proc = target.AttachToProcessWithID(lldb.SBListener(), int(sys.argv[4]), err)
assert err.Success(), err.GetCString()
thread = proc.GetSelectedThread()
exe = target.GetExecutable().GetFilename()
main = [i for i, f in enumerate(thread) if f.GetModule().GetFileSpec().GetFilename() == exe]
thread.SetSelectedFrame(main[0])
out = {"complete": {}, "run": {}}
for line in json.loads(sys.argv[5]):
    m = lldb.SBStringList()
    ci.HandleCompletion(line, len(line), 0, -1, m)
    out["complete"][line] = [m.GetStringAtIndex(i) for i in range(1, m.GetSize())]
for line in json.loads(sys.argv[6]):
    r = lldb.SBCommandReturnObject()
    ci.HandleCommand(line, r)
    out["run"][line] = r.GetOutput() if r.Succeeded() else "error: " + r.GetError()
proc.Detach()
print(json.dumps(out))
'''

LINES = ["ptchunk kee", "ptvis kee", "ptchunk keep[0] kee", "frame variable kee"]


@pytest.fixture(scope="module")
def program():
    with waiting_program("vis", lambda t: [str(t), "wait"], marker="}\n") as running:
        yield running


def lldb19() -> str:
    path = VENV / "bin" / "lldb-19"
    if path.exists():
        return str(path)
    return require("lldb-19")


def drive(lldb: str, program, tmp_path: Path, run: list[str]) -> dict:
    """Attach ``lldb``'s Python API to the program; completions and command outputs."""
    exe, pid, _core, _t = program
    py = subprocess.run([lldb, "-P"], capture_output=True, text=True, check=True).stdout.strip()
    server = Path(os.path.realpath(shutil.which(lldb) or lldb)).parent / "lldb-server"
    script = tmp_path / "drive.py"
    script.write_text(_DRIVER)
    proc = subprocess.run(["/usr/bin/python3", str(script), py, str(PLUGIN_GDB.parent / "lldb.py"),
                           str(exe), str(pid), json.dumps(LINES), json.dumps(run)],
                          capture_output=True, text=True, timeout=180,
                          env=dict(gdb_env(), LLDB_DEBUGSERVER_PATH=str(server)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_lldb19_completes_address_arguments(program, tmp_path):
    """lldb 19: `ptchunk kee<TAB>` gives `keep`, as `frame variable kee` does, in every
    argument; the commands added with -C still run (the chunk of keep[1])."""
    _exe, _pid, _core, t = program
    got = drive(lldb19(), program, tmp_path, ["ptchunk --json keep[1]"])
    assert got["complete"]["frame variable kee"] == ["keep"], got
    for line in LINES:
        assert got["complete"][line] == ["keep"], (line, got)
    doc = json.loads(got["run"]["ptchunk --json keep[1]"])
    assert doc["chunks"][0]["mem"] == t["keep"][1], doc


def test_lldb16_loads_without_completion(program, tmp_path):
    """lldb 16 has no -C: the plugin falls back to the plain registration; arguments do
    not complete (lldb's own `frame variable` does) and the commands run."""
    _exe, _pid, _core, t = program
    got = drive(require("lldb-16"), program, tmp_path, ["ptchunk --json keep[1]"])
    assert got["complete"]["frame variable kee"] == ["keep"], got
    assert got["complete"]["ptchunk kee"] == [], got
    doc = json.loads(got["run"]["ptchunk --json keep[1]"])
    assert doc["chunks"][0]["mem"] == t["keep"][1], doc
