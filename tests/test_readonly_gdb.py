"""Read-only in gdb: the plugin and the CLI's gdb/MI backend never write to the target.

Every argument of tests/readonly.py's battery (assignments, increments, calls, register
writes, bad input) goes through ``ptchunk`` (and a few through ``ptarena``) on the
``victim`` program; every writable mapping and /proc/PID/maps (and, in gdb, the
registers) must be the same before and after, each refusal is one line, harmless
arguments still give the addresses the process itself holds, and the program's own
last line (printed after the tests let it go on) shows its globals untouched.
``--run`` hands the program the user's stdin, stdout and stderr.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest
import readonly
from harness import BUILD_DIR, PLUGIN_GDB, VENV, build, gdb_env
from readonly import Snapshot, battery, differences, snapshot

CLI = VENV / "bin" / "multiheap"
TAG = "MULTIHEAP_RO_TEST"
BATTERY = battery("$rbx")
ARENA_ARGS = ["nkeep=8", "keep[3]=0", "$rbx=0x4141", "nkeep++", "malloc(16)",
              "*(long*)p=0x4242"]
# argument -> what the victim's memory says it is (filled by _truth)
HARMLESS = ["keep[2]", "&keep", "global_ptr", "(char*)keep[1]+16", "p", "-1"]
WRITES = [a for a in BATTERY if re.search(r"(?<![=!<>])=(?!=)|\+\+|--", a)]
CALLS = [a for a in BATTERY if "(" in a and re.search(r"\w\(", a) and a not in WRITES]
FINAL = re.compile(r"^nkeep=(\d+) keep3=(0x[0-9a-f]+|\(nil\)) p0=(0x[0-9a-f]+)$", re.M)


# -- what the victim holds, read from outside -------------------------------------------
def _symbols(exe: Path) -> dict[str, int]:
    out = subprocess.run(["nm", str(exe)], capture_output=True, text=True, check=True).stdout
    return {f[2]: int(f[0], 16) for f in (ln.split() for ln in out.splitlines())
            if len(f) == 3}


def _base(pid: int, exe: Path) -> int:
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if parts[-1] == str(exe) and int(parts[2], 16) == 0:
                return int(parts[0].split("-")[0], 16)
    raise AssertionError(f"{exe} is not mapped in {pid}")


def _word(pid: int, addr: int) -> int:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        mem.seek(addr)
        return int.from_bytes(mem.read(8), "little")


def _truth(pid: int, exe: Path) -> dict[str, int]:
    """The harmless arguments' values, from /proc/PID/mem and the symbol table."""
    base, sym = _base(pid, exe), _symbols(exe)
    keep = base + sym["keep"]
    return {"keep[2]": _word(pid, keep + 16), "&keep": keep,
            "global_ptr": _word(pid, base + sym["global_ptr"]),
            "(char*)keep[1]+16": _word(pid, keep + 8) + 16,
            "p": _word(pid, base + sym["p"]), "-1": (1 << 64) - 1,
            "keep[3]": _word(pid, keep + 24), "go_on": base + sym["go_on"]}


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"process ended early ({proc.returncode})"
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def _sleeping_snapshot(pid: int) -> Snapshot:
    """A snapshot of the looping victim, stopped (SIGSTOP) inside its nanosleep: glibc
    marks the thread's cancellation state around that syscall, so two snapshots taken at
    random points of the loop could differ without anyone writing."""
    for _ in range(200):
        os.kill(pid, signal.SIGSTOP)
        try:
            while _state(pid) != "T":
                time.sleep(0.001)
            with open(f"/proc/{pid}/syscall") as f:
                if f.read().split()[0] in ("35", "230"):  # nanosleep, clock_nanosleep
                    return snapshot(pid)
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.003)
    raise AssertionError("the victim was never caught in its nanosleep")


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _check_final_line(text: str, truth: dict[str, int]) -> None:
    """The victim's own last line: its globals as it sees them after we looked."""
    m = FINAL.search(text)
    assert m, text
    assert m.group(1) == "5" and int(m.group(2), 16) == truth["keep[3]"] \
        and m.group(3) == "0x1111", m.group(0)


def _check_refusals(results: dict[str, tuple[str, Optional[str]]]) -> None:
    """Each battery argument: one line when refused; writes and calls always refused."""
    for arg in BATTERY:
        out, err = results[f"ptchunk {arg}"]
        assert "Traceback" not in out + (err or "") and "PYTHON EXCEPTION" not in (err or "")
        if err is not None:
            assert err.strip() and "\n" not in err.strip(), (arg, err)
        if arg in WRITES:
            assert err is not None and "would write" in err, (arg, out, err)
        if arg in CALLS:
            assert err is not None and "call functions" in err, (arg, out, err)
    for arg in ARENA_ARGS:
        out, err = results[f"ptarena {arg}"]
        assert err is not None and "\n" not in err.strip(), (arg, out)
        assert "would write" in err or "call functions" in err, (arg, err)


def _check_harmless(results: dict[str, tuple[str, Optional[str]]],
                    truth: dict[str, int]) -> None:
    for i, arg in enumerate(HARMLESS):
        out, err = results[f"ptmeta add {arg} t{i} --json"]
        assert err is None, (arg, err)
        tags = {t["tag"]: t["addr"] for t in json.loads(out)["tags"]}
        assert tags[f"t{i}"] == truth[arg], (arg, hex(tags[f"t{i}"]), hex(truth[arg]))
    out, err = results["ptchunk global_ptr --json"]
    assert err is None and readonly.evaluated_address(json.loads(out)) == truth["global_ptr"]


# -- the gdb plugin -----------------------------------------------------------------------
_DRIVER = r'''
import json, os, time, gdb
cfg = json.load(open(os.environ["MH_DRIVER"]))
for c in ("set pagination off", "set confirm off", "set style enabled off",
          "set debuginfod enabled off", "set width 0"):
    gdb.execute(c)
gdb.execute("source " + cfg["plugin"])
gdb.execute("file " + cfg["exe"])
gdb.execute("break checkpoint")
gdb.execute("run %s > %s" % (cfg["ready"], cfg["progout"]))
GUARDS = ("may-call-functions", "may-write-memory", "may-write-registers", "observer")

def handshake(name):
    open(os.path.join(cfg["work"], name), "w").close()
    while not os.path.exists(os.path.join(cfg["work"], name + ".go")):
        time.sleep(0.02)

res = {"settings_before": {n: gdb.parameter(n) for n in GUARDS},
       "regs_before": gdb.execute("info registers", to_string=True)}
handshake("before")
results = {}
for c in cfg["commands"]:
    try:
        results[c] = (gdb.execute(c, to_string=True), None)
    except gdb.error as e:
        results[c] = ("", str(e))
    except Exception as e:  # a Python exception escaping a command is a bug
        results[c] = ("", "PYTHON EXCEPTION: %r" % (e,))
res["results"] = results
res["regs_after"] = gdb.execute("info registers", to_string=True)
res["settings_after"] = {n: gdb.parameter(n) for n in GUARDS}
gdb.execute("set may-call-functions off")  # the user's own choice is kept
results["ptchunk keep[2] (user guard)"] = (gdb.execute("ptchunk keep[2]", to_string=True),
                                            None)
res["user_guard"] = gdb.parameter("may-call-functions")
gdb.execute("set may-call-functions on")
handshake("after")
gdb.execute("delete")
gdb.execute("continue")  # to the program's end: it prints its globals
with open(cfg["out"], "w") as f:
    json.dump(res, f)
'''


def _commands() -> list[str]:
    return ([f"ptchunk {a}" for a in BATTERY] + [f"ptarena {a}" for a in ARENA_ARGS]
            + [f"ptmeta add {a} t{i} --json" for i, a in enumerate(HARMLESS)]
            + ["ptchunk global_ptr --json"])


@pytest.fixture(scope="module")
def gdb_session():
    """victim stopped at checkpoint() in gdb with the plugin; snapshots around the battery."""
    exe = build("victim")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mh-ro-", dir=BUILD_DIR))
    cfg = {"plugin": os.environ.get("MH_RO_PLUGIN", str(PLUGIN_GDB)), "exe": str(exe),
           "ready": str(work / "ready.json"), "progout": str(work / "prog.out"),
           "work": str(work), "out": str(work / "res.json"), "commands": _commands()}
    (work / "driver.json").write_text(json.dumps(cfg))
    (work / "driver.py").write_text(_DRIVER)
    proc = subprocess.Popen(["gdb", "-nx", "-batch", "-q", "-x", str(work / "driver.py")],
                            env=dict(gdb_env(), MH_DRIVER=str(work / "driver.json")),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(work / "before", proc)
        pid = json.loads((work / "ready.json").read_text())["pid"]
        truth = _truth(pid, exe)
        before = snapshot(pid)
        (work / "before.go").touch()
        _wait_for(work / "after", proc)
        after = snapshot(pid)
        (work / "after.go").touch()
        log, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (work / "res.json").exists(), log[-3000:]
    res = json.loads((work / "res.json").read_text())
    before.registers, after.registers = res["regs_before"], res["regs_after"]
    res["results"] = {k: tuple(v) for k, v in res["results"].items()}
    return {"res": res, "before": before, "after": after, "truth": truth,
            "program": (work / "prog.out").read_text()}


def test_gdb_battery_changes_nothing(gdb_session):
    s = gdb_session
    assert differences(s["before"], s["after"]) == []
    assert "rbx" in s["before"].registers  # the registers were really compared


def test_gdb_refusals_are_one_line(gdb_session):
    results = gdb_session["res"]["results"]
    _check_refusals(results)
    assert results["ptchunk nkeep=8"][1] == \
        "ptchunk: 'nkeep=8' would write to the target (multiheap only reads)"


def test_gdb_harmless_arguments_still_work(gdb_session):
    _check_harmless(gdb_session["res"]["results"], gdb_session["truth"])


def test_gdb_settings_restored(gdb_session):
    res = gdb_session["res"]
    assert res["settings_after"] == res["settings_before"]
    assert res["settings_before"]["may-write-memory"] is True
    assert res["user_guard"] is False  # a guard the user turned off stays off


def test_gdb_program_sees_its_globals_unchanged(gdb_session):
    _check_final_line(gdb_session["program"], gdb_session["truth"])


# -- the CLI (gdb/MI) on a live process ------------------------------------------------------
def _cli(*args: str, tag: str, stdin: Optional[str] = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, LC_ALL="C.UTF-8", MULTIHEAP_HISTORY=os.devnull, **{TAG: tag})
    p = subprocess.run([str(CLI), *args], input=stdin, capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert "Traceback" not in p.stderr, p.stderr
    return p


@pytest.fixture(scope="module")
def cli_session():
    """victim looping (``wait``); one CLI per argument attaches, reads, detaches."""
    exe = build("victim")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mh-ro-cli-", dir=BUILD_DIR))
    ready = work / "ready.json"
    # One CPU: the kernel rewrites the thread's rseq area (cpu_id, in struct pthread)
    # whenever a running thread moves to another CPU; nobody else writes there.
    cpu = min(os.sched_getaffinity(0))
    proc = subprocess.Popen([str(exe), str(ready), "wait"], stdout=subprocess.PIPE,
                            text=True, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    try:
        _wait_for(ready, proc)
        pid = proc.pid
        truth = _truth(pid, exe)
        before = _sleeping_snapshot(pid)
        tag = uuid.uuid4().hex
        results: dict[str, tuple[str, Optional[str]]] = {}
        for cmd in _commands():
            name, _, arg = cmd.partition(" ")
            argv = [name, *arg.split(" ")] if name == "ptmeta" or arg.endswith("--json") \
                else [name, arg]
            p = _cli("--pid", str(pid), *argv, tag=tag)
            if p.returncode == 0:
                results[cmd] = (p.stdout, None)
            else:
                assert p.returncode == 2, (cmd, p.returncode, p.stderr)
                results[cmd] = (p.stdout, p.stderr.strip().removeprefix("multiheap: "))
        after = _sleeping_snapshot(pid)
        guard = _mi_guards(pid)
        with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:  # let it finish
            mem.seek(truth["go_on"])
            mem.write((1).to_bytes(4, "little"))
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"before": before, "after": after, "truth": truth, "results": results,
            "program": out, "guard": guard, "tag": tag}


def _mi_guards(pid: int) -> dict[str, str]:
    """The second layer, asked directly: gdb itself refuses writes in the CLI's session."""
    from multiheap.adapters.gdbmi_open import open_target
    from multiheap.adapters.gdbmi_process import GdbMiError

    out = {}
    with open_target(pid=pid) as t:
        for what, cmd in (("memory", "set var nkeep = 9"), ("registers", "set var $rbx = 9")):
            try:
                t.mi.console(cmd)
                out[what] = "written"
            except GdbMiError as e:
                out[what] = str(e)
    return out


def test_cli_battery_changes_nothing(cli_session):
    # Memory and the mapping list only: the process runs between the CLI's attaches,
    # so its registers change anyway (gdb's own refusal of register writes is checked
    # in test_cli_gdb_refuses_writes itself).
    assert differences(cli_session["before"], cli_session["after"]) == []


def test_cli_refusals_are_one_line(cli_session):
    results = cli_session["results"]
    _check_refusals(results)
    assert results["ptchunk nkeep=8"][1] == \
        "ptchunk: 'nkeep=8' would write to the target (multiheap only reads)"


def test_cli_harmless_arguments_still_work(cli_session):
    _check_harmless(cli_session["results"], cli_session["truth"])


def test_cli_gdb_refuses_writes(cli_session):
    guard = cli_session["guard"]
    assert guard["memory"].startswith("Writing to memory is not allowed"), guard
    assert guard["registers"].startswith("Writing to registers is not allowed"), guard


def test_cli_program_sees_its_globals_unchanged(cli_session):
    _check_final_line(cli_session["program"], cli_session["truth"])


# -- --run: the program's stdio is the user's ------------------------------------------------
def test_run_program_uses_our_stdio():
    exe = build("talker")
    p = _cli("--run", str(exe), "--break", "checkpoint", "ptmeta", "list",
             tag=uuid.uuid4().hex, stdin="hello from the test\n")
    assert p.returncode == 0, p.stderr
    m = re.search(r"^talker stdout (0x[0-9a-f]+)$", p.stdout, re.M)
    assert m, p.stdout
    assert "talker read hello from the test\n" in p.stdout
    assert "talker stderr\n" in p.stderr
    assert p.stdout.index("talker read") < p.stdout.index("0 tags")  # then our output


# -- the assignment check both gdb hosts share (no debugger needed) ------------------------
@pytest.mark.parametrize("expr,op", [
    ("nkeep=8", "="), ("a+=1", "+="), ("a<<=1", "<<="), ("a>>=1", ">>="), ("x:=3", ":="),
    ("a++", "++"), ("--a", "--"), ("$foo=1", "="), ("a==b", None), ("a!=b", None),
    ("a<=b", None), ("a>=b", None), ("p->next", None), ("a - -1", None), ('"x=1"', None),
    ("'='", None), ('"a\\"=" + 1', None), ("&keep", None)])
def test_write_operator(expr, op):
    from multiheap.adapters.gdbtext import write_operator

    assert write_operator(expr) == op
