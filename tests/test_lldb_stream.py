"""lldb streams a long output: ptlist of a 200,000-chunk heap (about 9 MB of text, over
the plugin's 8 MB kept for the command's result) goes to lldb's output file as it is
made, whole and in order, in lldb's own driver (``lldb -b``) and from a script's
``HandleCommand``; a short output stays in the command's result.  The program
(tests/programs/manychunks.c) writes every chunk it allocated and whether it freed it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from harness import BUILD_DIR, ROOT, build, require

N = 200_000
SERVER = "/usr/lib/llvm-16/bin/lldb-server"
PLUGIN = ROOT / "plugins" / "lldb.py"

_SCRIPT = r'''
import json, os, sys
cfg = json.loads(sys.argv[1])
import lldb
dbg = lldb.SBDebugger.Create(False)
dbg.SetAsync(False)
dbg.SetUseColor(False)
sink = open(cfg["file"], "w")
dbg.SetOutputFile(lldb.SBFile.Create(sink, borrow=True))
ci = dbg.GetCommandInterpreter()
def do(c):
    r = lldb.SBCommandReturnObject()
    ci.HandleCommand(c, r)
    return r
do("command script import " + cfg["plugin"])
t = dbg.CreateTarget(cfg["exe"])
t.BreakpointCreateByName("checkpoint")
p = t.Launch(lldb.SBLaunchInfo(cfg["args"]), lldb.SBError())
out = {}
for c in ("ptlist", "ptstats"):
    r = do(c)
    out[c] = {"ok": r.Succeeded(), "result": r.GetOutput() or "", "error": r.GetError() or ""}
sink.flush()
p.Kill()
print("MH_RESULT " + json.dumps(out), flush=True)
os._exit(0)
'''


def _truth(path: Path) -> dict[int, str]:
    return {int(a, 16): s for a, s in (line.split() for line in path.read_text().splitlines())}


def _ptlist_block(text: str) -> list[str]:
    """The lines ptlist printed: from its header to its count line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("arena: "))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("count: "))
    return lines[start:end + 1]


def _check(block: list[str], truth: dict[int, str]) -> None:
    """Every chunk once, contiguous and in order, each in the state the program left it."""
    rows = [line.split() for line in block[2:-1]]
    assert int(block[-1].split()[1]) == len(rows)
    seen = {}
    for (addr, size, *_f), nxt in zip(rows, rows[1:]):
        assert int(addr, 16) + int(size, 16) == int(nxt[0], 16), (addr, size, nxt)
    for addr, _size, _flags, state in rows:
        seen[int(addr, 16) + 16] = state
    assert rows[-1][3] == "top"
    for mem, what in truth.items():
        assert mem in seen, hex(mem)
        assert (seen[mem] == "inuse") == (what == "inuse"), (hex(mem), seen[mem], what)
    assert len(rows) - len(truth) <= 4  # tcache's own block, stdio's FILE and buffer, top


def _work(name: str) -> Path:
    d = BUILD_DIR / f"lldb-stream-{name}-{os.getpid()}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_lldb_driver_streams_a_long_ptlist_whole_and_in_order():
    require("lldb-16")
    exe, d = build("manychunks"), _work("driver")
    r = subprocess.run(["lldb-16", "-b", "-o", f"command script import {PLUGIN}",
                        "-o", "b checkpoint", "-o", "run", "-o", "ptlist", "-o", "ptstats",
                        str(exe), "--", str(N), str(d / "truth")], capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, LLDB_DEBUGSERVER_PATH=SERVER))
    out = r.stdout
    assert len(out) > 8 << 20, out[-2000:]
    block = _ptlist_block(out[out.index("(lldb) ptlist\n"):])
    _check(block, _truth(d / "truth"))
    # ptlist's output ended before lldb read its next command
    assert out.index("count: ") < out.index("(lldb) ptstats\n") < out.index("inuse      ")


def test_lldb_script_gets_a_long_ptlist_in_the_output_file_a_short_one_in_its_result():
    lldb_path = subprocess.run([require("lldb-16"), "-P"], capture_output=True, text=True,
                               check=True).stdout.strip()
    exe, d = build("manychunks"), _work("api")
    cfg = {"plugin": str(PLUGIN), "exe": str(exe), "args": [str(N), str(d / "truth")],
           "file": str(d / "out.txt")}
    r = subprocess.run(["/usr/bin/python3", "-c", _SCRIPT, json.dumps(cfg)],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=lldb_path,
                                MULTIHEAP_VENV=str(ROOT / ".venv"),
                                LLDB_DEBUGSERVER_PATH=SERVER))
    line = next(x for x in r.stdout.splitlines() if x.startswith("MH_RESULT "))
    res = json.loads(line[len("MH_RESULT "):])
    assert res["ptlist"]["ok"] and res["ptlist"]["result"] == "", res["ptlist"]["error"]
    _check(_ptlist_block((d / "out.txt").read_text()), _truth(d / "truth"))
    stats = res["ptstats"]
    assert stats["ok"] and stats["result"].startswith("arena "), stats
    assert "ptstats" not in (d / "out.txt").read_text().split("count: ")[-1]
