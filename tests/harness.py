"""Test harness: build scenario programs, run them in real debuggers, read their truth.

A scenario program (tests/programs/*.c) shapes its heap, writes what glibc itself
reports (mallinfo2, malloc_info's XML, every allocation and free) and stops in
``checkpoint()``.  Tests run multiheap's commands there, live and on a core file,
and compare.  Nothing here is faked: a missing tool is an error, not a skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "programs"
PLUGIN_GDB = ROOT / "plugins" / "gdb.py"
BUILD_DIR = Path(os.environ.get("MULTIHEAP_TEST_BUILD", tempfile.gettempdir())) / "multiheap-tests"
VENV = ROOT / ".venv"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed: run `bash scripts/setup.sh --tests`")
    return path


def build(program: str = "scenario", *, m32: bool = False, cflags: tuple[str, ...] = (),
          glibc: Optional[GlibcBuild] = None, cc: str = "gcc") -> Path:
    """Compile tests/programs/PROGRAM.c (cached by source, compiler, flags and glibc)."""
    require(cc)
    src = PROGRAMS / f"{program}.c"
    flags = [cc, "-g", "-O1", "-pthread", *(("-m32",) if m32 else ()), *cflags]
    if glibc is not None:
        flags += glibc.cflags()
    key = hashlib.sha256(src.read_bytes() + repr(flags).encode()).hexdigest()[:12]
    out = BUILD_DIR / f"{program}-{key}"
    if not out.exists():
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        subprocess.run([*flags, str(src), "-o", str(tmp)], check=True)
        tmp.replace(out)
    return out


@dataclass
class GlibcBuild:
    """An unpacked glibc (another Debian release's), for building and debugging against."""

    version: str
    root: Path

    @property
    def libdir(self) -> Path:
        for cand in (self.root / "lib/x86_64-linux-gnu", self.root / "usr/lib/x86_64-linux-gnu"):
            if (cand / "ld-linux-x86-64.so.2").exists():
                return cand
        raise RuntimeError(f"no loader under {self.root}")

    @property
    def debug_dir(self) -> Path:
        return self.root / "usr/lib/debug"

    def cflags(self) -> list[str]:
        r, lib = self.root, self.libdir
        return [f"--sysroot={r}", "-B", f"{r}/usr/lib/x86_64-linux-gnu",
                "-isystem", "/usr/lib/gcc/x86_64-linux-gnu/12/include",
                f"-Wl,--dynamic-linker={lib}/ld-linux-x86-64.so.2", f"-Wl,-rpath={lib}"]


@dataclass
class ArenaInfo:
    """One ``<heap>`` of malloc_info: free-chunk counts glibc reports for an arena."""

    fast_count: int
    fast_size: int
    rest_count: int  # bins (unsorted, small, large) plus the top chunk
    rest_size: int
    system_current: int


@dataclass
class Truth:
    """What the scenario program reported about its own heap at checkpoint()."""

    mode: str
    glibc: str
    pointer_size: int
    pid: int
    threads: int
    mallinfo2: dict[str, int]
    records: list[dict]
    arenas: list[ArenaInfo] = field(default_factory=list)
    mmap_count: int = 0
    mmap_size: int = 0

    @classmethod
    def load(cls, path: Path) -> Truth:
        data = json.loads(path.read_text())
        t = cls(**data)
        root = ET.parse(str(path) + ".xml").getroot()
        for heap in root.findall("heap"):
            tot = {e.get("type"): e for e in heap.findall("total")}
            sysm = {e.get("type"): e for e in heap.findall("system")}
            fast = tot.get("fast")  # 2.43 has no fastbins: malloc_info prints no fast total
            t.arenas.append(ArenaInfo(int(fast.get("count")) if fast is not None else 0,
                                      int(fast.get("size")) if fast is not None else 0,
                                      int(tot["rest"].get("count")), int(tot["rest"].get("size")),
                                      int(sysm["current"].get("size"))))
        for e in root.findall("total"):
            if e.get("type") == "mmap":
                t.mmap_count, t.mmap_size = int(e.get("count")), int(e.get("size"))
        return t

    @property
    def version(self) -> tuple[int, int]:
        major, minor = self.glibc.split(".")[:2]
        return int(major), int(minor)

    def mems(self, *kinds: str) -> list[int]:
        return [r["mem"] for r in self.records if r["kind"] in kinds]


@dataclass
class Run:
    """The outcome of one debugger session: each command's output or error."""

    truth: Truth
    results: dict[str, dict]
    core: Optional[Path] = None
    stderr: str = ""

    def out(self, cmd: str) -> str:
        r = self.results[cmd]
        assert r["error"] is None, f"{cmd}: {r['error']}"
        return r["out"]

    def error(self, cmd: str) -> Optional[str]:
        return self.results[cmd]["error"]

    def json(self, cmd: str) -> dict:
        text = self.out(cmd)
        assert text.count("\n") <= 1, f"{cmd}: more than one line of JSON"
        return json.loads(text)


_GDB_DRIVER = r'''
import json, os, gdb
cfg = json.load(open(os.environ["MH_DRIVER"]))
for c in ("set pagination off", "set confirm off", "set style enabled off",
          "set debuginfod enabled off", "set width 0"):
    gdb.execute(c)
for c in cfg.get("pre", []):
    gdb.execute(c)
gdb.execute("source " + cfg["plugin"])
gdb.execute("file " + cfg["exe"])
if cfg.get("core"):
    gdb.execute("core-file " + cfg["core"])
else:
    gdb.execute("break checkpoint")
    gdb.execute("run " + cfg["args"])
results = {}
for c in cfg["commands"]:
    try:
        results[c] = {"out": gdb.execute(c, to_string=True), "error": None}
    except gdb.error as e:
        results[c] = {"out": "", "error": str(e)}
    except Exception as e:  # a Python exception escaping a command is a bug
        results[c] = {"out": "", "error": "PYTHON EXCEPTION: %r" % (e,)}
if cfg.get("gcore"):
    gdb.execute("gcore " + cfg["gcore"], to_string=True)
with open(cfg["out"], "w") as f:
    json.dump(results, f)
if not cfg.get("core"):
    gdb.execute("kill")
'''


def gdb_env() -> dict[str, str]:
    return dict(os.environ, MULTIHEAP_VENV=str(VENV), LC_ALL="C.UTF-8")


def run_gdb(exe: Path, mode: str, commands: list[str], *, core: Optional[Path] = None,
            gcore: Optional[Path] = None, truth: Optional[Truth] = None,
            pre: tuple[str, ...] = (), timeout: float = 240) -> Run:
    """Run ``exe MODE TRUTH`` to checkpoint() in gdb (or open ``core``), run commands."""
    require("gdb")
    work = Path(tempfile.mkdtemp(prefix="mh-", dir=BUILD_DIR))
    truth_path = work / "truth.json"
    cfg = {"plugin": str(PLUGIN_GDB), "exe": str(exe), "args": f"{mode} {truth_path}",
           "commands": commands, "out": str(work / "results.json"),
           "core": str(core) if core else None, "gcore": str(gcore) if gcore else None,
           "pre": list(pre)}
    (work / "driver.json").write_text(json.dumps(cfg))
    (work / "driver.py").write_text(_GDB_DRIVER)
    env = dict(gdb_env(), MH_DRIVER=str(work / "driver.json"))
    proc = subprocess.run(["gdb", "-nx", "-batch", "-q", "-x", str(work / "driver.py")],
                          env=env, capture_output=True, text=True, timeout=timeout)
    if not (work / "results.json").exists():
        raise RuntimeError(f"gdb run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    results = json.loads((work / "results.json").read_text())
    if truth is None:
        truth = Truth.load(truth_path)
    return Run(truth, results, gcore, proc.stderr)


# ---------------------------------------------------------------- shared checks
def free_locations(ptfree: dict, pointer_size: int) -> dict[int, list[str]]:
    """User pointer -> where ptfree's JSON lists it ("bin", "fast", "tcache")."""
    where: dict[int, list[str]] = {}
    for a in ptfree["arenas"]:
        for kind, lists in (("bin", a["bins"]), ("fast", a["fastbins"] or [])):
            for b in lists:
                for c in b["chunks"]:
                    where.setdefault(c["addr"] + 2 * pointer_size, []).append(kind)
    for tc in ptfree["tcaches"]:
        for b in tc["bins"]:
            for c in b["chunks"]:
                where.setdefault(c["mem"], []).append("tcache")
    return where


def check_frees_found_once(ptfree: dict, t: Truth) -> None:
    """Every chunk the program freed is listed once, where glibc keeps it; nothing else."""
    where = free_locations(ptfree, t.pointer_size)
    for mem in t.mems("tcache"):
        assert where.get(mem) == ["tcache"], hex(mem)
    for mem in t.mems("fast_or_tcache"):
        assert where.get(mem) == (["fast"] if t.version < (2, 43) else ["tcache"]), hex(mem)
    for mem in t.mems("binned"):
        assert where.get(mem) in (["bin"], ["tcache"]), hex(mem)
    for mem in t.mems("live"):
        assert mem not in where, hex(mem)
    assert len(where) == len(t.mems("tcache", "fast_or_tcache", "binned"))


def expected_tcache(t: Truth) -> dict[int, set[int]]:
    """tid -> the user pointers the program left in that thread's tcache."""
    out: dict[int, set[int]] = {}
    for r in t.records:
        if r["kind"] == "tcache" or (r["kind"] == "fast_or_tcache" and t.version >= (2, 43)):
            out.setdefault(r["tid"], set()).add(r["mem"])
    return out


@contextmanager
def waiting_program(program: str, argv, *, marker: str = "\n"):
    """Run tests/programs/PROGRAM.c until it wrote its truth file (ending in ``marker``)
    and waits; gcore it.  Yields (exe, pid, core, truth); the process is killed after.

    ``argv(truth_path)`` gives the program's arguments (each program orders them its way).
    """
    require("gdb")
    exe = build(program)
    work = Path(tempfile.mkdtemp(prefix=f"mh-{program}-", dir=BUILD_DIR))
    truth_path = work / "truth.json"
    proc = subprocess.Popen([str(exe), *argv(truth_path)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if truth_path.exists() and truth_path.read_text().endswith(marker):
                break
            time.sleep(0.02)
        truth = json.loads(truth_path.read_text())
        core = work / f"{program}.core"
        subprocess.run(["gdb", "-nx", "-batch", "-p", str(proc.pid), "-ex", f"gcore {core}"],
                       capture_output=True, timeout=120, check=True)
        assert core.exists()
        yield exe, proc.pid, core, truth
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
