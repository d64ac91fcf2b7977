"""The views of issue 12: ptvis, symbols, colour, completion, help without a target.

tests/programs/vis.c holds every kind of list (tcache, fastbin, unsorted, smallbin,
largebin) and user data pointing at _IO_2_1_stdout_, a global, the stack and the heap;
it waits after checkpoint() and is gcore'd.  ptvis must label every listed chunk as
the program freed it, decode safe-linked fd, name the pointers, and give the same JSON
in the gdb plugin, the CLI's gdb/MI, lldb and r2.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from harness import BUILD_DIR, PLUGIN_GDB, VENV, build, gdb_env, require, waiting_program

CLI = str(VENV / "bin" / "multiheap")
ESC = re.compile(r"\x1b\[[0-9;]+m")  # real colour: digits (gdb's own bare ESC[m is not)


@pytest.fixture(scope="module")
def program():
    """vis waiting after checkpoint(), its gcore and its truth."""
    with waiting_program("vis", lambda t: [str(t), "wait"], marker="}\n") as running:
        yield running



def gdb_plugin(target: list[str], commands: list[str], env: dict | None = None) -> list[str]:
    """Each command's output in the gdb plugin (batch), in order."""
    argv = ["gdb", "-nx", "-batch", "-q", "-ex", "set pagination off", "-ex",
            "set width 0", "-ex", f"source {PLUGIN_GDB}", *target]
    for c in commands:
        argv += ["-ex", "echo ==MH==\\n", "-ex", c]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=240,
                          env=env or gdb_env())
    parts = proc.stdout.split("==MH==\n")[1:]
    assert len(parts) == len(commands), proc.stdout[-2000:] + proc.stderr[-2000:]
    return parts


def cli(backend: str, target: list[str], command: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "--backend", backend, *target, *command.split()],
                          capture_output=True, text=True, timeout=240)


def by_addr(doc: dict) -> dict[int, dict]:
    return {c["addr"]: c for c in doc["chunks"]}


def test_ptvis_labels_decoded_fd_and_symbols(program):
    """Every list kind labelled where the program put it; fd decoded; pointers named."""
    _exe, pid, _core, t = program
    doc_text, text = gdb_plugin(["-p", str(pid)], ["ptvis --all --json", "ptvis --all --raw"])
    doc = json.loads(doc_text.strip().splitlines()[0])
    chunks = by_addr(doc)
    mem = {c["mem"]: c for c in doc["chunks"]}
    for pos, m in enumerate(reversed(t["tcache30"])):  # freed last = head (#0)
        assert mem[m]["label"] == f"tcache[1] #{pos}"
    for pos, m in enumerate(reversed(t["tcache90"])):
        assert mem[m]["label"] == f"tcache[7] #{pos}"
    assert [mem[m]["label"] for m in t["fast30"]] == ["fastbin[1] #1", "fastbin[1] #0"]
    assert mem[t["small90"][0]]["label"] == "smallbin[9]"
    assert re.fullmatch(r"largebin\[\d+\]", mem[t["large"]]["label"])
    assert mem[t["unsorted"]]["label"] == "unsorted"
    assert doc["chunks"][-1]["label"] == "top" and doc["chunks"][-1]["state"] == "top"
    # safe-linked fd, decoded: each tcache entry points at the next one's user pointer
    heads = list(reversed(t["tcache30"]))
    for a, b in zip(heads, heads[1:]):
        c = mem[a]
        assert c["fd"] == b and c["fd_raw"] == b ^ (a >> 12)
    assert mem[t["fast30"][1]]["fd"] == t["fast30"][0] - 16  # fastbins link chunks
    # symbols: stdout, the global, the stack, the heap; bins point into main_arena
    names = {p["offset"]: p["symbol"] for p in mem[t["keep"][0]]["pointers"]}
    assert names[16] == "<_IO_2_1_stdout_>" and names[24] == "<target+0x10>"
    assert names[32] == "[stack]" and names[40] == "[heap]"
    small = {p["offset"]: p["symbol"] for p in mem[t["small90"][0]]["pointers"]}
    assert re.fullmatch(r"<main_arena\+0x[0-9a-f]+>", small[16]), small
    assert all(c["problems"] == [] for c in chunks.values())
    # the text shows the same, decoded fd with its stored value on demand, zeros folded
    for label in ("tcache[1] #0", "fastbin[1] #1", "smallbin[9]", "unsorted", "largebin[",
                  "<_IO_2_1_stdout_>", "<target+0x10>", "[stack]", "zero bytes", "top"):
        assert label in text, label
    head = mem[heads[0]]
    assert f"raw={head['fd_raw']:#x}" in text and "fd (decoded)" in text
    assert not ESC.search(text)


def test_ptvis_same_json_in_every_host(program):
    """gdb plugin, gdb/MI, lldb and r2 on the core: one ptvis document."""
    exe, _pid, core, _t = program
    cmd = "ptvis --all --json"
    docs = {"gdb": json.loads(gdb_plugin([str(exe), "-ex", f"core-file {core}"], [cmd])[0]
                              .strip().splitlines()[0])}
    for backend in ("gdb-mi", "lldb", "r2"):
        res = cli(backend, ["--core", str(core), "--exe", str(exe)], cmd)
        assert res.returncode == 0, f"{backend}: {res.stderr[-2000:]}"
        docs[backend] = json.loads(res.stdout)
    symbols = {p["symbol"] for c in docs["gdb"]["chunks"] for p in c["pointers"]}
    assert "<_IO_2_1_stdout_>" in symbols and "<target+0x10>" in symbols
    for backend in ("gdb-mi", "lldb", "r2"):
        assert docs[backend] == docs["gdb"], backend


def test_ptvis_from_user_pointer_and_count(program):
    _exe, pid, _core, t = program
    doc = json.loads(cli("gdb-mi", ["--pid", str(pid)],
                         f"ptvis {t['keep'][0]:#x} -c 2 --json").stdout)
    assert [c["mem"] for c in doc["chunks"]][0] == t["keep"][0] and len(doc["chunks"]) == 2
    assert any("-m assumed" in n["message"] for n in doc["notes"])


def _pty_gdb(exe: Path, pid: int, lines: list[str], env: dict) -> str:
    """gdb on a pseudo-terminal (not batch: styling on), running ``lines``."""
    require("script")
    work = Path(tempfile.mkdtemp(prefix="mh-pty-", dir=BUILD_DIR))
    cmds = work / "cmds"
    cmds.write_text("\n".join(["set pagination off", "set width 0", "set confirm off",
                               f"source {PLUGIN_GDB}", f"attach {pid}", *lines,
                               "detach", "quit"]) + "\n")
    proc = subprocess.run(["script", "-qec", f"gdb -q -nx -x {cmds} {exe}", "/dev/null"],
                          capture_output=True, text=True, timeout=240, env=env,
                          stdin=subprocess.DEVNULL)
    return proc.stdout


def _between(text: str, a: str, b: str) -> str:
    return text.split(a, 1)[1].split(b, 1)[0] if a in text else ""


def test_colour_on_a_terminal_only(program, tmp_path):
    """Colour on a terminal; none through pipe, set logging, batch or NO_COLOR."""
    exe, pid, _core, _t = program
    log = tmp_path / "gdb.log"
    out = _pty_gdb(exe, pid, [
        "echo ==TTY==\\n", "ptlist -c 3", "ptvis -c 2", "echo ==PIPE==\\n",
        "pipe ptlist -c 3 | cat", "pipe ptvis -c 2 | cat", "echo ==LOG==\\n",
        f"set logging file {log}", "set logging overwrite on", "set logging enabled on",
        "ptlist -c 3", "set logging enabled off", "echo ==END==\\n"], gdb_env())
    tty = _between(out, "==TTY==", "==PIPE==")
    piped = _between(out, "==PIPE==", "==LOG==")
    logged = _between(out, "==LOG==", "==END==")
    assert "inuse" in tty and ESC.search(tty), out[-3000:]
    assert "inuse" in piped and not ESC.search(piped), piped
    assert "inuse" in logged and not ESC.search(logged), logged
    assert "inuse" in log.read_text() and not ESC.search(log.read_text())
    no = _pty_gdb(exe, pid, ["echo ==TTY==\\n", "ptlist -c 3", "echo ==END==\\n"],
                  dict(gdb_env(), NO_COLOR="1"))
    assert "inuse" in _between(no, "==TTY==", "==END==") and not ESC.search(
        _between(no, "==TTY==", "==END=="))
    batch = gdb_plugin(["-p", str(pid)], ["ptlist -c 3"])[0]
    assert "inuse" in batch and not ESC.search(batch)


def test_gdb_completion(program):
    """Addresses complete as gdb's expressions, options from the parser."""
    _exe, pid, _core, _t = program
    kee, js, opts = gdb_plugin(["-p", str(pid)], ["complete ptchunk kee",
                                                  "complete ptchunk --js",
                                                  "complete ptvis --"])
    assert "ptchunk keep" in kee.splitlines()
    assert js.splitlines() == ["ptchunk --json"]
    assert {"ptvis --all", "ptvis --raw", "ptvis --json"} <= set(opts.splitlines())


@pytest.mark.parametrize("argv", [["pthelp"], ["ptchunk", "-h"], ["ptvis", "--help"],
                                  ["ptchunk", "-h", "--json"]])
def test_help_without_a_target(argv):
    res = subprocess.run([CLI, *argv], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    if "--json" in argv:
        assert json.loads(res.stdout)["help"].startswith("usage: ptchunk")
    elif argv == ["pthelp"]:
        assert "ptvis" in res.stdout and "ptchunk" in res.stdout
    else:
        assert res.stdout.startswith(f"usage: {argv[0]}")
        assert "\n    " not in res.stdout.split("\n\n")[1]  # no leftover indentation


def test_unknown_backend_lists_the_known():
    res = subprocess.run([CLI, "--backend", "foo", "pthelp"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2
    assert "unknown backend 'foo'" in res.stderr and "gdb-mi" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_no_colour_codes_in_cli_pipe(program):
    _exe, pid, _core, _t = program
    res = cli("gdb-mi", ["--pid", str(pid)], "ptvis -c 3")
    assert res.returncode == 0 and "size=" in res.stdout and not ESC.search(res.stdout)


@pytest.mark.parametrize("host", ["gdb", "gdb-mi", "lldb", "r2"])
def test_ptchunk_on_a_user_pointer(program, host):
    """``ptchunk keep[0]`` without -m shows keep[0]'s chunk and says -m was assumed;
    a real chunk address gets no such note (failed before: 'mmapped size=0x...')."""
    exe, _pid, core, t = program
    user = "keep[0]" if host in ("gdb", "gdb-mi") else f"{t['keep'][0]:#x}"
    chunk = t["tcache30"][0] - 16
    cmds = [f"ptchunk {user} --json", f"ptchunk {chunk:#x} --json", f"ptchunk {user}"]
    if host == "gdb":
        outs = gdb_plugin([str(exe), "-ex", f"core-file {core}"], cmds)
    else:
        outs = []
        for c in cmds:
            res = cli(host, ["--core", str(core), "--exe", str(exe)], c)
            assert res.returncode == 0, res.stderr
            outs.append(res.stdout)
    doc, plain, text = json.loads(outs[0]), json.loads(outs[1]), outs[2]
    assert doc["chunks"][0]["addr"] == t["keep"][0] - 16
    assert doc["chunks"][0]["state"] == "inuse" and doc["chunks"][0]["size"] == 0x50
    assert any("-m assumed" in n["message"] for n in doc["notes"])
    assert plain["chunks"][0]["addr"] == chunk and "notes" not in plain
    assert "-m assumed" in text and "size=0x50" in text


def test_readme_command_table_is_true():
    """Each command has a row in README's table naming every option it takes (one of
    the option's spellings) and every positional argument."""
    import multiheap.commands  # noqa: F401  (registers every command)
    from multiheap.commands.base import COMMANDS

    rows = {}
    for line in (Path(__file__).resolve().parent.parent / "README.md").read_text() \
            .split("\n## Commands", 1)[1].splitlines():
        for name in re.findall(r"`(pt\w+)", line.split(" | ")[0]) if line.startswith("|") \
                else ():
            rows[name] = line.split(" | ")[0]
    missing = []
    for name, cmd in COMMANDS.items():
        row = rows.get(name)
        if row is None:
            missing.append(f"{name}: no row")
            continue
        for action in cmd.parser._actions:
            spelled = action.option_strings or list(action.choices or ()) or \
                (action.metavar or action.dest).split("|")
            if "--json" in spelled or "-h" in spelled:
                continue
            if not any(re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", row)
                       for s in spelled):
                missing.append(f"{name}: {'/'.join(spelled)}")
    assert not missing, missing


_LLDB_COMPLETE = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import lldb
dbg = lldb.SBDebugger.Create(False)
ci = dbg.GetCommandInterpreter()
r = lldb.SBCommandReturnObject()
ci.HandleCommand("command script import " + sys.argv[2], r)
dbg.CreateTarget(sys.argv[3]).LoadCore(sys.argv[4])
out = {}
for line in sys.argv[5:]:
    m = lldb.SBStringList()
    ci.HandleCompletion(line, len(line), 0, -1, m)
    out[line] = [m.GetStringAtIndex(i) for i in range(1, m.GetSize())]
print(json.dumps(out))
'''


def test_lldb_completes_command_names(program, tmp_path):
    """lldb's completion API (SBCommandInterpreter.HandleCompletion) offers our commands;
    lldb 16 has no hook for a Python command's arguments (docs/lldb.md)."""
    require("lldb-16")
    exe, _pid, core, _t = program
    lldb_path = subprocess.run(["lldb-16", "-P"], capture_output=True, text=True,
                               check=True).stdout.strip()
    script = tmp_path / "complete.py"
    script.write_text(_LLDB_COMPLETE)
    proc = subprocess.run(["/usr/bin/python3", str(script), lldb_path,
                           str(PLUGIN_GDB.parent / "lldb.py"), str(exe), str(core),
                           "ptch", "ptv", "pthe"], capture_output=True, text=True,
                          timeout=120, env=dict(gdb_env()))
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(got["ptch"]) == ["ptcheck", "ptchunk"], got
    assert got["ptv"] == ["ptvis"] and got["pthe"] == ["pthelp"], got


def test_text_for_a_new_user(program, tmp_path):
    """Text polish as a new user meets it: 80 columns, one tag per line, mallinfo2 worded
    for a core, hex for a damaged mp_ count, and a word before the first malloc."""
    exe, _pid, core, t = program
    keep = t["keep"][0]
    stats, arenas, _add, tags = gdb_plugin([str(exe), str(core)], [
        "ptstats", "ptarena -l", f"ptmeta add {keep:#x} victim", "ptmeta list"])
    for text in (stats, arenas):
        assert max(len(ln) for ln in text.splitlines()) <= 80, text
    assert "as glibc's mallinfo2() would have reported" in stats and "target's" not in stats
    assert tags.splitlines() == ["1 tag", f"  {keep:#x}: victim"], tags
    damaged = build("mp_corrupt")
    param, = gdb_plugin(["-ex", "break checkpoint", "-ex", f"run stop {tmp_path / 'm.json'}",
                         str(damaged)], ["ptparam"])
    assert "tcache_bins: 0x7fffffff0000" in param, param
    lazy = build("lazy")
    before, = gdb_plugin(["-ex", "break checkpoint", "-ex", f"run early {tmp_path / 'l.json'}",
                          str(lazy)], ["ptlist"])
    assert "not initialised" in before and "count" not in before, before
