"""lldb: the plugin inside a real lldb-16 (live process and gdb's core file) and the CLI's
``--backend lldb``, against gdb's results for the same target and the program's own truth.

lldb is driven from its Python API in a /usr/bin/python3 subprocess: the plugin is
loaded with ``command script import`` and every command goes through lldb's command
interpreter, as a user's would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import pytest
from conftest import JSON_COMMANDS, TEXT_COMMANDS
from harness import BUILD_DIR, ROOT, VENV, Run, Truth, build, require, run_gdb

PLUGIN = ROOT / "plugins" / "lldb.py"
LLDB_SERVER = "/usr/lib/llvm-16/bin/lldb-server"

_DRIVER = r'''
import json, os, sys
cfg = json.load(open(os.environ["MH_DRIVER"]))
sys.path.insert(0, cfg["lldb_path"])
import lldb
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
if cfg.get("core"):
    p = t.LoadCore(cfg["core"], err)
else:
    t.BreakpointCreateByName("checkpoint")
    info = lldb.SBLaunchInfo(cfg["args"])
    p = t.Launch(info, err)
    th = p.GetSelectedThread()
    if th.GetStopReason() != lldb.eStopReasonBreakpoint:
        sys.exit("did not stop at checkpoint: %s" % err)
results = {}
for c in cfg["commands"]:
    r = do(c)
    results[c] = {"out": r.GetOutput() or "" if r.Succeeded() else "",
                  "error": None if r.Succeeded() else (r.GetError() or "").strip()}
with open(cfg["out"], "w") as f:
    json.dump(results, f)
if not cfg.get("core"):
    p.Kill()
lldb.SBDebugger.Destroy(dbg)
'''


def lldb_python_path() -> str:
    require("lldb-16")
    return subprocess.run(["lldb-16", "-P"], capture_output=True, text=True,
                          check=True).stdout.strip()


def run_lldb(exe: Path, mode: str, commands: list[str], *, core: Optional[Path] = None,
             truth: Optional[Truth] = None, timeout: float = 240) -> Run:
    """Run ``exe MODE TRUTH`` to checkpoint() in lldb (or open ``core``), run commands."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mh-lldb-", dir=BUILD_DIR))
    truth_path = work / "truth.json"
    cfg = {"lldb_path": lldb_python_path(), "plugin": str(PLUGIN), "exe": str(exe),
           "args": [mode, str(truth_path)], "commands": commands,
           "out": str(work / "results.json"), "core": str(core) if core else None}
    (work / "driver.json").write_text(json.dumps(cfg))
    (work / "driver.py").write_text(_DRIVER)
    env = dict(os.environ, MH_DRIVER=str(work / "driver.json"), MULTIHEAP_VENV=str(VENV),
               LLDB_DEBUGSERVER_PATH=LLDB_SERVER, LC_ALL="C.UTF-8")
    proc = subprocess.run(["/usr/bin/python3", str(work / "driver.py")], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if not (work / "results.json").exists():
        raise RuntimeError(f"lldb run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    results = json.loads((work / "results.json").read_text())
    return Run(truth or Truth.load(truth_path), results, core, proc.stderr)


def normalize(doc, drop: tuple[str, ...] = ()):
    """Drop what legitimately differs between hosts: the adapter's name, `how` strings
    and routes tried (and ``drop``: thread ids and pids differ between two live runs)."""
    if isinstance(doc, dict):
        return {k: normalize(v, drop) for k, v in doc.items()
                if k not in ("adapter", "how", "version_how", "found_by", "rejected", *drop)}
    if isinstance(doc, list):
        return [normalize(v, drop) for v in doc]
    return doc


BAD = ["ptchunk 0x10", "ptchunk nosuchvar", "ptchunk (long)malloc(16)", "ptchunk -c",
       "ptchunk main_arena", "ptarena 0x1234", "ptbin -i notanumber", 'ptchunk "open',
       "ptchunk 0xffffffffffffff00"]
# The adapter's /proc/PID/mem path gives what lldb's own read gives for the heap, and
# refuses code (where lldb's breakpoints patch memory).
PROC_MEM = ("script from multiheap.adapters import lldb as A; t = A.LldbTarget(lldb.debugger); "
            "h = [x for x in t.regions() if x.name == '[heap]'][0]; "
            "a = t._read_proc_mem(lldb.process, h.start, h.size); e = lldb.SBError(); "
            "b = bytes(lldb.process.ReadMemory(h.start, h.size, e)); "
            "c = [x for x in t.regions() if 'x' in x.perms][0]; "
            "print('PROCMEM', a == b, len(a), t._read_proc_mem(lldb.process, c.start, c.size))")
EXPRS = [PROC_MEM, "ptchunk -m recs[3].mem --json", "ptchunk -m $rdi --json", "ptchunk &main_arena",
         "help ptchunk", "ptstats  --json"]  # (two spaces: run again after the others)


def _core_of(gdb_runs) -> Path:
    live, _ = gdb_runs
    assert live.core is not None and live.core.exists()
    return live.core


@pytest.fixture(scope="module")
def lldb_basic(basic):
    """lldb's (live, core) runs of the basic scenario; core = the one gdb's gcore made."""
    exe = build("scenario")
    cmds = JSON_COMMANDS + TEXT_COMMANDS
    live = run_lldb(exe, "basic", cmds + BAD + EXPRS)
    core = run_lldb(exe, "basic", cmds + BAD, core=_core_of(basic), truth=basic[0].truth)
    return live, core


@pytest.fixture(scope="module")
def lldb_threads(threads):
    exe = build("scenario")
    live = run_lldb(exe, "threads", JSON_COMMANDS)
    core = run_lldb(exe, "threads", JSON_COMMANDS + TEXT_COMMANDS, core=_core_of(threads),
                    truth=threads[0].truth)
    return live, core


@pytest.fixture(scope="module")
def lldb_i386(basic32):
    """lldb's (live, core) runs of the threaded i386 scenario (no gs base in lldb 16)."""
    exe = build("scenario", m32=True)
    live = run_lldb(exe, "threads", JSON_COMMANDS)
    core = run_lldb(exe, "threads", JSON_COMMANDS, core=_core_of(basic32),
                    truth=basic32[0].truth)
    return live, core


def _equal_json(mine: Run, theirs: Run, drop: tuple[str, ...] = ()) -> None:
    for cmd in JSON_COMMANDS:
        assert normalize(mine.json(cmd), drop) == normalize(theirs.json(cmd), drop), cmd


# --- same JSON as gdb -----------------------------------------------------------------
def test_core_json_equals_gdb(basic, lldb_basic):
    _equal_json(lldb_basic[1], basic[1])


def test_core_text_equals_gdb(basic, lldb_basic):
    for cmd in TEXT_COMMANDS:
        if cmd != "ptconfig":  # names the adapter and how it found things
            assert lldb_basic[1].out(cmd) == basic[1].out(cmd), cmd


def test_live_json_equals_gdb(basic, lldb_basic):
    """Same build, same deterministic scenario: lldb and gdb both run it without ASLR."""
    gdb_live, lldb_live = basic[0], lldb_basic[0]
    assert lldb_live.json("ptconfig --json")["state"] == "live"
    assert lldb_live.truth.mallinfo2 == gdb_live.truth.mallinfo2
    assert lldb_live.truth.pid != gdb_live.truth.pid
    _equal_json(lldb_live, gdb_live, drop=("tid", "pid"))


def test_threads_core_json_equals_gdb(threads, lldb_threads):
    _equal_json(lldb_threads[1], threads[1])
    for cmd in TEXT_COMMANDS:
        if cmd != "ptconfig":
            assert lldb_threads[1].out(cmd) == threads[1].out(cmd), cmd


def test_i386_core_json_equals_gdb(basic32, lldb_i386):
    assert lldb_i386[1].json("ptconfig --json")["arch"] == "i386"
    _equal_json(lldb_i386[1], basic32[1])


CORRUPT = JSON_COMMANDS + ["ptchunk -c 50 --json &main_arena", "ptchunk -c 50 &main_arena",
                          "ptlist", "ptfree", "pttcache -t 99", "ptbin -i 999"]


@pytest.mark.parametrize("mode", ["cycle", "badsize"])
def test_corrupted_heaps_as_gdb_says(mode):
    """A cyclic free list and a corrupted size: the same marked stops or the same one-line
    errors in lldb (on the core) as in gdb (live, when it made the core); no traceback."""
    exe = build("scenario")
    core = BUILD_DIR / f"{exe.name}-{mode}-lldb.core"
    gdb = run_gdb(exe, mode, CORRUPT, gcore=core, timeout=120)
    mine = run_lldb(exe, mode, CORRUPT, core=core, truth=gdb.truth, timeout=120)
    for cmd in CORRUPT:
        err, theirs = mine.error(cmd), gdb.error(cmd)
        if theirs is not None:
            assert err == "error: " + theirs, cmd
        elif cmd.endswith("--json") or " --json " in cmd:
            assert err is None, f"{cmd}: {err}"
            assert normalize(mine.json(cmd), ("state",)) == \
                normalize(gdb.json(cmd), ("state",)), cmd
        else:
            assert err is None and mine.out(cmd) == gdb.out(cmd), cmd
        assert "Traceback" not in mine.results[cmd]["out"] + (err or "")
    assert "stopped" in mine.out("ptlist") or "stop" in mine.out("ptfree")


# --- the program's own truth ----------------------------------------------------------
@pytest.mark.parametrize("which", ["live", "core"])
def test_mallinfo2_equals_the_targets_own(lldb_basic, lldb_threads, which):
    for runs in (lldb_basic, lldb_threads):
        run = runs[0] if which == "live" else runs[1]
        assert run.json("ptstats --json")["mallinfo2"] == run.truth.mallinfo2


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_each_threads_tcache_live(lldb_threads, lldb_i386, arch):
    """A live threaded run (its addresses are its own): each thread's tcache, by tid."""
    run = (lldb_threads if arch == "x86_64" else lldb_i386)[0]
    t = run.truth
    assert run.json("ptconfig --json")["arch"] == arch
    assert run.json("ptstats --json")["mallinfo2"] == t.mallinfo2
    cfg = run.json("ptconfig --json")["structures"]["tcache"]
    assert cfg["threads_found"] == cfg["threads"] == t.threads + 1
    tcaches = run.json("pttcache --json")["tcaches"]
    by_tid = {tc["tid"]: {c["mem"] for b in tc["bins"] for c in b["chunks"]} for tc in tcaches}
    expected: dict[int, set[int]] = {}
    for r in t.records:
        if r["kind"] == "tcache":
            expected.setdefault(r["tid"], set()).add(r["mem"])
    assert len(expected) == t.threads + 1
    for tid, mems in expected.items():
        assert mems <= by_tid[tid], f"thread {tid}"
    arenas = run.json("ptarena -l --json")["arenas"]
    assert [a["system_mem"] for a in arenas] == [a.system_current for a in t.arenas]


# --- lldb as a host ------------------------------------------------------------------
@pytest.mark.parametrize("cmd", BAD)
def test_bad_input_is_one_line(lldb_basic, cmd):
    for run in lldb_basic:
        err = run.error(cmd)
        assert err, f"{cmd}: no error"
        assert err.count("\n") == 0 and "Traceback" not in err, err
        assert err.startswith("error: "), err


def test_expressions_never_call_target_code(lldb_basic):
    live = lldb_basic[0]
    assert "function calls are not allowed" in live.error("ptchunk (long)malloc(16)")
    # the heap is as the program left it (no malloc ran): the same before and after
    assert live.json("ptstats  --json") == live.json("ptstats --json")
    assert live.json("ptstats  --json")["mallinfo2"] == live.truth.mallinfo2


def test_lldb_expressions_as_addresses(lldb_basic):
    live = lldb_basic[0]
    rec = [r for r in live.truth.records if r["kind"] == "live"][3]
    chunk = live.json("ptchunk -m recs[3].mem --json")["chunks"][0]
    assert chunk["addr"] + 16 == rec["mem"] and chunk["state"] == "inuse"
    # $rdi holds checkpoint()'s argument, the mode string: not in any heap, still read
    assert live.error("ptchunk -m $rdi --json") is None
    assert "0x" in live.out("ptchunk &main_arena")


def test_proc_mem_reads_equal_lldbs(lldb_basic):
    out = lldb_basic[0].out(PROC_MEM).split()
    assert out[:2] == ["PROCMEM", "True"] and int(out[2]) > 0 and out[3] == "None", out


def test_help_is_the_parser_help(lldb_basic):
    text = lldb_basic[0].out("help ptchunk")
    assert "usage: ptchunk" in text and "--count" in text


# --- the CLI's --backend lldb ----------------------------------------------------------
def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, LC_ALL="C.UTF-8")
    env.pop("LLDB_DEBUGSERVER_PATH", None)  # the adapter must set it itself
    return subprocess.run([str(VENV / "bin" / "multiheap"), "--backend", "lldb", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_cli_core_equals_gdb(basic):
    exe = build("scenario")
    for cmd in ("ptstats", "ptfree", "pttcache"):
        p = _cli("--core", str(_core_of(basic)), "--exe", str(exe), cmd, "--json")
        assert p.returncode == 0, p.stderr
        assert normalize(json.loads(p.stdout)) == normalize(basic[1].json(cmd + " --json"))


def test_cli_run_to_breakpoint(tmp_path):
    exe = build("scenario")
    truth = tmp_path / "t.json"
    p = _cli("--run", f"{exe} basic {truth}", "--break", "checkpoint", "ptstats", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["mallinfo2"] == Truth.load(truth).mallinfo2


_SLEEPER = r'''
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    void *p[64];
    for (int i = 0; i < 64; i++) p[i] = malloc(24 + 16 * i);
    for (int i = 0; i < 64; i += 2) free(p[i]);
    printf("ready\n"); fflush(stdout);
    for (;;) pause();
}
'''


def test_cli_attach_leaves_the_process_running(tmp_path):
    src = tmp_path / "sleeper.c"
    src.write_text(_SLEEPER)
    exe = tmp_path / "sleeper"
    subprocess.run(["gcc", "-g", "-O1", str(src), "-o", str(exe)], check=True)
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        p = _cli("--pid", str(proc.pid), "ptstats", "--json")
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["totals"]["tcache_count"] == 32
        time.sleep(0.2)
        stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert stat[0] in ("S", "R"), stat[0]  # not stopped (T/t), not a zombie
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert "TracerPid:\t0" in status
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("args", [["--core", "/nonexistent.core"], ["--pid", "999999999"],
                                  ["--run", "/nonexistent/prog"], ["--run", "prog 'a"],
                                  ["--run", ""]])
def test_cli_bad_input_is_one_line(args):
    p = _cli(*args, "ptstats")
    assert p.returncode == 2
    assert p.stdout == "" and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_init_lldb_prints_the_import_line(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path))
    out = subprocess.run([str(VENV / "bin" / "multiheap"), "init", "lldb"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert f"command script import {PLUGIN}" in out
    for _ in range(2):  # idempotent
        subprocess.run([str(VENV / "bin" / "multiheap"), "init", "lldb", "--install"],
                       env=env, check=True, capture_output=True)
    rc = (tmp_path / ".lldbinit").read_text()
    assert rc.count("command script import") == 1
    # ~/.lldbinit loads the plugin in a real lldb
    res = subprocess.run(["lldb-16", "-b", "-o", "help ptstats"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert "usage: ptstats" in res.stdout, res.stdout + res.stderr
