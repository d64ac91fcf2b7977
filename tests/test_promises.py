"""The small promises, in every host: bad input is one line and exit 2, ``--json`` is
always one JSON document, a refused override is not kept, negative numbers mean the
same everywhere, huge arguments are not echoed whole, ``init --install`` is careful.

Each host runs the same commands on the same core of tests/programs/victim.c: the
gdb plugin, and the CLI with each backend (gdb-mi, lldb, r2).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest
from harness import BUILD_DIR, PLUGIN_GDB, VENV, build, gdb_env
from test_cli import assert_gone, cli_env

CLI = VENV / "bin" / "multiheap"
BACKENDS = ["gdb-mi", "lldb", "r2"]
HUGE = "x" * 5000


@pytest.fixture(scope="module")
def victim_core(tmp_path_factory) -> tuple[Path, Path]:
    """(exe, core) of victim stopped in checkpoint()."""
    exe = build("victim")
    work = tmp_path_factory.mktemp("promises")
    core = work / "victim.core"
    subprocess.run(["gdb", "-nx", "-batch", "-q", "-ex", "break checkpoint",
                    "-ex", f"run {work / 'ready.json'}", "-ex", f"gcore {core}", str(exe)],
                   check=True, capture_output=True, timeout=120)
    assert core.exists()
    return exe, core


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    tag = uuid.uuid4().hex
    p = subprocess.run([str(CLI), *args], input=stdin, capture_output=True, text=True,
                       timeout=180, env=cli_env(tag))
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert_gone(tag)
    return p


def gdb_plugin(exe: Path, core: Path, commands: list[str]) -> list[tuple[str, str]]:
    """(output, error) of each command in the gdb plugin, on ``core``."""
    script = ["import gdb, json", "out = []"]
    for c in commands:
        script += ["try:", f"    out.append((gdb.execute({c!r}, to_string=True), ''))",
                   "except gdb.error as e:", "    out.append(('', str(e)))"]
    script.append("print('RESULT ' + json.dumps(out))")
    py = BUILD_DIR / f"promises-{uuid.uuid4().hex}.py"
    py.write_text("\n".join(script) + "\n")
    p = subprocess.run(["gdb", "-nx", "-batch", "-q", "-ex", "set style enabled off",
                        "-ex", f"source {PLUGIN_GDB}", "-ex", f"file {exe}",
                        "-ex", f"core-file {core}", "-x", str(py)],
                       capture_output=True, text=True, timeout=180, env=gdb_env())
    py.unlink()
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT "))
    return [tuple(x) for x in json.loads(line[7:])]


def gdb_one(exe: Path, core: Path, command: str) -> tuple[str, str]:
    """(stdout, stderr) of one command typed in the gdb plugin, on ``core``."""
    p = subprocess.run(["gdb", "-nx", "-batch", "-q", "-ex", "set style enabled off",
                        "-ex", f"source {PLUGIN_GDB}", "-ex", f"file {exe}",
                        "-ex", f"core-file {core}", "-ex", command],
                       capture_output=True, text=True, timeout=180, env=gdb_env())
    return p.stdout, p.stderr


def one_line_usage(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("multiheap: "), p.stderr
    return lines[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_numbers_are_usage_errors_in_every_backend(victim_core, backend):
    _exe, core = victim_core
    for args, words in ((["ptlist", "-c", "99999999999999999999"], "out of range"),
                        (["ptchunk", "0x10", "-c", "-5"], "out of range"),
                        (["ptbin", "-i", "99999999999999999999999"], "out of range"),
                        (["pttcache", "-t", "x"], "not a whole number")):
        line = one_line_usage(cli("--backend", backend, "--core", str(core), *args))
        assert words in line and "internal error" not in line, line
        assert p_is_empty(cli("--backend", backend, "--core", str(core), *args).stdout)


def p_is_empty(text: str) -> bool:
    return text == ""


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_is_one_document_for_every_outcome(victim_core, backend):
    _exe, core = victim_core
    base = ["--backend", backend, "--core", str(core)]
    cases = [(["ptchunk", "--json", "--bogus"], "error"),     # argparse error
             (["ptlist", "-c", "1e99", "--json"], "error"),   # bad value
             (["ptchunk", "--json", "0x10"], "error"),        # command error
             (["ptchunk", "--json", "-h"], "help"),           # help
             (["ptstats", "--json"], "mallinfo2")]            # success
    for args, key in cases:
        p = cli(*base, *args)
        assert p.stdout.count("\n") == 1, (args, p.stdout[:300])
        doc = json.loads(p.stdout)
        assert key in doc and doc.get("command") == args[0], (args, doc)
        if key == "error":
            assert p.returncode == 2 and doc["error"] in p.stderr
    # an error before the command ran (unusable core) is one JSON document too
    p = cli("--backend", backend, "--core", "/nonexistent.core", "ptstats", "--json")
    assert p.returncode == 2 and "/nonexistent.core" in json.loads(p.stdout)["error"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_values_mean_the_same_everywhere(victim_core, backend):
    _exe, core = victim_core
    base = ["--backend", backend, "--core", str(core)]
    line = one_line_usage(cli(*base, "ptchunk", "-1"))
    assert "0xffffffffffffffff" in line, line
    eq = cli(*base, "ptconfig", "--tcache-offset=-0x48", "--json")
    sp = cli(*base, "ptconfig", "--tcache-offset", "-0x48", "--json")
    assert eq.returncode == 0 and sp.returncode == 0, (eq.stderr, sp.stderr)
    assert json.loads(eq.stdout) == json.loads(sp.stdout)
    assert json.loads(sp.stdout)["structures"]["tcache"]["how"] == "thread pointer -0x48"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_refused_override_is_not_kept(victim_core, backend):
    _exe, core = victim_core
    p = cli("--backend", backend, "--core", str(core),
            stdin="ptconfig --main-arena 0xdead0000\nptconfig --mp 0x1000\nptstats --json\n")
    errors = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(errors) == 2 and all("override not kept" in e for e in errors), p.stderr
    doc = json.loads(p.stdout.strip().splitlines()[-1])
    assert doc["command"] == "ptstats" and doc["mallinfo2"]["uordblks"] > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_arguments_are_not_echoed_whole(victim_core, backend):
    _exe, core = victim_core
    for arg in (HUGE, " ".join(["keep"] * 1000), "keep+" * 1000 + "1"):
        line = one_line_usage(cli("--backend", backend, "--core", str(core), "ptchunk", arg))
        assert len(line) < 400, (arg[:20], line)


def test_the_gdb_plugin_keeps_the_same_promises(victim_core):
    exe, core = victim_core
    res = gdb_plugin(exe, core, [
        "ptlist -c 99999999999999999999", "ptchunk -1", f"ptchunk {HUGE}",
        "ptconfig --main-arena 0xdead0000", "ptstats --json",
        "ptchunk --json -h", "ptconfig --tcache-offset -0x48 --json"])
    (_, e_count), (_, e_neg), (_, e_huge), (_, e_ovr), (stats, _), \
        (help_doc, _), (cfg, e_cfg) = res
    assert "out of range" in e_count and "\n" not in e_count.strip()
    assert "0xffffffffffffffff" in e_neg
    assert len(e_huge) < 400
    assert "override not kept" in e_ovr
    assert json.loads(stats)["mallinfo2"]["uordblks"] > 0  # the refused override is gone
    for bad in ("ptchunk --json --bogus", "ptchunk 0x10 --json"):  # typed at the prompt
        out, err = gdb_one(exe, core, bad)
        json_lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        assert len(json_lines) == 1 and json.loads(json_lines[0])["error"] in err, (out, err)
    assert "usage: ptchunk" in json.loads(help_doc)["help"]
    assert not e_cfg and json.loads(cfg)["structures"]["tcache"]["how"] == "thread pointer -0x48"


def test_image_backend_is_refused_in_one_line(victim_core):
    _exe, core = victim_core
    line = one_line_usage(cli("--backend", "image", "--core", str(core), "ptstats"))
    assert "memory image built in Python" in line
    line = one_line_usage(cli("--backend", "foo", "ptstats"))
    assert "unknown backend 'foo'" in line and "gdb-mi, lldb, r2" in line


def test_init_install_reads_only_active_lines_and_needs_a_home(tmp_path):
    def install(env: dict) -> subprocess.CompletedProcess:
        return subprocess.run([str(CLI), "init", "gdb", "--install"], env=env,
                              capture_output=True, text=True, timeout=60)

    lines = subprocess.run([str(CLI), "init", "gdb"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    rc = tmp_path / ".gdbinit"
    rc.write_text("".join(f"# {ln}\n" for ln in lines))  # commented out: not loading
    env = dict(os.environ, HOME=str(tmp_path))
    p = install(env)
    assert p.returncode == 0 and "added" in p.stderr, p.stderr
    assert rc.read_text().count("\n" + lines[-1] + "\n") == 1
    p = install(env)
    assert p.returncode == 0 and "already loads" in p.stderr
    for home in (None, str(rc), str(tmp_path / "missing")):
        env = {k: v for k, v in os.environ.items() if k != "HOME"}
        if home is not None:
            env["HOME"] = home
        p = install(env)
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
        assert "cannot install: HOME is" in p.stderr
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("to_file", [False, True], ids=["pipe", "file"])
def test_run_gives_the_program_our_stdio(backend, to_file, tmp_path):
    """--run: the program reads our stdin and writes to our stdout and stderr (a pipe,
    or a regular file: then its output comes before ours, nothing overwritten)."""
    exe = build("talker")
    tag = uuid.uuid4().hex
    out_path = tmp_path / "out.txt"
    with open(out_path, "w") as out_file:
        p = subprocess.run([str(CLI), "--backend", backend, "--run", str(exe), "--break",
                            "checkpoint", "ptstats", "--json"], input="hello\n",
                           stdout=out_file if to_file else subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=180, env=cli_env(tag))
    assert_gone(tag)
    assert p.returncode == 0, p.stderr
    out = out_path.read_text() if to_file else p.stdout
    lines = out.splitlines()
    assert lines[0].startswith("talker stdout 0x") and lines[1] == "talker read hello", out
    assert json.loads(lines[2])["command"] == "ptstats" and len(lines) == 3
    assert "talker stderr" in p.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_while_the_program_runs_leaves_nothing(backend):
    """The program gets our environment and waits on its stdin (ours: a pipe we never
    write): SIGTERM ends us, the debugger and the program within seconds."""
    import signal
    import time

    exe = build("talker")
    tag = uuid.uuid4().hex
    proc = subprocess.Popen([str(CLI), "--backend", backend, "--run", str(exe), "--break",
                             "checkpoint", "ptstats"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(tag))
    try:
        deadline = time.monotonic() + 60
        started = False
        while not started and time.monotonic() < deadline:
            # the program runs, and with our environment (it carries the tag)
            started = any(_cmdline(pid).startswith(str(exe)) for pid in _tagged(tag))
            time.sleep(0.1)
        assert started, "the program never ran with the user's environment"
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.communicate()
    assert_gone(tag)


def _tagged(tag: str) -> list[int]:
    from test_cli import tagged_pids

    return tagged_pids(tag)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_passes_arguments_as_data(backend, tmp_path):
    """--run 'PROG ARGS': each argument arrives as quoted, no shell runs any of it; r2 6,
    which would add backslashes to blanks and quotes, refuses such arguments in one line."""
    exe = build("echoargs")
    flag = tmp_path / "ran"
    plain = ["plain", f"$(touch${{IFS}}{flag})", f"`touch {flag}`".replace(" ", ""), "a;b|c"]
    odd = ["two words", "it's", 'a"b', "back\\slash"]
    tag = uuid.uuid4().hex
    for args in (plain, plain + odd):
        run = " ".join([str(exe), *(shlex.quote(a) for a in args)])
        p = subprocess.run([str(CLI), "--backend", backend, "--run", run, "--break",
                            "checkpoint", "ptstats", "--json"], capture_output=True, text=True,
                           timeout=180, env=cli_env(tag, MULTIHEAP_ECHO="x y"))
        assert_gone(tag)
        assert "Traceback" not in p.stderr
        if backend == "r2" and args is not plain:
            line = one_line_usage(p)
            assert "cannot pass 'two words'" in line
            continue
        assert p.returncode == 0, p.stderr
        first = p.stdout.splitlines()[0]
        assert first == "".join(f"[{a}]" for a in args) + " env=x y", first
    assert not flag.exists()
