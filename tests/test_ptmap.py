"""ptmap --html: pages made from real processes, opened in a real headless Chromium.

The threaded scenario stops in checkpoint() under gdb (plugin); ptmap writes pages of
every arena and of the main arena alone, and gdb writes a core, on which the CLI
(gdb/MI), lldb and radare2 write pages too.  Chromium (Debian's ``chromium``, installed
by ``scripts/setup.sh --tests``) loads each page with every host name unresolvable;
the page's root element must say it drew exactly the chunks ptlist/ptstats count,
the search hook must find a known chunk, a screenshot must show the map's colours,
and a trace replay must step forward and back.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from harness import BUILD_DIR, VENV, build, require, run_gdb

CLI = str(VENV / "bin" / "multiheap")
ROOT = Path(__file__).resolve().parent.parent


def chromium(url: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium on ``url``; no host name resolves, so nothing can be fetched."""
    exe = require("chromium")
    prof = tempfile.mkdtemp(prefix="mh-chromium-", dir=BUILD_DIR)
    argv = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={prof}", '--host-resolver-rules=MAP * ~NOTFOUND',
            "--virtual-time-budget=20000", "--window-size=1400,900", *extra, url]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    finally:
        subprocess.run(["rm", "-rf", prof], check=False)


def page_state(path: Path, hash_: str = "") -> dict[str, str]:
    """The data- attributes of the page's root element after its script ran."""
    p = chromium(path.resolve().as_uri() + hash_, "--dump-dom")
    m = re.search(r"<html([^>]*)>", p.stdout)
    assert m, (p.stdout[:500], p.stderr[-2000:])
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', m.group(1)))
    assert "error" not in attrs, attrs["error"]
    assert attrs.get("ready") == "1", attrs
    return attrs


def png_colours(path: Path) -> set[bytes]:
    """The distinct pixel colours of an 8-bit RGB/RGBA PNG (the five filters undone)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride = zlib.decompress(idat), w * bpp
    prev, colours = bytearray(stride), set()
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colours.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 4))
        prev = line
    return colours


@pytest.fixture(scope="module")
def pages():
    """Pages and counts from the threaded scenario: gdb live, then its core in 3 hosts."""
    require("chromium")
    exe = build("scenario")
    work = Path(tempfile.mkdtemp(prefix="mh-ptmap-", dir=BUILD_DIR))
    core = work / "scenario.core"
    cmds = [f"ptmap --html {work / 'all.html'} --json",
            f"ptmap --html {work / 'main.html'} &main_arena --json",
            "ptlist --json", "ptlist --mmapped --json", "ptstats --json", "ptarena -l --json"]
    live = run_gdb(exe, "threads", cmds, gcore=core)
    out = {"work": work, "exe": exe, "core": core, "live": live}
    for backend in ("gdb-mi", "lldb", "r2"):
        page = work / f"core-{backend}.html"
        res = {}
        for c in ([f"ptmap --html {page} --json"], ["ptstats", "--json"],
                  ["ptlist", "--mmapped", "--json"]):
            p = subprocess.run([CLI, "--backend", backend, "--core", str(core), "--exe",
                                str(exe), *(c[0].split() if len(c) == 1 else c)],
                               capture_output=True, text=True, timeout=300)
            assert p.returncode == 0, (backend, c, p.stderr[-2000:])
            res[c[0].split()[0]] = json.loads(p.stdout)
        out[backend] = res
    yield out
    for f in work.iterdir():
        f.unlink()
    work.rmdir()


def _expected(stats: dict, mmapped: dict) -> tuple[int, int]:
    """(chunks, free chunks) a page of every arena must draw: ptstats' chunks, each
    arena's top, and the mmapped chunks."""
    t = stats["totals"]
    free = t["free_count"] + t["fast_count"] + t["tcache_count"]
    return t["inuse_count"] + free + len(stats["arenas"]) + mmapped["count"], free


def test_page_counts_equal_ptstats_and_ptlist_gdb(pages):
    live = pages["live"]
    stats, mm = live.json("ptstats --json"), live.json("ptlist --mmapped --json")
    chunks, free = _expected(stats, mm)
    assert len(stats["arenas"]) == 4 and mm["count"] >= 2  # the scenario's shape
    wrote = live.json(f"ptmap --html {pages['work'] / 'all.html'} --json")
    assert (wrote["chunks"], wrote["free"]) == (chunks, free)
    assert wrote["bytes"] == (pages["work"] / "all.html").stat().st_size
    attrs = page_state(pages["work"] / "all.html")
    assert (int(attrs["chunks"]), int(attrs["free"])) == (chunks, free)
    # one arena: exactly ptlist's chunks (its walk includes top), no mmapped ones
    main = live.json("ptlist --json")
    attrs = page_state(pages["work"] / "main.html")
    assert int(attrs["chunks"]) == main["count"]
    assert int(attrs["free"]) == sum(1 for c in main["chunks"]
                                     if c["state"] not in ("inuse", "top"))


@pytest.mark.parametrize("backend", ["gdb-mi", "lldb", "r2"])
def test_page_from_core_in_each_backend(pages, backend):
    res = pages[backend]
    chunks, free = _expected(res["ptstats"], res["ptlist"])
    assert (res["ptmap"]["chunks"], res["ptmap"]["free"]) == (chunks, free)
    attrs = page_state(Path(res["ptmap"]["path"]))
    assert (int(attrs["chunks"]), int(attrs["free"])) == (chunks, free)
    # the core holds the heap the live process had
    live = pages["live"].json(f"ptmap --html {pages['work'] / 'all.html'} --json")
    assert (chunks, free) == (live["chunks"], live["free"])


def test_page_is_self_contained(pages):
    """Nothing to fetch: no URL, no src/href, no fetch API; the CSP forbids loads; and
    with every host name unresolvable the page still draws."""
    text = (pages["work"] / "all.html").read_text()
    assert not re.search(r"\b(https?|ftp|wss?):|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I)
    assert not re.search(r"\b(src|href)\s*=|@import|url\(", text, re.I)
    assert not re.search(r"\b(fetch|XMLHttpRequest|WebSocket|EventSource|import)\s*\(", text)
    assert "default-src 'none'" in text
    assert text.count("<script") == 2  # the data and the inline script, no src


def _requests(url: str) -> set[str]:
    """host/path of every non-local URL request Chromium's network log shows for url."""
    p = chromium(url, "--dump-dom", "--enable-logging=stderr", "--v=1",
                 "--disable-background-networking", "--disable-sync")
    urls = re.findall(r"NotifyBeforeURLRequest: (\S+)", p.stderr)
    out = set()
    for u in urls:
        s = urlsplit(u)
        if s.scheme not in ("file", "data", "chrome", "about", "blob"):
            out.add(s.netloc + s.path)
    return out


def test_page_requests_nothing(pages):
    """Chromium's network log: the page adds no request to what the browser itself
    sends for about:blank; the same check on a page with an image and a fetch sees both."""
    browser = _requests("about:blank")
    assert _requests((pages["work"] / "all.html").resolve().as_uri()) - browser == set()
    control = pages["work"] / "control.html"
    control.write_text('<img src="http://mh-control.example/x.png"><script>'
                       'fetch("https://mh-control2.example/y")</script>')
    assert _requests(control.resolve().as_uri()) - browser == {
        "mh-control.example/x.png", "mh-control2.example/y"}


def test_search_finds_a_known_chunk(pages):
    live = pages["live"]
    truth = live.truth
    mem = truth.mems("live")[3]
    attrs = page_state(pages["work"] / "all.html", f"#find={mem + 5:#x}")
    assert attrs["found"] == hex(mem - 16)
    assert attrs["pinned"] == hex(mem - 16)
    attrs = page_state(pages["work"] / "all.html", "#find=0x10")
    assert attrs["found"] == "none"


def test_screenshot_shows_the_map(pages):
    shot = pages["work"] / "shot.png"
    p = chromium((pages["work"] / "all.html").resolve().as_uri(), f"--screenshot={shot}",
                 "--window-size=700,450")
    assert shot.exists(), p.stderr[-2000:]
    colours = png_colours(shot)
    # background, text and at least in use, tcache, fastbin, bins, top, mmapped
    assert len(colours) >= 8, len(colours)
    want = {bytes.fromhex(c) for c in ("4a7fd0", "f4c542", "6b7480", "8e9db4")}
    assert want <= colours, [c.hex() for c in want - colours]


def _trace(truth) -> list[dict]:
    """A malloc/free trace of the scenario's own records: every allocation, then the
    frees, then a realloc in place, as the tracer writes it (JSON Lines)."""
    ev = []
    for r in truth.records:
        ev.append({"op": "malloc", "tid": r["tid"], "size": r.get("req", 0),
                   "result": r["mem"], "backtrace": [{"pc": 0x401000, "function": "grab"},
                                                     {"pc": 0x401200, "function": "main"}]})
    for r in truth.records:
        if r["kind"] != "live":
            ev.append({"op": "free", "tid": r["tid"], "ptr": r["mem"], "size": 0,
                       "result": 0, "backtrace": [{"pc": 0x401100, "function": "release"}]})
    keep = truth.mems("live")[0]
    ev.append({"op": "realloc", "tid": 1, "ptr": keep, "size": 8, "result": keep,
               "backtrace": []})
    for i, e in enumerate(ev):
        e["seq"] = i
    return ev


def test_trace_replay_steps_forward_and_back(pages):
    live = pages["live"]
    ev = _trace(live.truth)
    path = pages["work"] / "trace.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in ev))
    page = pages["work"] / "trace.html"
    p = subprocess.run([CLI, "--core", str(pages["core"]), "--exe", str(pages["exe"]),
                        "ptmap", "--html", str(page), "--trace", str(path), "--json"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["steps"] == len(ev)
    n = len(live.truth.records)
    freed = n - len(live.truth.mems("live"))
    attrs = page_state(page, f"#step=5,{n},2,{n + freed},{len(ev)},0")
    assert attrs["step-log"] == (f"5:5 {n}:{n} 2:2 {n + freed}:{n - freed} "
                                 f"{len(ev)}:{n - freed} 0:0"), attrs["step-log"]
    assert (attrs["step"], attrs["live"]) == ("0", "0")
    attrs = page_state(page)  # opens at the last call
    assert (attrs["step"], attrs["live"]) == (str(len(ev)), str(n - freed))


@pytest.mark.parametrize("text,why", [
    ("not json\n", "trace line 1 is not JSON"),
    ('{"op": "mallocx", "size": 1, "result": 16}\n', "unknown op 'mallocx'"),
    ('{"op": "summary", "calls": 0}\n', "has no calls"),
    ('{"op": "malloc", "size": "big"}\n', "size is not a number"),
    ("", "has no calls"),
])
def test_bad_trace_is_one_line(pages, text, why):
    bad = pages["work"] / "bad.jsonl"
    bad.write_text(text)
    p = subprocess.run([CLI, "--core", str(pages["core"]), "--exe", str(pages["exe"]),
                        "ptmap", "--html", str(pages["work"] / "x.html"), "--trace", str(bad)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and why in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_usage_errors_are_one_line(pages):
    base = [CLI, "--core", str(pages["core"]), "--exe", str(pages["exe"]), "ptmap"]
    for args, why in ((["--json"], "--html"),
                      (["--html", str(pages["work"])], "is not a file name"),
                      (["--html", "/nonexistent-dir/x.html"], "cannot write"),
                      (["--html", str(pages["work"] / "y.html"), "0x1234"], "not an arena"),
                      (["--html", str(pages["work"] / "y.html"), "0x1234", "--all"],
                       "not both")):
        p = subprocess.run(base + args, capture_output=True, text=True, timeout=300)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        out = p.stdout if "--json" in args else p.stderr
        assert why in out and "Traceback" not in out + p.stderr, (args, out)
    assert not os.path.exists("/nonexistent-dir")


def test_flagged_chunks_from_ptcheck(pages):
    """ptcheck's findings colour their chunks: the cycle scenario has one, the healthy
    threaded one none."""
    work = pages["work"]
    run = run_gdb(pages["exe"], "cycle", [f"ptmap --html {work / 'cycle.html'} --json",
                                          "ptcheck --json"])
    found = {f["addr"] for f in run.json("ptcheck --json")["findings"]}
    attrs = page_state(work / "cycle.html")
    assert found and 1 <= int(attrs["flagged"]) <= len(found), (attrs, found)
    assert page_state(work / "all.html")["flagged"] == "0"
