"""Discovery (multiheap/discovery/) as users see it, on real debuggers.

- mp_corrupt.c overwrites mp_.tcache_bins with a huge number (how2heap's
  tcache_relative_write): the heap is still found, with and without debug info, and
  the damage is a note (it was "mp_ not found" for every command without debug info).
- lazy.c early: stopped before the first malloc, every host says "the heap is not
  initialised yet (no malloc has run)" (r2 without debug info said "candidates failed
  the arena checks").
- lazy.c thread: a thread that never allocated has "no tcache yet (this thread has
  not allocated)", never "not found".
- a stripped static executable: its version from its own banner, no --glibc.
- ptconfig: per fact, the route that found it and the routes tried and rejected.
r2 runs only single-threaded programs here (r2 6.1.8 deadlocks on threaded ones).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from harness import BUILD_DIR, VENV, build, require

CLI = str(VENV / "bin" / "multiheap")
NOT_INIT = "the heap is not initialised yet (no malloc has run)"
NO_TCACHE = "no tcache yet (this thread has not allocated)"


def _cli(backend: str, run: str, cmd: str, debug: bool = True) -> dict:
    """``multiheap --backend B --run RUN --break checkpoint CMD --json`` as JSON."""
    env = dict(os.environ, MULTIHEAP_NO_DEBUG_FILES="" if debug else "1", LC_ALL="C.UTF-8")
    env.pop("MULTIHEAP_DEBUG_DIRS", None)
    proc = subprocess.run([CLI, "--backend", backend, "--run", run, "--break", "checkpoint",
                           *cmd.split(), "--json"], capture_output=True, text=True,
                          env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _notes(doc: dict) -> list[str]:
    return [n["message"] for n in doc.get("notes", [])]


@pytest.fixture(scope="module")
def work() -> Path:
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="mh-disc-", dir=BUILD_DIR))


# r2 without debug info is the host that finds structures from libc's ELF file alone;
# gdb/MI and lldb read libc6-dbg's debug info.
HOSTS = [("r2", False), ("r2", True), ("gdb-mi", True), ("lldb", True)]
IDS = [f"{h}-{'debug' if d else 'nodebug'}" for h, d in HOSTS]


@pytest.mark.parametrize("backend,debug", HOSTS, ids=IDS)
def test_corrupted_mp_does_not_hide_the_heap(work, backend, debug):
    require("gdb")
    exe = build("mp_corrupt")
    truth = work / f"mp-{backend}-{debug}.json"
    run = f"{exe} stop {truth}"
    cfg = _cli(backend, run, "ptconfig", debug)
    assert cfg["glibc"] and cfg["structures"]["mp_"]["addr"], cfg
    assert any("tcache_bins is 0x7fffffff0000" in n for n in _notes(cfg)), _notes(cfg)
    lst = _cli(backend, run, "ptlist", debug)  # each run is a new process (ASLR):
    want = set(json.loads(truth.read_text())["tcache"])  # its truth, read after it
    states = {c["addr"] + 16: c["state"] for c in lst["chunks"]}
    assert all(states.get(m) == "tcache" for m in want), lst
    tc = _cli(backend, run, "pttcache", debug)
    want = set(json.loads(truth.read_text())["tcache"])
    got = {c["mem"] for t in tc["tcaches"] for b in t["bins"] for c in b["chunks"]}
    assert want <= got


@pytest.mark.parametrize("backend,debug", HOSTS, ids=IDS)
def test_corrupted_arena_field_does_not_hide_the_heap(work, backend, debug):
    """arena_corrupt.c overwrites main_arena.system_mem: main_arena is still found where
    it is, the damage is a note, and the walks still see every list."""
    exe = build("arena_corrupt")
    truth = work / f"arena-{backend}-{debug}.json"
    run = f"{exe} stop {truth}"
    cfg = _cli(backend, run, "ptconfig", debug)
    addr = cfg["structures"]["main_arena"]["addr"]
    t = json.loads(truth.read_text())
    assert addr and addr < t["system_mem_at"] < addr + 0x1000, (cfg, t)
    assert any("main_arena.system_mem is 0x4141414141410000" in n and "damaged" in n
               for n in _notes(cfg)), _notes(cfg)
    lst = _cli(backend, run, "ptlist", debug)
    t = json.loads(truth.read_text())  # (a new process: ASLR)
    states = {c["addr"] + 16: c["state"] for c in lst["chunks"]}
    assert all(states.get(m) == "tcache" for m in t["tcache"]), lst
    assert states.get(t["unsorted"]) == "free", lst
    free = _cli(backend, run, "ptfree", debug)
    t = json.loads(truth.read_text())
    unsorted = [c["addr"] for a in free["arenas"] for b in a["bins"]
                if b["kind"] == "unsorted" for c in b["chunks"]]
    assert unsorted == [t["unsorted"] - 16], free


@pytest.mark.parametrize("backend,debug", HOSTS, ids=IDS)
def test_before_the_first_malloc(work, backend, debug):
    exe = build("lazy")
    run = f"{exe} early {work / f'early-{backend}-{debug}.json'}"
    cfg = _cli(backend, run, "ptconfig", debug)
    assert NOT_INIT in _notes(cfg), cfg
    assert cfg["structures"]["main_arena"]["addr"]
    assert "not found" not in json.dumps(cfg["structures"]), cfg["structures"]
    tc = _cli(backend, run, "pttcache", debug)
    assert [t["addr"] for t in tc["tcaches"]] == [0]
    assert not any("not found" in n for n in _notes(tc)), tc


@pytest.mark.parametrize("backend", ["gdb-mi", "lldb"])
def test_thread_that_never_allocated(work, backend):
    exe = build("lazy")
    truth = work / f"thread-{backend}.json"
    tc = _cli(backend, f"{exe} thread {truth}", "pttcache")
    idle = json.loads(truth.read_text())["tid"]
    by_tid = {t["tid"]: t for t in tc["tcaches"]}
    assert by_tid[idle]["addr"] == 0 and by_tid[idle]["bins"] == []
    assert all(t["addr"] for tid, t in by_tid.items() if tid != idle)
    assert any(NO_TCACHE in n for n in _notes(tc)), tc
    assert not any("not found" in n for n in _notes(tc)), tc
    env = dict(os.environ, LC_ALL="C.UTF-8")
    text = subprocess.run([CLI, "--backend", backend, "--run", f"{exe} thread {truth}",
                           "--break", "checkpoint", "pttcache"], capture_output=True,
                          text=True, env=env, timeout=240).stdout
    idle = json.loads(truth.read_text())["tid"]  # (a new process)
    line = next(ln for ln in text.splitlines() if f"(tid {idle})" in ln)
    assert NO_TCACHE in line and "not found" not in line, text


def test_static_executable_version_from_its_banner(work):
    """A stripped static executable's core: the version without --glibc."""
    exe = build("scenario", cflags=("-static",))
    stripped = work / "scenario-static-stripped"
    subprocess.run(["objcopy", "--strip-all", "--keep-symbol=checkpoint", str(exe),
                    str(stripped)], check=True)
    core = work / "static.core"
    subprocess.run(["gdb", "-nx", "-batch", "-ex", "break checkpoint", "-ex",
                    f"run basic {work / 'static-truth.json'}", "-ex", f"gcore {core}",
                    str(stripped)], capture_output=True, timeout=120, check=True)
    proc = subprocess.run([CLI, "--core", str(core), "--exe", str(stripped), "ptconfig",
                           "--json"], capture_output=True, text=True, timeout=240)
    cfg = json.loads(proc.stdout)
    assert cfg["glibc"] == "2.36", cfg
    assert "banner" in cfg["version_how"]


def test_static_kernel_core_version_from_its_banner(work):
    """A stripped static executable's core made by the kernel (SIGQUIT): the version
    from glibc's banner (in the core's memory, else the executable's file), with no
    --glibc, and its mallinfo2 as the program reported it."""
    if open("/proc/sys/kernel/core_pattern").read().startswith("|"):
        pytest.fail("kernel.core_pattern pipes cores to a program: set it to a file name")
    exe = build("holder", cflags=("-static",))
    stripped = work / "holder-static-stripped"
    subprocess.run(["objcopy", "--strip-all", str(exe), str(stripped)], check=True)
    cwd = work / "kcore"
    cwd.mkdir()
    truth = cwd / "truth.json"

    def unlimited() -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)

    proc = subprocess.Popen([str(stripped), str(truth)], cwd=cwd, preexec_fn=unlimited)
    for _ in range(1000):  # (the report appears whole: written aside, then renamed)
        if truth.exists():
            break
        time.sleep(0.01)
    want = json.loads(truth.read_text())
    proc.send_signal(signal.SIGQUIT)
    proc.wait(timeout=60)
    core = next(p for p in cwd.iterdir() if p.name.startswith("core"))
    env = dict(os.environ, LC_ALL="C.UTF-8")
    out = subprocess.run([CLI, "--core", str(core), "--exe", str(stripped), "ptconfig",
                          "--json"], capture_output=True, text=True, timeout=240, env=env)
    cfg = json.loads(out.stdout)
    assert cfg["glibc"] == want["glibc"] and "banner in" in cfg["version_how"], cfg
    assert "libc.so" not in cfg["version_how"], cfg  # (static: there is none)
    stats = json.loads(subprocess.run(
        [CLI, "--core", str(core), "--exe", str(stripped), "ptstats", "--json"],
        capture_output=True, text=True, timeout=240, env=env).stdout)
    assert stats["mallinfo2"] == want["mallinfo2"], (stats, want)


def test_ptconfig_shows_routes_tried_and_rejected(work):
    exe = build("lazy")
    cfg = _cli("r2", f"{exe} early {work / 'routes.json'}", "ptconfig", debug=False)
    routes = {r["fact"]: r for r in cfg["routes"]}
    assert {"version", "main_arena", "mp_", "thread 1 pointer", "thread 1 tcache"} <= \
        set(routes)
    assert routes["version"]["value"] == cfg["glibc"] and cfg["glibc"].startswith("2.")
    ma = routes["main_arena"]
    assert ma["found_by"].startswith("heuristic: libc's .data")
    assert [r["route"] for r in ma["rejected"]] == [
        "host debug info: no symbol main_arena", "build-id debug file: none for this libc"]
    assert routes["thread 1 pointer"]["found_by"].startswith("register")
