"""radare2: the ``$pt*`` aliases inside ``r2 -d`` and on a core, and ``--backend r2``.

The aliases are exactly what ``multiheap init r2`` prints.  On the core gdb's gcore
made, every command's JSON must equal gdb's; live (r2 debugging the single-threaded
scenario, stopped in checkpoint()), ptstats must equal the program's own mallinfo2
and the free lists exactly the chunks it freed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import JSON_COMMANDS
from harness import BUILD_DIR, VENV, Truth, build, check_frees_found_once

ROOT = Path(__file__).resolve().parent.parent
MARK = "==MH-NEXT=="


def r2_path() -> str:
    for cand in (VENV / "bin" / "r2", Path("/opt/multiheap-r2/bin/r2")):
        if cand.exists():
            return str(cand)
    raise RuntimeError("radare2 is not installed: run `bash scripts/setup.sh --tests`")


def init_file() -> Path:
    """The ~/.radare2rc lines from ``multiheap init r2``, as a script for ``r2 -i``."""
    out = subprocess.run([str(VENV / "bin" / "multiheap"), "init", "r2"],
                         capture_output=True, text=True, check=True).stdout
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    path = BUILD_DIR / "r2-init.r2"
    path.write_text(out)
    return path


def run_r2(target_args: list[str], commands: list[str], *, debug: bool,
           pre: tuple[str, ...] = (), timeout: float = 240) -> dict[str, str]:
    """Run r2 with the aliases on ``target_args``; each command's output (stdout+stderr)."""
    argv = [r2_path(), "-N", "-q", "-e", "scr.color=0", "-i", str(init_file())]
    argv += ["-d"] if debug else []
    for c in pre:
        argv += ["-c", c]
    for c in commands:
        argv += ["-c", f"?e {MARK}", "-c", "$" + c]
    argv += ["-c", f"?e {MARK}", "-c", "?e r2-still-alive"]
    proc = subprocess.run(argv + target_args, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=dict(os.environ, LC_ALL="C.UTF-8"))
    # r2 runs each #!pipe child to its end before the next command, so a command's
    # stdout and stderr both come before the next marker; r2's own INFO/WARN lines
    # (and its ERROR lines about the markers' neighbours) are dropped.
    text = "\n".join(ln for ln in proc.stdout.splitlines()
                     if not re.match(r"(INFO|WARN|ERROR|DEBUG):", ln)) + "\n"
    parts = text.split(MARK + "\n")
    assert len(parts) == len(commands) + 2, proc.stdout[-3000:]
    assert parts[-1].strip().endswith("r2-still-alive")
    out = {c: parts[i + 1] for i, c in enumerate(commands)}
    return out


def _one_json(text: str) -> dict:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text[:2000]
    return json.loads(lines[0])


# -- fixtures -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def r2_live():
    """The basic scenario under ``r2 -d``, stopped in checkpoint(): (outputs, truth)."""
    exe = build("scenario")
    work = Path(tempfile.mkdtemp(prefix="mh-r2-", dir=BUILD_DIR))
    truth_path = work / "truth.json"
    cmds = JSON_COMMANDS + ["ptstats", "ptchunk 0x10", "ptchunk nosuch+", "ptbin -i x",
                            "ptchunk rsp"]
    out = run_r2([str(exe), "basic", str(truth_path)], cmds, debug=True,
                 pre=("db sym.checkpoint", "dc"))
    return out, Truth.load(truth_path)


@pytest.fixture(scope="module")
def r2_core(basic):
    """r2 on the core gdb made of the basic scenario; gdb's own run on that core."""
    live, dead = basic
    assert live.core is not None and live.core.exists()
    return run_r2([str(live.core)], JSON_COMMANDS + ["ptstats"], debug=False), dead


# -- the core: equal to gdb ------------------------------------------------------------
def _comparable(cmd: str, doc: dict) -> dict:
    """Drop what legitimately differs between hosts (adapter name, how things were found)."""
    doc = json.loads(json.dumps(doc))
    if cmd.startswith("ptconfig"):
        doc.pop("adapter", None)
        doc.pop("version_how", None)  # the host's name for libc (/lib or /usr/lib)
        doc.pop("routes", None)  # which routes each host tried (its own debug info or not)
        for s in doc.get("structures", {}).values():
            s.pop("how", None)
            s.pop("rejected", None)
    return doc


@pytest.mark.parametrize("cmd", JSON_COMMANDS)
def test_core_json_equals_gdb(r2_core, cmd):
    out, gdb_run = r2_core
    assert _comparable(cmd, _one_json(out[cmd])) == _comparable(cmd, gdb_run.json(cmd))


def test_core_config_says_how(r2_core):
    out, _ = r2_core
    cfg = _one_json(out["ptconfig --json"])
    assert cfg["adapter"] == "r2" and cfg["state"] == "core"
    assert "libc debug file" in cfg["structures"]["main_arena"]["how"] or \
        cfg["structures"]["main_arena"]["how"].startswith("debug info")


def test_core_mallinfo2(r2_core):
    out, gdb_run = r2_core
    assert _one_json(out["ptstats --json"])["mallinfo2"] == gdb_run.truth.mallinfo2


# -- live under r2 -d --------------------------------------------------------------------
def test_live_commands_all_answer(r2_live):
    out, _ = r2_live
    for cmd in JSON_COMMANDS:
        doc = _one_json(out[cmd])
        assert doc.get("command") == cmd.split()[0], doc
    assert not any("Traceback" in v for v in out.values())


def test_live_mallinfo2_equals_the_targets_own(r2_live):
    out, truth = r2_live
    assert _one_json(out["ptstats --json"])["mallinfo2"] == truth.mallinfo2
    assert "mallinfo2" in out["ptstats"]


def test_live_config(r2_live):
    out, truth = r2_live
    cfg = _one_json(out["ptconfig --json"])
    assert cfg["adapter"] == "r2" and cfg["state"] == "live"
    assert cfg["glibc"] == truth.glibc and cfg["pointer_size"] == truth.pointer_size
    tc = cfg["structures"]["tcache"]
    assert tc["threads_found"] == tc["threads"] == 1


def test_live_free_lists_are_the_programs_frees(r2_live):
    out, t = r2_live
    check_frees_found_once(_one_json(out["ptfree --json"]), t)


def test_live_arenas_match_malloc_info(r2_live):
    out, t = r2_live
    arenas = _one_json(out["ptarena -l --json"])["arenas"]
    assert [a["system_mem"] for a in arenas] == [a.system_current for a in t.arenas]


# -- bad input: one line, no traceback, r2 still usable ----------------------------------
def test_bad_input_is_one_clear_line(r2_live):
    out, _ = r2_live
    for cmd, words in (("ptchunk 0x10", "0x10"), ("ptchunk nosuch+", "nosuch"),
                       ("ptbin -i x", "not a whole number")):
        lines = [ln for ln in out[cmd].splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(cmd.split()[0] + ":"), out[cmd]
        assert words in lines[0]
    assert not any("Traceback" in v for v in out.values())


def test_address_is_an_r2_expression(r2_live):
    out, _ = r2_live
    # rsp is on the stack, not in a heap: the answer names the evaluated address
    text = out["ptchunk rsp"]
    assert re.search(r"0x7ff[0-9a-f]+", text), text


def test_no_process(tmp_path):
    out = run_r2([sys.executable], ["ptstats"], debug=False)
    lines = [ln for ln in out["ptstats"].splitlines() if ln.strip()]
    assert len(lines) == 1 and "ptstats:" in lines[0], out


# -- the CLI's --backend r2 -------------------------------------------------------------
def test_cli_backend_r2_on_core(basic):
    live, dead = basic
    p = subprocess.run([str(VENV / "bin" / "multiheap"), "--backend", "r2", "--core",
                        str(live.core), "ptstats", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert _one_json(p.stdout) == dead.json("ptstats --json")


def test_init_r2_defines_every_command():
    from multiheap.commands import COMMANDS

    text = init_file().read_text()
    for name in COMMANDS:
        # raw alias ('), the user's text only a shell comment after "; exit #"
        assert re.search(rf'^"\${name}=\'#!pipe \S+python\S* -m multiheap\.plugins\.r2 '
                         rf'--alias {name}; exit #"$', text, re.M), name
