"""ptcheck on real damaged heaps, in every host, and no false alarm on real programs.

tests/programs/corrupt.c damages its heap one way per mode and stops in checkpoint()
before glibc notices (it writes the victim chunk's address first).  Each host runs
``ptcheck --json`` there: a finding must name the victim with the expected kind and
glibc's exact message of that version (or null where glibc has no check).  "healthy"
and real programs (python3, perl, bash, sqlite3, a threaded C++ program) give none,
on the system's glibc and, run by their ld.so, on Debian's 2.41 and 2.43.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from glibcbuilds import other_builds
from harness import BUILD_DIR, PLUGIN_GDB, VENV, build, gdb_env, require

from multiheap.checks.glibcmsg import message

CLI = str(VENV / "bin" / "multiheap")
HOSTS = ["gdb", "gdb-mi", "lldb", "r2"]
# mode -> (finding kind, glibc check key or None, needs fastbins)
MODES = {
    "tcache_poison_out": ("outside-heap", None, False),
    "tcache_poison_misaligned": ("misaligned-link", "tcache_unaligned", False),
    "tcache_double_free": ("double-free", "tcache_double_free", False),
    "fastbin_double_free": ("double-free", None, True),
    "house_of_spirit": ("outside-heap", None, False),
    "overlapping": ("inside-chunk", None, False),
    "nul_byte": ("next-size", "unsorted_next_size", False),
    "unsorted_bk": ("bin-link", "unsorted_links", False),
    "smallbin_bk": ("bin-link", "small_links", False),
    "largebin_nextsize": ("nextsize-link", "unlink_nextsize", False),
    "top_size": ("arena", "top_size", False),
    "non_main_arena": ("flags", None, False),
    "tcache_count": ("tcache-count", None, False),
    "prev_size": ("prev-size", "consolidating", False),
    "mmapped_size": ("mmapped-size", None, False),
    "fastbin_size": ("fast-size", "fast_size", True),
}


def _version(text: str) -> tuple[int, int]:
    a, b = text.split(".")[:2]
    return int(a), int(b)


def run_ptcheck(host: str, exe: Path, mode: str) -> tuple[dict, dict]:
    """(ptcheck's JSON, the program's truth) with the program stopped in checkpoint()."""
    work = Path(tempfile.mkdtemp(prefix="mh-check-", dir=BUILD_DIR))
    truth = work / "truth.json"
    if host == "gdb":
        proc = subprocess.run(
            ["gdb", "-nx", "-batch", "-q", "-ex", "set pagination off", "-ex", "set width 0",
             "-ex", f"source {PLUGIN_GDB}", "-ex", "break checkpoint", "-ex",
             f"run {mode} {truth}", "-ex", "echo ==MH==\\n", "-ex", "ptcheck --json",
             "-ex", "kill", str(exe)], capture_output=True, text=True, timeout=240,
            env=gdb_env())
        out = proc.stdout.split("==MH==\n")[-1]
    else:
        proc = subprocess.run([CLI, "--backend", host, "--run", f"{exe} {mode} {truth}",
                               "--break", "checkpoint", "ptcheck", "--json"],
                              capture_output=True, text=True, timeout=240)
        out = proc.stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("{")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(line), json.loads(truth.read_text())


def check_mode(doc: dict, t: dict, mode: str) -> None:
    kind, key, _fast = MODES[mode]
    hits = [f for f in doc["findings"] if f["addr"] == t["victim"] and f["kind"] == kind]
    assert hits, (mode, hex(t["victim"]), doc["findings"])
    want = message(_version(t["glibc"]), key) if key else None
    got = [f["glibc"]["message"] if f["glibc"] else None for f in hits]
    assert want in got, (mode, want, got)
    if t["other"] and mode in ("overlapping", "unsorted_bk", "smallbin_bk",
                               "largebin_nextsize", "prev_size"):
        assert any(t["other"] in f["related"] for f in hits), (mode, hits)


@pytest.fixture(scope="module")
def corrupt() -> Path:
    require("gdb")
    return build("corrupt", cflags=("-O0",))


@pytest.mark.parametrize("mode", ["healthy", *MODES])
@pytest.mark.parametrize("host", HOSTS)
def test_each_damage_in_each_host(corrupt, host, mode):
    doc, t = run_ptcheck(host, corrupt, mode)
    if mode == "healthy":
        assert doc["findings"] == [] and doc["count"] == 0, doc["findings"]
        assert doc["omitted"] == {}
    else:
        check_mode(doc, t, mode)


def test_a_kind_past_its_cap_is_counted_not_listed(corrupt, tmp_path):
    """2,500 chunks damaged alike: the first 1,000 "flags" findings are listed (the
    first damaged chunk first), the other 1,500 counted in ``omitted`` and ``count``;
    text says so in a note (a heap damaged throughout stays a bounded answer)."""
    doc, t = run_ptcheck("gdb", corrupt, "many_flags")
    flags = [f for f in doc["findings"] if f["kind"] == "flags"]
    assert len(flags) == 1000 and flags[0]["addr"] == t["victim"]
    assert doc["omitted"] == {"flags": t["other"] - 1000}
    assert doc["count"] == len(doc["findings"]) + t["other"] - 1000
    text = subprocess.run([CLI, "--backend", "gdb-mi", "--run",
                           f"{corrupt} many_flags {tmp_path / 'truth.json'}",
                           "--break", "checkpoint", "ptcheck"],
                          capture_output=True, text=True, timeout=240).stdout
    assert "1,500 more flags findings are not listed (the first 1,000 of each kind are)" \
        in text, text[-2000:]


BUILDS = {b.version: b for b in other_builds()}


@pytest.mark.parametrize("version", sorted(BUILDS))
def test_each_damage_on_other_glibcs(version):
    """The same damage, built against 2.31, 2.41 and 2.43 (gdb/MI): glibc's messages of
    that version (2.43 has no fastbins: those modes do not apply)."""
    b = BUILDS[version]
    exe = build("corrupt", cflags=("-O0",), glibc=b)
    v = _version(version)
    for mode in ["healthy", *MODES]:
        if mode != "healthy" and MODES[mode][2] and v >= (2, 43):
            continue
        doc, t = run_ptcheck("gdb-mi", exe, mode)
        assert t["glibc"].startswith(f"{v[0]}.{v[1]}")
        if mode == "healthy":
            assert doc["findings"] == [], doc["findings"]
        else:
            check_mode(doc, t, mode)


# ------------------------------------------------------------------ real programs
THREADED = r'''
#include <map>
#include <string>
#include <thread>
#include <vector>
#include <unistd.h>
#include <cstdio>
int main() {
    std::vector<std::thread> ts;
    std::vector<std::map<int, std::string>> maps(4);
    for (int k = 0; k < 4; k++)
        ts.emplace_back([&maps, k] {
            for (int i = 0; i < 20000; i++) maps[k][i] = std::string(i % 200, 'x');
            for (int i = 0; i < 20000; i += 3) maps[k].erase(i);
        });
    for (auto &t : ts) t.join();
    std::puts("ready");
    std::fflush(stdout);
    sleep(120);
}
'''

REAL = {
    "python3": ["/usr/bin/python3", "-c",
                "d = {i: str(i) * 3 for i in range(300000)}\n"
                "for i in range(0, 300000, 3): del d[i]\n"
                "print('ready', flush=True)\nimport time; time.sleep(120)"],
    # the string grown past mmap's threshold: realloc remaps it (2.43 overcounts that)
    "perl": ["perl", "-e", '$|=1; my $s = ""; $s .= "y" x 1000 for 1..600; '
             'my %h = map { $_ => "x" x ($_ % 300) } 1..100000; '
             'delete $h{$_} for grep { $_ % 3 } 1..100000; print "ready\\n"; sleep 120'],
    "bash": ["bash", "-c", 'a=(); for i in $(seq 1 20000); do a+=("$i$i$i"); done; '
             'unset "a[5]" "a[77]"; echo ready; read -t 120 x'],
    "sqlite3": ["sqlite3", ":memory:"],
}


def _threaded() -> list[str]:
    src = BUILD_DIR / "ptcheck_threads.cc"
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    src.write_text(THREADED)
    exe = BUILD_DIR / "ptcheck_threads"
    subprocess.run(["g++", "-O1", "-g", "-pthread", str(src), "-o", str(exe)], check=True)
    return [str(exe)]


@pytest.mark.parametrize("glibc", ["system", "2.41", "2.43"])
@pytest.mark.parametrize("name", [*REAL, "threaded-c++"])
def test_no_false_alarm_on_real_programs(name, glibc):
    """The system's programs, on its glibc and on Debian's 2.41 and 2.43 (run by that
    build's ld.so with its libdir first: the programs' other libraries are the
    system's; 2.31 is too old for them)."""
    argv = _threaded() if name == "threaded-c++" else REAL[name]
    require(argv[0])
    if glibc != "system":
        lib = BUILDS[glibc].libdir
        argv = [str(lib / "ld-linux-x86-64.so.2"), "--library-path", str(lib),
                shutil.which(argv[0]) or argv[0], *argv[1:]]
    stdin = subprocess.PIPE
    proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, text=True)
    try:
        if name == "sqlite3":
            assert proc.stdin is not None
            proc.stdin.write("create table t(a, b);\n"
                             "with recursive c(x) as (select 1 union all select x + 1 from c "
                             "where x < 50000) insert into t select x, hex(randomblob(40)) "
                             "from c;\ndelete from t where a % 3 = 0;\nselect 'ready';\n")
            proc.stdin.flush()
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        for backend in ("gdb-mi", "lldb"):
            res = subprocess.run([CLI, "--backend", backend, "--pid", str(proc.pid),
                                  "ptcheck", "--json"], capture_output=True, text=True,
                                 timeout=240)
            assert res.returncode == 0, res.stderr[-2000:]
            doc = json.loads(res.stdout)
            assert doc["findings"] == [], (name, backend, doc["findings"][:5])
            # discovery's checks of mp_ and main_arena fields are silent too
            res = subprocess.run([CLI, "--backend", backend, "--pid", str(proc.pid),
                                  "ptconfig", "--json"], capture_output=True, text=True,
                                 timeout=240)
            assert res.returncode == 0, res.stderr[-2000:]
            cfg = json.loads(res.stdout)
            assert glibc in ("system", cfg["glibc"]), cfg["glibc"]  # the cell's own glibc
            notes = [n["message"] for n in cfg.get("notes", [])]
            assert not [n for n in notes if "damaged" in n], (name, backend, notes)
            # nor ptstats' (mmapped chunks found against mp_'s count and bytes)
            res = subprocess.run([CLI, "--backend", backend, "--pid", str(proc.pid),
                                  "ptstats", "--json"], capture_output=True, text=True,
                                 timeout=240)
            assert res.returncode == 0, res.stderr[-2000:]
            stats = json.loads(res.stdout)
            notes = [n["message"] for n in stats.get("notes", [])]
            assert not [n for n in notes if "damaged" in n], (name, backend, notes)
            assert stats["mallinfo2"]["arena"] > 0
    finally:
        proc.kill()
        proc.wait()
