"""The ``multiheap`` command line (gdb-mi backend) against the gdb host and the truth.

For the same core file, every command's ``--json`` through the CLI equals what the gdb
host prints; ``ptstats`` equals the target's own mallinfo2; ``--run`` and ``--pid``
work on live processes; bad input is one line and exit 2; no gdb is ever left behind.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest
from conftest import JSON_COMMANDS
from harness import BUILD_DIR, VENV, Truth, build, run_gdb

from multiheap.elffile import inspect_core, read_elf

CLI = VENV / "bin" / "multiheap"
TAG = "MULTIHEAP_CLI_TEST"
# Fields that name the host rather than describe the heap.
HOST_FIELDS = {"ptconfig": ("adapter", "state")}


def cli_env(tag: str, **extra: str) -> dict[str, str]:
    """Environment for a CLI run; gdb inherits the tag, so leftovers can be found."""
    env = dict(os.environ, LC_ALL="C.UTF-8", MULTIHEAP_HISTORY=os.devnull)
    env.update({TAG: tag}, **extra)
    return env


def tagged_pids(tag: str) -> list[int]:
    """Processes (gdb, programs it started) whose environment carries ``tag``."""
    needle = f"{TAG}={tag}".encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{d}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != "Z":
            out.append(int(d))
    return out


def multiheap(*args: str, stdin: Optional[str] = None, timeout: float = 120,
              tag: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run the CLI; afterwards, check that none of its processes is left."""
    tag = tag or uuid.uuid4().hex
    p = subprocess.run([str(CLI), *args], input=stdin, capture_output=True, text=True,
                       timeout=timeout, env=cli_env(tag))
    assert "Traceback" not in p.stderr, p.stderr
    assert_gone(tag)
    return p


def assert_gone(tag: str, wait: float = 5.0) -> None:
    deadline = time.monotonic() + wait
    while tagged_pids(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tagged_pids(tag) == [], "processes left behind"


def one_json(p: subprocess.CompletedProcess) -> dict:
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("\n") == 1, p.stdout[:500]
    return json.loads(p.stdout)


def heap_only(cmd: str, doc: dict) -> dict:
    doc = dict(doc)
    for k in HOST_FIELDS.get(cmd.split()[0], ()):
        doc.pop(k, None)
    return doc


def core_of(run) -> tuple[Path, Path]:
    """(core, exe) of a conftest (live, core) pair: the live run wrote the core."""
    assert run.core is not None and run.core.exists()
    exe = inspect_core(str(run.core)).exe  # the program the core names
    assert exe is not None and Path(exe).parent == BUILD_DIR, exe
    return run.core, Path(exe)


# -- the same core: CLI == gdb host ------------------------------------------------------

def test_every_command_json_equals_gdb_host_on_a_core(threads):
    live, dead = threads
    core, exe = core_of(live)
    for cmd in JSON_COMMANDS:
        mine = one_json(multiheap("--core", str(core), "--exe", str(exe), *cmd.split()))
        theirs = dead.json(cmd)
        assert heap_only(cmd, mine) == heap_only(cmd, theirs), cmd
        if cmd.startswith("ptconfig"):
            assert (mine["adapter"], mine["state"]) == ("gdb-mi", "core")


def test_ptstats_equals_the_targets_mallinfo2_on_a_core(threads):
    live, _ = threads
    core, _exe = core_of(live)  # the core names its executable: no --exe
    doc = one_json(multiheap("--core", str(core), "ptstats", "--json"))
    assert doc["mallinfo2"] == live.truth.mallinfo2


def test_i386_core_through_the_shell_equals_gdb_host(basic32):
    """One CLI process, every command on stdin (the non-interactive shell)."""
    live, dead = basic32
    core, exe = core_of(live)
    p = multiheap("--core", str(core), "--exe", str(exe), stdin="\n".join(JSON_COMMANDS) + "\n")
    assert p.returncode == 0, p.stderr
    docs = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(docs) == len(JSON_COMMANDS)
    for cmd, mine in zip(JSON_COMMANDS, docs):
        assert heap_only(cmd, mine) == heap_only(cmd, dead.json(cmd)), cmd
    assert docs[JSON_COMMANDS.index("ptstats --json")]["mallinfo2"] == live.truth.mallinfo2


def test_address_commands_equal_gdb_host(basic):
    live, _ = basic
    core, exe = core_of(live)
    t = live.truth
    freed = t.mems("binned")[0]
    cmds = [f"ptchunk {freed:#x} -c 3 --json", f"ptchunk {freed:#x} -m -x --json",
            "pttcache -t 1 --json", "ptbin -i 1 --json", "ptarena --json", "ptlist -c 5 --json"]
    host = run_gdb(exe, "basic", cmds, core=core, truth=t)
    for cmd in cmds:
        mine = one_json(multiheap("--core", str(core), *cmd.split()))
        assert mine == host.json(cmd), cmd


# -- live: --run and --pid ---------------------------------------------------------------

def _normalise_tids(doc, tids: dict[int, int]):
    """Thread ids differ between two runs of a program: number them by first sight."""
    if isinstance(doc, dict):
        return {k: (tids.setdefault(v, len(tids)) if k == "tid" else _normalise_tids(v, tids))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [_normalise_tids(v, tids) for v in doc]
    return doc


def test_run_equals_gdb_host_live_and_mallinfo2(basic, tmp_path):
    live, _ = basic
    exe = build("scenario")
    truth = tmp_path / "truth.json"
    p = multiheap("--run", f"{exe} basic {truth}", "--break", "checkpoint",
                  stdin="\n".join(JSON_COMMANDS) + "\n")
    assert p.returncode == 0, p.stderr
    docs = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(docs) == len(JSON_COMMANDS)
    mine_truth = Truth.load(truth)
    assert docs[JSON_COMMANDS.index("ptstats --json")]["mallinfo2"] == mine_truth.mallinfo2
    assert docs[0]["state"] == "live"
    for cmd, mine in zip(JSON_COMMANDS, docs):
        theirs = live.json(cmd)
        assert _normalise_tids(heap_only(cmd, mine), {}) == \
            _normalise_tids(heap_only(cmd, theirs), {}), cmd


def test_run_one_command(tmp_path):
    exe = build("scenario")
    truth = tmp_path / "truth.json"
    doc = one_json(multiheap("--run", f"{exe} threads {truth}", "--break", "checkpoint",
                             "ptstats", "--json"))
    assert doc["mallinfo2"] == Truth.load(truth).mallinfo2


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _wait_file(path: Path, proc: subprocess.Popen, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "holder exited"
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.02)
    return json.loads(path.read_text())


def test_attach_reads_and_leaves_the_process_running(tmp_path):
    exe = build("holder")
    truth = tmp_path / "truth.json"
    proc = subprocess.Popen([str(exe), str(truth)])
    try:
        before = _wait_file(truth, proc)
        assert before["pid"] == proc.pid
        first = one_json(multiheap("--pid", str(proc.pid), "ptstats", "--json"))
        assert first["mallinfo2"] == before["mallinfo2"]
        # detached: running (sleeping in nanosleep), not stopped or traced
        time.sleep(0.1)
        assert _proc_state(proc.pid) in ("S", "R"), _proc_state(proc.pid)
        with open(f"/proc/{proc.pid}/status") as f:
            assert "TracerPid:\t0\n" in f.read()
        lst1 = one_json(multiheap("--pid", str(proc.pid), "ptlist", "--json"))
        lst2 = one_json(multiheap("--pid", str(proc.pid), "ptlist", "--json"))
        assert lst1 == lst2  # the heap is what it was
        # it still runs: it answers a signal with a fresh report, and its heap is unchanged
        os.kill(proc.pid, signal.SIGUSR1)
        after = _wait_file(Path(str(truth) + ".again"), proc)
        assert after["mallinfo2"] == before["mallinfo2"]
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


# -- bad input -----------------------------------------------------------------------------

def _bad(*args: str, env_path: Optional[str] = None) -> str:
    tag = uuid.uuid4().hex
    env = cli_env(tag) if env_path is None else cli_env(tag, PATH=env_path)
    p = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60, env=env)
    assert_gone(tag)
    assert p.returncode == 2, (args, p.returncode, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("multiheap: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_bad_cores(basic, tmp_path):
    live, _ = basic
    core, exe = core_of(live)
    assert "does not exist" in _bad("--core", str(tmp_path / "nope"), "ptstats")
    cut = tmp_path / "cut.core"
    cut.write_bytes(core.read_bytes()[: core.stat().st_size // 2])
    assert "truncated" in _bad("--core", str(cut), "ptstats")
    assert "not a core" in _bad("--core", str(exe), "ptstats")
    other = build("holder")
    assert "not made from" in _bad("--core", str(core), "--exe", str(other), "ptstats")


def test_start_is_vetted_alike_in_every_backend(basic, tmp_path):
    """One start-up request (multiheap.startup) for gdb-mi, lldb and r2: a bad core, PID
    or program is the same one line whichever debugger was asked for."""
    live, _ = basic
    core, exe = core_of(live)
    cut = tmp_path / "cut.core"
    cut.write_bytes(core.read_bytes()[: core.stat().st_size // 2])
    arm64 = _patched(core, tmp_path / "arm64.core", 18, "<H", 183)  # e_machine: aarch64
    sparc = _patched(core, tmp_path / "sparc.core", 18, "<H", 43)
    cases = [("--core", str(tmp_path / "nope")), ("--core", str(cut)), ("--core", str(exe)),
             ("--core", str(tmp_path)), ("--core", str(arm64)), ("--core", str(sparc)),
             ("--core", str(core), "--exe", str(build("holder"))),
             ("--pid", "999999999"), ("--run", str(tmp_path / "noprog")), ("--run", "'open")]
    for case in cases:
        lines = {b: _bad("--backend", b, *case, "ptstats") for b in ("gdb-mi", "lldb", "r2")}
        assert len(set(lines.values())) == 1, (case, lines)
    assert "does not exist" in _bad("--backend", "lldb", "--core", str(tmp_path / "nope"))
    assert f"{arm64} is aarch64 but {exe} is x86_64" in \
        _bad("--backend", "r2", "--core", str(arm64), "ptstats")
    assert "unsupported machine (ELF machine 43" in \
        _bad("--backend", "lldb", "--core", str(sparc), "ptstats")


def _patched(core: Path, dest: Path, at: int, fmt: str, value: int) -> Path:
    data = bytearray(core.read_bytes())
    struct.pack_into(fmt, data, at, value)
    dest.write_bytes(data)
    return dest


def _nt_file_desc(core: Path) -> int:
    """File offset of the core's NT_FILE note descriptor (its count word)."""
    data, at, fmt = core.read_bytes(), None, "<III"
    for pt, off, _va, fs, _ms in read_elf(str(core)).phdrs:
        pos = off
        while pt == 4 and pos + 12 <= off + fs:
            namesz, descsz, ntype = struct.unpack_from(fmt, data, pos)
            desc = pos + 12 + ((namesz + 3) & ~3)
            if ntype == 0x46494C45:
                at = desc
            pos = desc + ((descsz + 3) & ~3)
    assert at is not None
    return at


def test_corrupted_core_headers_are_one_line(basic, tmp_path):
    live, _ = basic
    core, _exe = core_of(live)
    stub = tmp_path / "stub.core"
    stub.write_bytes(b"\x7fELF")
    assert "truncated ELF header" in _bad("--core", str(stub), "ptstats")
    zero = _patched(core, tmp_path / "phentsize.core", 54, "<H", 0)
    assert "program header size 0" in _bad("--core", str(zero), "ptstats")
    far = _patched(core, tmp_path / "phoff.core", 32, "<Q", (1 << 64) - 1)
    assert "program headers missing" in _bad("--core", str(far), "ptstats")
    count = _patched(core, tmp_path / "ntfile.core", _nt_file_desc(core), "<Q", 1 << 40)
    assert "give --exe" in _bad("--core", str(count), "ptstats")


def test_bad_pids(tmp_path):
    assert "no process" in _bad("--pid", "999999999", "ptstats")
    assert "not a process id" in _bad("--pid", "abc", "ptstats")
    # a zombie cannot be traced
    z = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while _proc_state(z.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert "exited" in _bad("--pid", str(z.pid), "ptstats")
    finally:
        z.wait()
    # a process another tracer holds cannot be attached
    traced = subprocess.Popen(
        [sys.executable, "-c", "import ctypes, os, signal; "
         "ctypes.CDLL(None).ptrace(0, 0, 0, 0); os.kill(os.getpid(), signal.SIGSTOP)"])
    try:
        deadline = time.monotonic() + 10
        while _proc_state(traced.pid) not in ("t", "T") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "already traced" in _bad("--pid", str(traced.pid), "ptstats")
    finally:
        traced.kill()
        traced.wait()


def test_bad_usage_and_missing_gdb(basic):
    live, _ = basic
    core, _exe = core_of(live)
    assert "give a target" in _bad("ptstats")
    assert "unknown command" in _bad("--core", str(core), "ptnothing")
    assert "--break goes with --run" in _bad("--core", str(core), "--break", "main", "ptstats")
    assert "unknown backend 'nosuch' (backends: gdb-mi, lldb, r2)" in _bad(
        "--backend", "nosuch", "--core", str(core), "ptstats")
    assert "gdb is not installed" in _bad("--core", str(core), "ptstats", env_path="/nonexistent")
    assert "exited" in _bad("--run", "true")
    assert "not found" in _bad("--run", "/nonexistent/prog")


def test_bad_debug_dir(basic, tmp_path):
    live, _ = basic
    core, _exe = core_of(live)
    for backend in ("gdb-mi", "lldb", "r2"):
        line = _bad("--backend", backend, "--debug-dir", str(tmp_path / "nope"),
                    "--core", str(core), "ptstats")
        assert line == f"multiheap: debug directory {tmp_path / 'nope'} does not exist"
    afile = tmp_path / "afile"
    afile.write_text("")
    assert "is not a directory" in _bad("--debug-dir", str(afile), "--core", str(core),
                                        "ptstats")


def test_command_error_is_one_json_document_and_exit_2(basic):
    live, _ = basic
    core, _exe = core_of(live)
    p = multiheap("--core", str(core), "ptchunk", "no_such_symbol", "--json")
    assert p.returncode == 2
    doc = json.loads(p.stdout)
    assert doc["command"] == "ptchunk" and "no_such_symbol" in doc["error"]
    assert len(p.stderr.splitlines()) == 1


# -- Ctrl-C: nothing left behind -----------------------------------------------------------

def _start(args: list[str], tag: str) -> subprocess.Popen:
    return subprocess.Popen([str(CLI), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(tag))


def _wait_for(pred, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_ctrl_c_in_the_shell_leaves_no_gdb(basic):
    live, _ = basic
    core, _exe = core_of(live)
    tag = uuid.uuid4().hex
    p = _start(["--core", str(core)], tag)
    try:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write("pthelp --json\n")
        p.stdin.flush()
        assert json.loads(p.stdout.readline())["command"] == "pthelp"  # the shell is up
        assert tagged_pids(tag), "no gdb while the shell runs"
        # at the prompt: blocked in read(0, ...) (Ctrl-C during a command only stops it)
        _wait_for(lambda: Path(f"/proc/{p.pid}/syscall").read_text().startswith("0 0x0 "))
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 130
        assert "Traceback" not in p.stderr.read()  # type: ignore[union-attr]
    finally:
        p.kill()
        p.wait()
    assert_gone(tag)


def test_ctrl_c_while_the_program_runs_leaves_nothing():
    tag = uuid.uuid4().hex
    p = _start(["--run", "sleep 600", "ptstats"], tag)
    try:
        # gdb and the program it started (sleep) are both up
        _wait_for(lambda: len(tagged_pids(tag)) >= 2)
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 130
        err = p.stderr.read()  # type: ignore[union-attr]
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
    finally:
        p.kill()
        p.wait()
    assert_gone(tag)


def test_shell_completion_and_options():
    from multiheap.shell import complete, options_of

    assert "ptchunk" in complete("", "ptc")
    assert complete("", "ptchu") == ["ptchunk"]
    assert sorted(complete("", "ptch")) == ["ptcheck", "ptchunk"]
    assert "--json" in options_of("ptstats")
    assert "-c" in complete("ptchunk 0x10 ", "-")


@pytest.mark.parametrize("args", [["--help"], ["init", "gdb"]])
def test_help_and_init(args):
    p = multiheap(*args)
    assert p.returncode == 0, p.stderr
    assert p.stdout


def test_init_install_appends_once_and_says_why_it_cannot(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path))

    def install() -> subprocess.CompletedProcess:
        return subprocess.run([str(CLI), "init", "gdb", "--install"], env=env,
                              capture_output=True, text=True, timeout=60)

    rc = tmp_path / ".gdbinit"
    rc.write_text("set pagination off")  # no final newline
    assert install().returncode == 0 and install().returncode == 0
    text = rc.read_text()
    assert text.startswith("set pagination off\n# multiheap\n")
    assert text.count("# multiheap") == 1
    rc.unlink()
    rc.mkdir()  # not a file: one line, exit 2
    p = install()
    assert p.returncode == 2, p.stderr
    assert p.stderr == f"multiheap: cannot update {rc}: Is a directory\n"


def test_interactive_shell_on_a_terminal(basic, tmp_path):
    """On a pty: a prompt, Tab completes a command and an option, history is saved."""
    import pty
    import select

    live, _ = basic
    core, _exe = core_of(live)
    hist = tmp_path / "history"
    tag = uuid.uuid4().hex
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on the terminal
        try:
            env = cli_env(tag, MULTIHEAP_HISTORY=str(hist), TERM="dumb")
            os.execve(str(CLI), [str(CLI), "--core", str(core)], env)
        finally:
            os._exit(127)

    def read_until(marker: str, timeout: float = 60) -> str:
        out, deadline = "", time.monotonic() + timeout
        while marker not in out:
            assert time.monotonic() < deadline, out[-500:]
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    out += os.read(fd, 65536).decode(errors="replace")
                except OSError:  # the other side closed
                    raise AssertionError(f"the shell ended: {out[-500:]!r}") from None
        return out

    try:
        read_until("multiheap> ")
        os.write(fd, b"ptpar\t --js\t\n")
        out = read_until("multiheap> ")
        assert "ptparam --json" in out  # both words completed
        doc = json.loads(next(x for x in out.splitlines() if x.startswith("{")))
        assert doc["command"] == "ptparam"
        os.write(fd, b"\x04")  # Ctrl-D leaves
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        os.close(fd)
    assert "ptparam --json" in hist.read_text()
    assert_gone(tag)


def test_ctrl_c_in_an_attached_shell_detaches(tmp_path):
    """Ctrl-C at the prompt of ``--pid``: gdb ends, the process runs on, untraced."""
    exe = build("holder")
    truth = tmp_path / "truth.json"
    proc = subprocess.Popen([str(exe), str(truth)])
    tag = uuid.uuid4().hex
    try:
        before = _wait_file(truth, proc)
        p = _start(["--pid", str(proc.pid)], tag)
        try:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("ptstats --json\n")
            p.stdin.flush()
            assert json.loads(p.stdout.readline())["mallinfo2"] == before["mallinfo2"]
            _wait_for(lambda: Path(f"/proc/{p.pid}/syscall").read_text().startswith("0 0x0 "))
            p.send_signal(signal.SIGINT)
            assert p.wait(30) == 130
        finally:
            p.kill()
            p.wait()
        assert_gone(tag)
        time.sleep(0.1)
        assert _proc_state(proc.pid) in ("S", "R")
        with open(f"/proc/{proc.pid}/status") as f:
            assert "TracerPid:\t0\n" in f.read()
        os.kill(proc.pid, signal.SIGUSR1)
        assert _wait_file(Path(str(truth) + ".again"), proc)["mallinfo2"] == before["mallinfo2"]
    finally:
        proc.kill()
        proc.wait()


def test_run_expressions_never_call_target_functions(tmp_path):
    exe, truth = build("scenario"), tmp_path / "truth.json"
    p = multiheap("--run", f"{exe} basic {truth}", "--break", "checkpoint",
                  stdin="ptchunk (long)malloc(16)\nptstats --json\n")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert "ptchunk: Cannot call functions" in p.stderr
    assert json.loads(lines[-1])["mallinfo2"] == Truth.load(truth).mallinfo2
