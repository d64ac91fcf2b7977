"""aarch64, armhf and riscv64 under qemu-user: the glibc matrix's mallinfo test on real
emulated processes.

The threaded scenario (tests/programs/scenario.c, built by clang-16 for
aarch64-linux-gnu or arm-linux-gnueabihf) runs under ``qemu-aarch64``/``qemu-arm -L
SYSROOT -g PORT``; gdb-multiarch with the plugin connects to qemu's gdb stub and stops
it in checkpoint().  qemu 7.2's stub gives no memory map and no thread pointer
(tpidr_el0, tpidruro), so multiheap finds each thread's pointer in glibc's thread rings
(_rtld_global) and the heaps from the arenas themselves.

Cells per machine: the cross libc (libc6-*-cross, which has no debug package) without
debug info; Debian's own libc (libc6:arm64/armhf unpacked by scripts/install/arm.sh)
with its libc6-dbg and without (riscv64: Debian 12 has no riscv64 port, so the cross
libc only).  After the live commands gdb sends SIGABRT: qemu
writes its own core (memory and threads, no file notes), which the CLI reads with
``--sysroot`` (gdb/MI, r2 and lldb) and lldb's plugin opens; lldb also joins qemu's stub
(``gdb-remote``).  Every host runs the same checks (the ``cell`` fixture).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from harness import (
    BUILD_DIR,
    PLUGIN_GDB,
    VENV,
    Run,
    Truth,
    build,
    expected_tcache,
    gdb_env,
    require,
)
from test_glibc_matrix import COMMANDS
from test_glibc_matrix import test_bins_and_fastbins_match_malloc_info as bins_match_malloc_info
from test_lldb import PLUGIN as PLUGIN_LLDB
from test_lldb import lldb_python_path

ARM_ROOT = Path(os.environ.get("MULTIHEAP_ARM_ROOT", "/opt/multiheap-arm"))
# machine: (qemu, clang target, cross libc, Debian architecture, pointer size)
MACHINES = {"aarch64": ("qemu-aarch64", "aarch64-linux-gnu", "arm64", 8),
            "armhf": ("qemu-arm", "arm-linux-gnueabihf", "armhf", 4),
            "riscv64": ("qemu-riscv64", "riscv64-linux-gnu", "", 8)}  # no Debian port
CELLS = [(m, c, d) for m in MACHINES for c, d in
         (("cross", False), ("debian", True), ("debian", False)) if MACHINES[m][2] or
         c == "cross"]
IDS = [f"{m}-{c}-{'debug' if d else 'nodebug'}" for m, c, d in CELLS]
# qemu 7.2 writes no core for riscv64 (linux-user has no ELF core dump for it), and
# lldb-16 cannot run a riscv64 program on qemu's stub (pc 0xffffffffffffffff, it never
# reaches a breakpoint): those hosts are tested on aarch64 and armhf only
NO_CORE = ("riscv64",)
HOSTED = [(c, i) for c, i in zip(CELLS, IDS) if c[0] not in NO_CORE]


def sysroot(machine: str, libc: str) -> Path:
    _q, triple, deb, _sz = MACHINES[machine]
    return Path("/usr") / triple if libc == "cross" else ARM_ROOT / deb / "sysroot"

_DRIVER = r'''
import json, os, time, gdb
cfg = json.load(open(os.environ["MH_DRIVER"]))
for c in ("set pagination off", "set confirm off", "set style enabled off",
          "set debuginfod enabled off", "set width 0") + tuple(cfg["pre"]):
    gdb.execute(c)
gdb.execute("source " + cfg["plugin"])
gdb.execute("file " + cfg["exe"])
for i in range(100):  # the stub listens once qemu has loaded the program
    try:
        gdb.execute("target remote :%d" % cfg["port"])
        break
    except gdb.error:
        if i == 99:
            raise
        time.sleep(0.1)
gdb.execute("break checkpoint")
gdb.execute("continue")
results = {}
for c in cfg["commands"]:
    try:
        results[c] = {"out": gdb.execute(c, to_string=True), "error": None}
    except gdb.error as e:
        results[c] = {"out": "", "error": str(e)}
    except Exception as e:
        results[c] = {"out": "", "error": "PYTHON EXCEPTION: %r" % (e,)}
with open(cfg["out"], "w") as f:
    json.dump(results, f)
gdb.execute("signal SIGABRT")  # qemu writes its core, then the program is gone
'''


def _program(machine: str) -> Path:
    require("clang-16")
    return build("scenario", cc="clang-16", cflags=(f"--target={MACHINES[machine][1]}",))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _core_limit() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def _empty_dir() -> Path:
    d = BUILD_DIR / "no-debug-info"
    d.mkdir(parents=True, exist_ok=True)
    return d


_RUNS: dict[tuple[str, str, bool], Run] = {}


def live_run(machine: str, libc: str, debug: bool) -> Run:
    """gdb-multiarch on the scenario under qemu's stub; the core qemu wrote is run.core."""
    key = (machine, libc, debug)
    if key in _RUNS:
        return _RUNS[key]
    qemu, gdb = require(MACHINES[machine][0]), require("gdb-multiarch")
    exe, root = _program(machine), sysroot(machine, libc)
    assert (root / "lib").is_dir(), f"{root}: run `bash scripts/setup.sh --tests`"
    work = Path(tempfile.mkdtemp(prefix="mh-a64-", dir=BUILD_DIR))
    truth, port = work / "truth.json", _free_port()
    ddir = root / "usr/lib/debug" if debug else _empty_dir()
    cfg = {"plugin": str(PLUGIN_GDB), "exe": str(exe), "port": port, "commands": COMMANDS,
           "out": str(work / "results.json"),
           "pre": [f"set sysroot {root}", f"set debug-file-directory {ddir}"]}
    (work / "driver.json").write_text(json.dumps(cfg))
    (work / "driver.py").write_text(_DRIVER)
    prog = subprocess.Popen([qemu, "-L", str(root), "-g", str(port), str(exe), "threads",
                             str(truth)], cwd=work, preexec_fn=_core_limit,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        env = dict(gdb_env(), MH_DRIVER=str(work / "driver.json"),
                   MULTIHEAP_NO_DEBUG_FILES="" if debug else "1",
                   MULTIHEAP_DEBUG_DIRS=str(ddir) if debug else "")
        proc = subprocess.run([gdb, "-nx", "-batch", "-q", "-x", str(work / "driver.py")],
                              env=env, capture_output=True, text=True, timeout=300)
        prog.wait(timeout=60)
    finally:
        if prog.poll() is None:
            prog.kill()
            prog.wait()
    results = work / "results.json"
    assert results.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    cores = sorted(work.glob("qemu_*.core"))
    _RUNS[key] = Run(Truth.load(truth), json.loads(results.read_text()),
                     cores[0] if cores else None, proc.stderr)
    return _RUNS[key]


def cell_machine(run: Run) -> str:
    return next(k[0] for k, v in _RUNS.items() if v is run)


# Every host on every cell: gdb-multiarch live on qemu's stub; the CLI on qemu's core
# (gdb/MI, r2, lldb: --sysroot); lldb's plugin on the stub and on the core.
BACKENDS = ("gdb-mi", "r2", "lldb")
ALL = [(("live", *c), f"gdb-{i}") for c, i in zip(CELLS, IDS)] \
    + [(("cli", *c, b), f"cli-{b}-{i}") for c, i in HOSTED for b in BACKENDS] \
    + [(("lldb", *c, k), f"lldb-{i}-{'core' if k else 'live'}") for c, i in HOSTED
       for k in (False, True)]


def start(kind: str, *args) -> Run:
    return {"live": live_run, "cli": cli_core_run, "lldb": lldb_run}[kind](*args)


@pytest.fixture(params=[a for a, _i in ALL], ids=[i for _a, i in ALL])
def cell(request) -> tuple[Run, bool]:
    return start(*request.param), request.param[3]


@pytest.fixture(params=CELLS, ids=IDS)
def live_cell(request) -> tuple[Run, bool]:
    return live_run(*request.param), request.param[2]


def test_mallinfo_equals_the_targets_own(cell):
    run, _ = cell
    assert run.truth.threads == 3
    assert run.json("ptstats --json")["mallinfo2"] == run.truth.mallinfo2


def test_free_lists_match_malloc_info(cell):
    bins_match_malloc_info(cell)


def test_each_threads_tcache_is_found(cell):
    run, _ = cell
    cfg = run.json("ptconfig --json")
    tc = cfg["structures"]["tcache"]
    assert tc["threads_found"] == tc["threads"] == run.truth.threads + 1, tc
    by_tid = {t["tid"]: {c["mem"] for b in t["bins"] for c in b["chunks"]}
              for t in run.json("pttcache --json")["tcaches"]}
    for tid, mems in expected_tcache(run.truth).items():
        assert mems <= by_tid[tid], f"thread {tid}"
    # a healthy target: no route found a thread pointer that is none (with debug info
    # arm's struct pthread lies below its thread pointer, not at it)
    for r in cfg["routes"]:
        if r["fact"].endswith(" pointer"):
            assert r["found_by"], r
            assert not any("holds no tcbhead" in x["route"] for x in r["rejected"]), r


def test_no_false_alarm(cell):
    run, _ = cell
    assert run.json("ptcheck --json")["findings"] == []


def test_how_thread_pointers_and_tcaches_were_found(live_cell):
    # no tpidr_el0/tpidruro from qemu's stub: the way the thread pointers were found is
    # said (riscv's tp is a general register, which the stub gives)
    run, debug = live_cell
    cfg = run.json("ptconfig --json")
    for r in cfg["routes"]:
        if r["fact"].endswith(" pointer"):
            want = "register" if cfg["arch"].startswith("riscv") else "_rtld_global"
            assert want in r["found_by"], r
    tc = cfg["structures"]["tcache"]
    assert tc["how"].startswith("debug info" if debug else "heuristic"), tc


def test_config_says_how(live_cell):
    run, debug = live_cell
    st = run.json("ptconfig --json")["structures"]
    for name in ("main_arena", "mp_"):
        assert st[name]["how"].startswith("debug info" if debug else "heuristic"), st
    if cell_machine(run) in NO_CORE:
        assert run.core is None  # (if qemu learns it, add the core cells)
    else:
        assert run.core is not None and run.core.stat().st_size > 0  # qemu's, on SIGABRT


_CLI: dict[tuple[str, str, bool, str], Run] = {}


def cli_core_run(machine: str, libc: str, debug: bool, backend: str = "gdb-mi") -> Run:
    """``multiheap --core`` (gdb/MI: gdb-multiarch; or r2) on the core qemu wrote, with
    ``--sysroot`` (and ``--debug-dir`` for the debug cell)."""
    key = (machine, libc, debug, backend)
    if key not in _CLI:
        live = live_run(machine, libc, debug)
        assert live.core is not None, "qemu wrote no core"
        root = sysroot(machine, libc)
        dirs = ["--debug-dir", str(root / "usr/lib/debug")] if debug else []
        env = dict(gdb_env(), MULTIHEAP_NO_DEBUG_FILES="" if debug else "1")
        env.pop("MULTIHEAP_DEBUG_DIRS", None)
        proc = subprocess.run([str(VENV / "bin" / "multiheap"), "--backend", backend,
                               "--core", str(live.core),
                               "--exe", str(_program(machine)), "--sysroot", str(root),
                               *dirs],
                              input="\n".join(COMMANDS) + "\n", capture_output=True,
                              text=True, env=env, timeout=300)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        assert len(lines) == len(COMMANDS), proc.stdout[-2000:] + proc.stderr[-2000:]
        _CLI[key] = Run(live.truth, {c: {"out": ln, "error": None}
                                     for c, ln in zip(COMMANDS, lines)})
    return _CLI[key]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("machine,libc,debug", [c for c, _i in HOSTED],
                         ids=[i for _c, i in HOSTED])
def test_core_state_and_modules(machine, libc, debug, backend):
    # a qemu core has no file notes: libc comes from ld.so's link_map in its memory
    cfg = cli_core_run(machine, libc, debug, backend).json("ptconfig --json")
    assert cfg["state"] == "core" and cfg["arch"] in ("aarch64", "arm", "armv7",
                                                      "riscv:rv64", "riscv64")
    # (r2 reads no debug files: its "debug info" is multiheap's reader of the sysroot's)
    assert cfg["structures"]["main_arena"]["how"].startswith(
        "debug info" if debug else "heuristic"), cfg["structures"]
    if backend == "lldb" and debug:  # lldb loaded the sysroot's ld.so and its debug info
        assert "link_map.l_tls_offset" in cfg["structures"]["tcache"]["how"], cfg


_LLDB_DRIVER = r"""
import json, os, sys, time
cfg = json.load(open(os.environ["MH_DRIVER"]))
sys.path.insert(0, cfg["lldb_path"])
import lldb
dbg = lldb.SBDebugger.Create(False)
dbg.SetAsync(False)
ci = dbg.GetCommandInterpreter()

def do(c):
    r = lldb.SBCommandReturnObject()
    ci.HandleCommand(c, r)
    return r

for c in cfg["pre"]:
    r = do(c)
    if not r.Succeeded():
        sys.exit(c + ": " + (r.GetError() or ""))
if cfg.get("port"):
    for i in range(100):  # the stub listens once qemu has loaded the program
        r = do("gdb-remote %d" % cfg["port"])
        if r.Succeeded():
            break
        time.sleep(0.1)
    else:
        sys.exit("gdb-remote: " + (r.GetError() or ""))
    for c in ("breakpoint set -n checkpoint", "process continue"):
        do(c)
results = {}
for c in cfg["commands"]:
    r = do(c)
    results[c] = {"out": r.GetOutput() or "" if r.Succeeded() else "",
                  "error": None if r.Succeeded() else (r.GetError() or "").strip()}
with open(cfg["out"], "w") as f:
    json.dump(results, f)
if cfg.get("port"):
    do("process kill")
lldb.SBDebugger.Destroy(dbg)
"""
_LLDB: dict[tuple[str, str, bool, bool], Run] = {}


def lldb_run(machine: str, libc: str, debug: bool, core: bool) -> Run:
    """lldb-16 with the plugin: ``gdb-remote`` to qemu's stub, or qemu's core (the live
    gdb cell's) with ``target create --core``; the sysroot's libraries through
    target.exec-search-paths, its debug files through MULTIHEAP_DEBUG_DIRS."""
    key = (machine, libc, debug, core)
    if key in _LLDB:
        return _LLDB[key]
    root, exe = sysroot(machine, libc), _program(machine)
    work = Path(tempfile.mkdtemp(prefix="mh-a64-lldb-", dir=BUILD_DIR))
    truth = work / "truth.json"
    search = f"{root}/lib {root}/lib/{MACHINES[machine][1]}"
    pre = [f"settings set target.exec-search-paths {search}",
           f"target create {exe}"
           + (f" --core {live_run(machine, libc, debug).core}" if core else ""),
           f"command script import {PLUGIN_LLDB}"]
    port = None if core else _free_port()
    cfg = {"lldb_path": lldb_python_path(), "pre": pre, "port": port,
           "commands": COMMANDS, "out": str(work / "results.json")}
    (work / "driver.json").write_text(json.dumps(cfg))
    (work / "driver.py").write_text(_LLDB_DRIVER)
    env = dict(gdb_env(), MH_DRIVER=str(work / "driver.json"), MULTIHEAP_SYSROOT=str(root),
               MULTIHEAP_NO_DEBUG_FILES="" if debug else "1",
               MULTIHEAP_DEBUG_DIRS=str(root / "usr/lib/debug") if debug else "")
    prog = None if core else subprocess.Popen(
        [require(MACHINES[machine][0]), "-L", str(root), "-g", str(port), str(exe), "threads",
         str(truth)], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc = subprocess.run(["/usr/bin/python3", str(work / "driver.py")], env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        if prog is not None:
            prog.kill()
            prog.wait()
    results = work / "results.json"
    assert results.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    t = live_run(machine, libc, debug).truth if core else Truth.load(truth)
    _LLDB[key] = Run(t, json.loads(results.read_text()), None, proc.stderr)
    return _LLDB[key]
