"""``multiheap triage``: many real core files at once, on a LocalCluster and on a real
``dask scheduler`` + ``dask worker`` started here.

Cores are made at test time from tests/programs/triage_bugs.c: real crashes dumped by
the kernel (core_pattern names a file: RLIMIT_CORE is raised in the child), and gcore of
processes that stopped themselves.  When core_pattern is a pipe handler the crash is
instead caught by gdb (``run``, then ``gcore`` at the signal), which writes the same
notes (NT_SIGINFO) and stack.  Every row's ptconfig, ptstats and ptcheck documents must
equal what ``multiheap --core CORE ptX --json`` prints.  Every run checks that no
process it started (worker, analysis child, debugger) is left behind.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from harness import VENV, build

from multiheap.triage.analyse import descendants
from multiheap.triage.table import parquet_record

MULTIHEAP = str(VENV / "bin" / "multiheap")
DASK = str(VENV / "bin" / "dask")
# core name -> (mode, seed, how): "crash" (kernel core of a real crash) or "gcore"
CORES = {
    "df1": ("double-free", 1, "crash"),
    "df2": ("double-free", 2, "crash"),
    "oc1": ("overflow-crash", 1, "crash"),
    "oc2": ("overflow-crash", 3, "crash"),
    "segv1": ("segv", 1, "crash"),
    "healthy1": ("healthy", 1, "gcore"),
    "over1": ("overflow", 2, "gcore"),
}


LASTING = 0.5  # s: a worker or an analysis lasts longer; a `uname -p` does not


def _started(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), None if it is gone or a zombie:
    with it a PID reused by another process is not taken for ours."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _alive(pid: int, started: int | None = None) -> bool:
    now = _started(pid)
    return now is not None and (started is None or now == started)


def _core_pattern_is_file() -> bool:
    with open("/proc/sys/kernel/core_pattern") as f:
        return not f.read().strip().startswith("|")


def _unlimited_core() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def crash_core(prog: Path, mode: str, seed: int, dest: Path) -> None:
    """A real crash's core: the kernel's if core_pattern names a file, else gdb's."""
    work = dest.parent / f"{dest.name}.d"
    work.mkdir()
    if _core_pattern_is_file():
        p = subprocess.run([str(prog), mode, str(seed)], cwd=work, preexec_fn=_unlimited_core,
                           capture_output=True)
        assert p.returncode < 0 or p.returncode > 128, (mode, p.returncode)
        made = [f for f in work.iterdir() if f.name.startswith("core")]
        if made:
            made[0].replace(dest)
            shutil.rmtree(work)
            return
    subprocess.run(["gdb", "-nx", "-batch", "-ex", "run", "-ex", f"gcore {dest}",
                    "--args", str(prog), mode, str(seed)], cwd=work, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(work)
    assert dest.exists()


def gcore_core(prog: Path, mode: str, seed: int, dest: Path) -> None:
    """gcore of the program stopped by its own SIGSTOP."""
    p = subprocess.Popen([str(prog), mode, str(seed)], stdout=subprocess.PIPE)
    try:
        line = p.stdout.readline().decode()  # type: ignore[union-attr]
        assert line.startswith("ready"), line
        for _ in range(200):
            with open(f"/proc/{p.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "T":
                    break
            time.sleep(0.01)
        subprocess.run(["gcore", "-o", str(dest), str(p.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        Path(f"{dest}.{p.pid}").replace(dest)
    finally:
        p.kill()
        p.wait()


@pytest.fixture(scope="module")
def prog() -> Path:
    return build("triage_bugs")


@pytest.fixture(scope="module")
def cores(prog, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cores")
    out = {}
    for name, (mode, seed, how) in CORES.items():
        dest = d / f"{name}.core"
        (crash_core if how == "crash" else gcore_core)(prog, mode, seed, dest)
        out[name] = dest
    data = out["healthy1"].read_bytes()
    out["trunc"] = d / "trunc.core"
    out["trunc"].write_bytes(data[:len(data) // 3])
    return out


def run_triage(args: list[str], env: dict | None = None, interrupt_when=None,
               timeout: float = 120, local: bool = True) -> subprocess.CompletedProcess:
    """Run ``multiheap triage ARGS``; watch every process it starts, and check that
    none is left once it has exited.  ``interrupt_when(descendant cmdlines)``: send
    Ctrl-C (SIGINT to its process group, as a terminal does) once it returns True.
    ``local``: whether triage itself runs the analyses, so that processes it started
    last (a LocalCluster's workers, analysis children, debuggers); with a scheduler of
    its own, nothing it started may last (a flash like the ``uname -p`` that
    distributed's Client runs through ``platform`` on connecting is not a worker)."""
    p = subprocess.Popen([MULTIHEAP, "triage", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True,
                         env={**os.environ, **(env or {})})
    seen: dict[int, int | None] = {}  # pid -> its start time
    first_seen: dict[int, float] = {}
    lasting: set[int] = set()  # still there LASTING s after it was first seen
    deadline = time.monotonic() + timeout
    interrupted = False
    while p.poll() is None:
        kids = descendants(p.pid)
        now = time.monotonic()
        for k in kids:
            if k not in seen:
                seen[k] = _started(k)
                first_seen[k] = now
            elif now - first_seen[k] >= LASTING and _alive(k, seen[k]):
                lasting.add(k)
        if interrupt_when is not None and not interrupted:
            cmds = []
            for k in kids:
                try:
                    with open(f"/proc/{k}/cmdline") as f:
                        cmds.append(f.read().replace("\0", " "))
                except OSError:
                    pass
            if interrupt_when(cmds):
                os.killpg(p.pid, signal.SIGINT)
                interrupted = True
        assert time.monotonic() < deadline, "triage did not finish"
        time.sleep(0.05)
    out, err = p.communicate()
    res = subprocess.CompletedProcess(p.args, p.returncode, out.decode(), err.decode())
    assert bool(lasting) == local, (lasting, seen)  # a LocalCluster's workers: children
    # a killed process takes a moment to go (the kernel tears it down after triage has
    # sent the signal and exited): a leak is a process still there 3 s later
    grace = time.monotonic() + 3
    while True:
        left = [k for k, t in seen.items() if t is not None and _alive(k, t)]
        if not left or time.monotonic() > grace:
            break
        time.sleep(0.05)
    assert not left, f"left behind: {left} ({res.stderr[-500:]})"
    assert "Traceback" not in res.stderr, res.stderr
    return res


def cli_json(core: Path, command: str, exe: Path | None = None) -> dict:
    argv = [MULTIHEAP, "--core", str(core), *(["--exe", str(exe)] if exe else []),
            command, "--json"]
    return json.loads(subprocess.run(argv, stdout=subprocess.PIPE, text=True).stdout)


def read_jsonl(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {Path(r["core"]).stem: r for r in rows}


@pytest.fixture(scope="module")
def local(cores, tmp_path_factory):
    """One run over the whole directory on a LocalCluster of 2 workers."""
    d = tmp_path_factory.mktemp("out")
    res = run_triage([str(cores["df1"].parent), "--workers", "2",
                      "-o", str(d / "t.parquet"), "--jsonl", str(d / "t.jsonl")])
    assert res.returncode == 0, res.stderr
    return res, read_jsonl(d / "t.jsonl"), d / "t.parquet"


def test_every_core_is_a_row_analysed_as_the_cli_does(local, cores):
    res, rows, _ = local
    assert set(rows) == set(cores)
    from multiheap.commands import COMMANDS

    assert "ptcheck" in COMMANDS
    for name in CORES:
        row = rows[name]
        assert row["status"] == "ok", (name, row["error"])
        assert row["glibc"] == "2.36" and row["program"].startswith("triage_bugs")
        for cmd in ("ptconfig", "ptstats", "ptcheck"):
            assert row[cmd] == cli_json(cores[name], cmd), (name, cmd)
        assert row["checked"] is True
        assert row["findings"] == row["ptcheck"]["findings"]
        assert row["totals"] == row["ptstats"]["totals"]
        assert row["mallinfo2"] == row["ptstats"]["mallinfo2"]
    # the overflow is found: its cores' first finding is about the damaged chunk
    for name in ("oc1", "oc2", "over1"):
        assert rows[name]["findings"], name
    assert not rows["healthy1"]["findings"]
    assert "7 analysed, 1 failed" in res.stdout


def test_crash_from_the_core_notes_and_frames(local):
    _, rows, _ = local
    for name in ("df1", "df2"):
        r = rows[name]
        assert r["signal_name"] == "SIGABRT" and r["fault_addr"] is None
        assert "double free" in r["abort_message"]
        assert r["crash_site"].startswith("do_double_free (triage_bugs.c:")
        funcs = [f["func"] for f in r["frames"]]
        assert "do_double_free" in funcs and "main" in funcs
        assert funcs.index("do_double_free") > 0  # below glibc's abort frames
    segv = rows["segv1"]
    assert segv["signal_name"] == "SIGSEGV" and segv["fault_addr"] == 0x10
    assert segv["crash_site"].startswith("do_segv (triage_bugs.c:")
    assert segv["frames"][0]["func"] == "do_segv"
    for name in ("healthy1", "over1"):  # gcore of a stopped process: no signal
        assert rows[name]["signal"] is None
        assert rows[name]["crash_site"].startswith("stop_here (triage_bugs.c:")
    assert rows["oc1"]["crash_site"].startswith("do_overflow_crash (")


def test_buckets_same_bug_together_different_bugs_apart(local):
    res, rows, _ = local
    key = {n: (rows[n]["first_kind"], rows[n]["crash_site"]) for n in CORES}
    assert key["df1"] == key["df2"] and key["oc1"] == key["oc2"]
    assert len({key["df1"], key["oc1"], key["segv1"], key["healthy1"], key["over1"]}) == 5
    lines = [ln for ln in res.stdout.splitlines() if " | " in ln]
    counts = [int(ln.split()[0]) for ln in lines]
    assert len(lines) == 5 and counts == sorted(counts, reverse=True) and counts[:2] == [2, 2]
    assert any(ln.split()[0] == "2" and "do_double_free" in ln for ln in lines)


def test_truncated_core_is_an_error_row(local):
    res, rows, parquet = local
    assert rows["trunc"]["status"] == "failed"
    assert "is truncated" in rows["trunc"]["error"]
    assert "trunc.core: core file" in res.stdout


def test_parquet_table_equals_the_rows(local):
    _, rows, parquet = local
    table = pq.read_table(parquet).to_pylist()
    assert [Path(r["core"]).stem for r in table] == sorted(rows, key=lambda n: rows[n]["core"])
    for rec in table:
        assert rec == parquet_record(rows[Path(rec["core"]).stem])
    over = next(r for r in table if r["core"].endswith("over1.core"))
    assert over["findings"][0]["kind"] == rows["over1"]["findings"][0]["kind"]
    assert json.loads(over["ptstats_json"]) == rows["over1"]["ptstats"]


def test_wrong_exe_gives_error_rows(cores, tmp_path):
    res = run_triage([str(cores["df1"]), str(cores["segv1"]), "--exe", "/bin/true",
                      "--workers", "2", "--jsonl", str(tmp_path / "t.jsonl")])
    assert res.returncode == 0
    rows = read_jsonl(tmp_path / "t.jsonl")
    for name in ("df1", "segv1"):
        assert rows[name]["status"] == "failed"
        assert "was not made from /bin/true" in rows[name]["error"]
    assert "0 analysed, 2 failed" in res.stdout


def test_hanging_debugger_is_killed_at_the_timeout(cores, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "gdb").write_text("#!/bin/sh\nexec sleep 300\n")  # a debugger that never answers
    (fake / "gdb").chmod(0o755)
    hung: list[int] = []  # debuggers running at each look, on the one worker
    t = time.monotonic()
    run_triage([str(cores["healthy1"]), str(cores["df1"]), "--timeout", "2", "--workers",
                "1", "--jsonl", str(tmp_path / "t.jsonl")],
               env={"PATH": f"{fake}:{os.environ['PATH']}"},
               interrupt_when=lambda cmds: hung.append(sum("sleep 300" in c for c in cmds)))
    assert time.monotonic() - t < 30
    assert max(hung) == 1  # the first one was killed at its timeout, before the next
    rows = read_jsonl(tmp_path / "t.jsonl")
    for name in ("healthy1", "df1"):
        assert rows[name]["status"] == "failed"
        assert "no answer within 2 s" in rows[name]["error"]


def test_a_dying_worker_is_retried_once_then_reported(cores, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "attempts"
    # the "debugger" kills the Dask worker that runs the analysis (its grandparent)
    (fake / "gdb").write_text(f"#!/bin/sh\necho $$ >> {log}\n"
                              "kill -9 $(ps -o ppid= -p $PPID)\nexec sleep 300\n")
    (fake / "gdb").chmod(0o755)
    res = run_triage([str(cores["healthy1"]), "--workers", "2",
                      "--jsonl", str(tmp_path / "t.jsonl")],
                     env={"PATH": f"{fake}:{os.environ['PATH']}"})
    row = read_jsonl(tmp_path / "t.jsonl")["healthy1"]
    assert row["status"] == "failed" and "KilledWorker" in row["error"]
    assert len(log.read_text().split()) == 2  # tried, retried once, reported
    assert "worker analysing it died" in res.stdout


def test_ctrl_c_stops_everything(cores, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "gdb").write_text("#!/bin/sh\nexec sleep 300\n")
    (fake / "gdb").chmod(0o755)
    res = run_triage([str(cores["df1"].parent), "--workers", "2"],
                     env={"PATH": f"{fake}:{os.environ['PATH']}"},
                     interrupt_when=lambda cmds: sum("sleep 300" in c for c in cmds) >= 2)
    assert res.returncode == 130
    assert "interrupted: 8 cores not analysed" in res.stdout
    assert res.stderr.strip().splitlines()[-1] == "multiheap: interrupted"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_existing_dask_cluster_gives_the_same_table(local, cores, tmp_path):
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        procs.append(subprocess.Popen([DASK, "worker", addr, "--nworkers", "2", "--nthreads",
                                       "1", "--no-dashboard"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True,
                                      cwd="/"))  # relative paths would not do
        from distributed import Client

        with Client(addr, timeout=30) as c:
            c.wait_for_workers(2, timeout=60)
        res = run_triage([str(cores["df1"].parent), "--scheduler", addr,
                          "-o", str(tmp_path / "r.parquet"), "--jsonl",
                          str(tmp_path / "r.jsonl")], local=False)
        assert res.returncode == 0, res.stderr
        assert "on 2 workers" in res.stdout
        remote = pq.read_table(tmp_path / "r.parquet").to_pylist()
        here = pq.read_table(local[2]).to_pylist()
        for rows in (remote, here):
            for r in rows:
                r.pop("seconds")
        assert remote == here
        assert res.stdout.split("\n", 1)[1] == local[0].stdout.split("\n", 1)[1]
        workers = descendants(procs[1].pid)
        cmds = [Path(f"/proc/{w}/cmdline").read_text().replace("\0", " ") for w in workers]
        assert sum("multiprocessing.spawn" in c for c in cmds) == 2, cmds
        # no analysis child or debugger left running on the workers
        assert not [c for c in cmds if "multiheap.triage.analyse" in c or "gdb" in c], cmds
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
    time.sleep(0.5)
    assert not [w for w in workers if _alive(w)]


def test_bad_usage_is_one_line(tmp_path):
    for args, want in (([], "the following arguments are required: CORE"),
                       (["x", "--workers", "0"], "out of range"),
                       ([str(tmp_path)], "no core files in directory"),
                       (["x", "--scheduler", f"tcp://127.0.0.1:{_free_port()}"],
                        "cannot reach the Dask scheduler")):
        p = subprocess.run([MULTIHEAP, "triage", *args], capture_output=True, text=True)
        assert p.returncode == 2, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and want in lines[0], (args, p.stderr)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
