"""lldb is read-only for real: address arguments never map, write or run anything in the
target (issue 9).

victim (tests/programs/victim.c) is stopped at checkpoint() in lldb-16 with the plugin;
every writable mapping, /proc/PID/maps and ``register read`` are taken before and after
every argument of tests/readonly.py's battery goes through ``ptchunk`` (and a few through
``ptarena``); nothing may differ.  Harmless arguments must give the values the process
holds (its READY file, /proc/PID/mem, the ELF symbol table), and the victim, let run on,
must print the globals it had.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest
import readonly
from elftools.elf.elffile import ELFFile
from harness import BUILD_DIR, ROOT, VENV, build
from test_lldb import LLDB_SERVER, PLUGIN, lldb_python_path

_DRIVER = r'''
import json, os, pickle, sys
cfg = json.load(open(os.environ["MH_DRIVER"]))
sys.path.insert(0, cfg["lldb_path"])
sys.path.insert(0, cfg["tests"])
import lldb
import readonly
dbg = lldb.SBDebugger.Create(False)
dbg.SetAsync(False)
dbg.SetUseColor(False)
ci = dbg.GetCommandInterpreter()

def do(c):
    r = lldb.SBCommandReturnObject()
    ci.HandleCommand(c, r)
    return r

r = do("command script import " + cfg["plugin"])
if not r.Succeeded():
    sys.exit("plugin import failed: " + (r.GetError() or ""))
err = lldb.SBError()
t = dbg.CreateTarget(cfg["exe"], None, None, True, err)
t.BreakpointCreateByName("checkpoint")
info = lldb.SBLaunchInfo([cfg["ready"]])
info.AddOpenFileAction(1, cfg["stdout"], False, True)
p = t.Launch(info, err)
if p.GetSelectedThread().GetStopReason() != lldb.eStopReasonBreakpoint:
    sys.exit("did not stop at checkpoint: %s" % err)
pid = p.GetProcessID()
regs = lambda: do("register read").GetOutput() or ""
before = readonly.snapshot(pid, regs())
results = {}
for c in cfg["commands"]:
    r = do(c)
    results[c] = {"out": (r.GetOutput() or "") if r.Succeeded() else "",
                  "error": None if r.Succeeded() else (r.GetError() or "")}
after = readonly.snapshot(pid, regs())
p.Continue()
with open(cfg["out"], "wb") as f:
    pickle.dump({"pid": pid, "before": before, "after": after, "results": results,
                 "state": lldb.SBDebugger.StateAsCString(p.GetState()),
                 "exit": p.GetExitStatus()}, f)
lldb.SBDebugger.Destroy(dbg)
'''

BATTERY = readonly.battery("$rbx")
HARMLESS = ["keep[2]", "&keep", "global_ptr", "p", "(char*)keep[1]+16", "*(long*)&keep",
            "&main_arena", "$rsp+8", "keep+2", "&keep[3]", "p+1", "*p", "-1",
            "(long)p & ~0xf", "((struct malloc_state *)&main_arena)->top", "main_arena.top"]
ARENA = ["nkeep=8", "$rbx=0x4141", "malloc(16)", "&main_arena", "nkeep++", "keep[3]=0"]
WRITES = [a for a in BATTERY if any(op in a for op in ("=", "++", "--"))]
CALLS = ["malloc(16)", "abort()", "(long)malloc(16)", "free(p)", "checkpoint()"]
VALID = {"(char*)keep[1]+16", "keep[2]", "&keep", "*(long*)&keep", "global_ptr", "p"}


def run_victim(commands: list[str]) -> dict:
    """victim stopped at checkpoint() in lldb, ``commands`` run, then let run to its end."""
    exe = build("victim")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mh-ro-lldb-", dir=BUILD_DIR))
    cfg = {"lldb_path": lldb_python_path(), "tests": str(ROOT / "tests"),
           "plugin": str(PLUGIN), "exe": str(exe), "ready": str(work / "ready.json"),
           "stdout": str(work / "stdout"), "commands": commands, "out": str(work / "out")}
    (work / "driver.json").write_text(json.dumps(cfg))
    (work / "driver.py").write_text(_DRIVER)
    env = dict(os.environ, MH_DRIVER=str(work / "driver.json"), MULTIHEAP_VENV=str(VENV),
               LLDB_DEBUGSERVER_PATH=LLDB_SERVER, LC_ALL="C.UTF-8")
    proc = subprocess.run(["/usr/bin/python3", str(work / "driver.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    if not (work / "out").exists():
        raise RuntimeError(f"lldb run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    with open(work / "out", "rb") as f:
        run = pickle.load(f)
    run["ready"] = json.loads((work / "ready.json").read_text())
    run["stdout"] = (work / "stdout").read_text()
    run["exe"] = exe
    return run


def _cmd(arg: str, json_: bool = False) -> str:
    """The ptchunk line for ``arg`` (``-1`` as typed: a negative number is a value)."""
    return f"ptchunk {'--json ' if json_ else ''}{shlex.quote(arg) if ' ' in arg else arg}"


@pytest.fixture(scope="module")
def victim():
    cmds = [_cmd(a) for a in BATTERY] + [f"ptarena {a}" for a in ARENA]
    cmds += [_cmd(a, json_=True) for a in HARMLESS] + ["ptconfig --json"]
    return run_victim(cmds)


def _peek(snap: readonly.Snapshot, addr: int, size: int = 8) -> int:
    """``size`` bytes at ``addr`` as /proc/PID/mem showed them (writable mappings)."""
    for line, data in snap.memory.items():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= addr and addr + size <= hi:
            return int.from_bytes(data[addr - lo:addr - lo + size], "little")
    raise AssertionError(f"{addr:#x} is in no writable mapping")


def _symbol(run: dict, name: str) -> int:
    """``name``'s address in the running victim: ELF symbol table + load base."""
    exe = str(run["exe"])
    base = min(int(ln.split("-")[0], 16) for ln in run["before"].maps.splitlines()
               if ln.endswith(os.path.realpath(exe)) or ln.endswith(exe))
    with open(exe, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]
        return base + sym["st_value"]


def _chunk_addr(run: dict, arg: str) -> int:
    """The address ``ptchunk ARG`` looked at (an unreadable one: named in its error)."""
    res = run["results"][_cmd(arg, json_=True)]
    if res["error"]:
        m = re.search(r"ptchunk: no chunk at (0x[0-9a-f]+): ", res["error"])
        assert m, f"{arg}: {res['error']}"
        return int(m.group(1), 16)
    return readonly.evaluated_address(json.loads(res["out"]))


def test_battery_changes_nothing(victim):
    """No write, no new mapping (lldb's rwx expression allocator), no register change."""
    diffs = readonly.differences(victim["before"], victim["after"])
    assert diffs == [], "\n".join(diffs)


def test_refusals_are_one_line_and_say_why(victim):
    res = victim["results"]
    for arg in BATTERY:
        r = res[_cmd(arg)]
        if arg in VALID:
            assert r["error"] is None, (arg, r)
            continue
        assert r["error"], (arg, r)
        assert len(r["error"].strip().splitlines()) == 1, (arg, r["error"])
        assert r["error"].startswith("error: ptchunk: "), (arg, r["error"])
        if arg in WRITES:
            assert "would write to the target (multiheap only reads)" in r["error"], arg
        elif arg in CALLS:
            assert "function calls are not allowed" in r["error"], arg
    for arg in ARENA:
        r = res[f"ptarena {arg}"]
        if arg == "&main_arena":
            assert r["error"] is None and "0x" in r["out"], r
        else:
            assert r["error"] and len(r["error"].strip().splitlines()) == 1, (arg, r)
            assert r["error"].startswith("error: ptarena: "), r
    assert "500" not in res[_cmd("x" * 500)]["error"] and \
        len(res[_cmd("x" * 500)]["error"]) < 300


def test_harmless_arguments_give_the_right_values(victim):
    snap, ready, mask = victim["before"], victim["ready"], (1 << 64) - 1
    keep = _symbol(victim, "keep")
    rsp = int(next(ln.split()[2] for ln in snap.registers.splitlines()
                   if ln.split()[:1] == ["rsp"]), 16)
    arena = json.loads(victim["results"]["ptconfig --json"]["out"])
    main_arena = arena["structures"]["main_arena"]["addr"]
    top = _peek(snap, main_arena + 0x60)  # struct malloc_state.top on glibc 2.36 x86_64
    want = {
        "keep[2]": _peek(snap, keep + 16), "&keep": keep, "global_ptr": ready["global_ptr"],
        "p": ready["p"], "(char*)keep[1]+16": _peek(snap, keep + 8) + 16,
        "*(long*)&keep": _peek(snap, keep), "&main_arena": main_arena, "$rsp+8": rsp + 8,
        "keep+2": keep + 16, "&keep[3]": keep + 24, "p+1": ready["p"] + 8,
        "*p": 0x1111, "-1": mask, "(long)p & ~0xf": ready["p"] & ~0xF & mask,
        "((struct malloc_state *)&main_arena)->top": top, "main_arena.top": top,
    }
    assert _peek(snap, ready["p"]) == 0x1111 and _symbol(victim, "global_ptr") and \
        _peek(snap, _symbol(victim, "global_ptr")) == ready["global_ptr"]
    for arg, value in want.items():
        assert _chunk_addr(victim, arg) == value, arg


def test_victim_runs_on_with_its_own_values(victim):
    assert victim["state"] == "exited" and victim["exit"] == 0, victim["state"]
    keep3 = _peek(victim["before"], _symbol(victim, "keep") + 24)
    assert victim["stdout"].strip() == f"nkeep=5 keep3={keep3:#x} p0=0x1111"
