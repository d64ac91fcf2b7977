"""radare2: read-only for real, no shell between the ``$pt*`` aliases and multiheap,
state that lasts for the r2 session, every flag an address, r2 dying with the CLI.

One ``r2 -d victim`` session (with exactly the aliases ``multiheap init r2`` prints) is
driven command by command over r2's ``-q0`` protocol, so that the test can look at the
process from outside (/proc) between two commands.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import readonly
from harness import BUILD_DIR, VENV, build
from readonly import battery, differences, snapshot
from test_r2 import init_file, r2_path


class R2:
    """An ``r2 -q0`` session: each answer (r2's and its #!pipe children's) ends with NUL."""

    def __init__(self, argv: list[str], cwd: Path, init: Path) -> None:
        self.proc = subprocess.Popen(
            [r2_path(), "-N", "-e", "scr.color=0", "-e", "log.level=1", "-q0", *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=cwd, bufsize=0, env=dict(os.environ, LC_ALL="C.UTF-8"))
        self.pending = b""
        self._answer()
        for line in init.read_text().splitlines():  # (-i with -q0 quits after the script)
            self.cmd(line)

    def _answer(self) -> str:
        assert self.proc.stdout is not None
        data = self.pending
        deadline = time.time() + 120
        while b"\0" not in data:
            assert time.time() < deadline, data[-2000:]
            chunk = self.proc.stdout.read(65536)
            assert chunk, f"r2 exited: {data[-2000:]!r}"
            data += chunk
        answer, _, self.pending = data.partition(b"\0")
        return answer.decode("utf-8", "replace")

    def cmd(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        return self._answer()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def lines(text: str) -> list[str]:
    """What multiheap printed (r2's own log lines and terminal resets dropped)."""
    text = re.sub(r"\x1b\[[?0-9;]*[A-Za-z]", "", text)
    return [ln for ln in text.splitlines()
            if ln.strip() and not ln.startswith(("INFO:", "WARN:", "DEBUG:"))]


@pytest.fixture(scope="module")
def session():
    """victim under ``r2 -d`` with the aliases, stopped in checkpoint(): (r2, pid, dir)."""
    exe = build("victim")
    work = Path(tempfile.mkdtemp(prefix="mh-ro-r2-", dir=BUILD_DIR))
    ready = work / "ready.json"
    r2 = R2(["-d", str(exe), str(ready)], work, init_file())
    try:
        r2.cmd("db sym.checkpoint")
        r2.cmd("dc")
        pid = json.loads(ready.read_text())["pid"]
        yield r2, pid, work
    finally:
        r2.close()


# -- read-only ---------------------------------------------------------------------------
def test_battery_changes_nothing(session):
    r2, pid, _ = session
    before = snapshot(pid, r2.cmd("dr"))
    outputs = {}
    for arg in battery("rbx"):
        # quoted for r2's own parser (`nkeep|=1` would be r2's pipe): the text reaches
        # multiheap exactly as written here
        outputs[arg] = lines(r2.cmd(f"$ptchunk {shlex.quote(arg)}"))
    after = snapshot(pid, r2.cmd("dr"))
    assert differences(before, after) == []
    for arg, out in outputs.items():
        assert not any("Traceback" in ln for ln in out), (arg, out)
        errors = [ln for ln in out if ln.startswith("ptchunk:")]
        if errors or not out:
            assert len(out) == 1 and len(errors) == 1, (arg, out)
    for arg in ("nkeep=8", "nkeep++", "malloc(16)", "{reg}=0x4141".replace("{reg}", "rbx")):
        assert outputs[arg][0].startswith("ptchunk:"), (arg, outputs[arg])


# -- no shell: arguments are data -------------------------------------------------------
# Text r2's own parser passes on unchanged but which /bin/sh would run.  (r2 itself runs
# `$(..)` and backticks outside single quotes, and splits at `;` and redirects at `>`
# even inside some quotes:
# that is r2's syntax, applied to the line before any alias sees it.)
HOSTILE = [
    "\"'\"$(touch {d}/F1)\"'\"",
    "\"'\"`touch {d}/F2`\"'\"",
    "'$(touch {d}/F4)'",
    "\"'\"&&touch {d}/F5&&\"'\"",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_no_shell_runs_the_arguments(session, text):
    r2, _, work = session
    arg = text.format(d=work)
    out = lines(r2.cmd(f"$ptchunk 0x1 {arg}"))
    out += lines(r2.cmd(f"$ptmeta add 0x10 x{arg}"))
    made = work / re.findall(r"/(F\d)", arg)[0]
    assert not made.exists(), out
    tags = json.loads(lines(r2.cmd("$ptmeta list --json"))[-1])["tags"]
    got = [t["tag"] for t in tags if t["addr"] == 0x10]
    assert got == [" ".join(shlex.split("x" + arg))], (out, tags)  # ptmeta joins words


def test_arguments_arrive_intact(session):
    r2, _, _ = session
    for typed, tag in (("'a b;c|d'", "a b;c|d"), ("'x `z` @w ~v'", "x `z` @w ~v"),
                       ("'$(touch F)'", "$(touch F)"), ('"it\'s" two', "it's two")):
        out = lines(r2.cmd(f"$ptmeta add 0x20 {typed}"))
        doc = json.loads(lines(r2.cmd("$ptmeta list --json"))[-1])
        assert {"addr": 0x20, "tag": tag} in doc["tags"], (typed, out, doc)


def test_unbalanced_quote_is_our_usage_line(session):
    r2, _, _ = session
    for typed in ("0x10 'abc", '0x10 "abc'):
        out = lines(r2.cmd(f"$ptchunk {typed}"))
        assert len(out) == 1 and out[0].startswith("ptchunk:"), out
        assert "quotation" in out[0] and "Syntax error" not in out[0]


# -- state lasts for the r2 session --------------------------------------------------------
def test_tags_and_overrides_last(session):
    r2, _, _ = session
    r2.cmd("$ptmeta add 0x1230 victim")
    assert "victim" in r2.cmd("$ptmeta list")
    r2.cmd("$ptconfig --glibc 2.35")
    cfg = json.loads(lines(r2.cmd("$ptconfig --json"))[-1])
    assert cfg["glibc"] == "2.35" and cfg["version_how"] == "set with ptconfig", cfg
    assert "victim" in r2.cmd("$ptmeta list")  # one change does not lose the other
    r2.cmd("$ptconfig --reset")
    cfg = json.loads(lines(r2.cmd("$ptconfig --json"))[-1])
    assert cfg["version_how"] != "set with ptconfig", cfg
    assert "victim" in r2.cmd("$ptmeta list")


def test_state_is_this_sessions_only(session, tmp_path):
    r2, _, _ = session
    r2.cmd("$ptmeta add 0x4560 mine")
    other = R2([str(build("victim"))], tmp_path, init_file())
    try:
        assert "mine" not in other.cmd("$ptmeta list")
    finally:
        other.close()


# -- every flag r2 knows is an address --------------------------------------------------------
def _addr(r2: R2, expr: str) -> int:
    return int(lines(r2.cmd(f"?v {expr}"))[-1], 16)


@pytest.mark.parametrize("expr", ["obj.nkeep", "sym.checkpoint", "sym.main", "rsp",
                                  "obj.nkeep+16", "rsp+8", "rbx"])
def test_flags_and_registers_are_addresses(session, expr):
    r2, _, _ = session
    out = lines(r2.cmd(f"$ptchunk {expr} --json"))
    doc = json.loads(out[-1])
    assert "error" not in doc, out
    want = _addr(r2, expr)
    assert readonly.evaluated_address(doc) == want, (expr, out)


def test_minus_one_is_all_ones(session):
    r2, _, _ = session
    out = lines(r2.cmd("$ptchunk -1"))
    assert len(out) == 1 and "0xffffffffffffffff" in out[0], out


def test_unknown_flag_is_one_line(session):
    r2, _, _ = session
    out = lines(r2.cmd("$ptchunk obj.nosuch+8"))
    assert out == ["ptchunk: cannot evaluate 'obj.nosuch+8': r2 knows no register or "
                   "flag 'obj.nosuch'"], out


# -- r2's life is tied to the CLI's -------------------------------------------------------------
def test_r2_dies_with_a_killed_cli(tmp_path):
    exe = build("victim")
    victim = subprocess.Popen([str(exe), str(tmp_path / "ready.json"), "wait"],
                              stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if (tmp_path / "ready.json").exists():
                break
            time.sleep(0.05)
        rfd, wfd = os.pipe()  # the shell's stdin: held open, so it waits for commands
        cli = subprocess.Popen([str(VENV / "bin" / "multiheap"), "--backend", "r2",
                                "--pid", str(victim.pid)], stdin=rfd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(rfd)
        r2pid = None
        for _ in range(200):  # r2 attached: the victim is traced
            tracer = _status(victim.pid, "TracerPid")
            if tracer and tracer != "0":
                r2pid = int(tracer)
                break
            time.sleep(0.05)
        assert r2pid, "r2 never attached"
        time.sleep(0.5)
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        t0 = time.time()
        while time.time() - t0 < 1 and _status(r2pid, "State")[:1] not in ("", "Z"):
            time.sleep(0.02)
        assert _status(r2pid, "State")[:1] in ("", "Z"), "r2 outlived the CLI by 1 s"
        os.close(wfd)
        time.sleep(0.2)
        assert victim.poll() is None, "the process r2 attached to was killed"
        assert _status(victim.pid, "State")[:1] in ("S", "R")  # running, not stopped
        assert _status(victim.pid, "TracerPid") == "0"
    finally:
        victim.kill()
        victim.wait()


def _status(pid: int, key: str) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
