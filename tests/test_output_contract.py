"""Every command's --json against docs/output.md, which this test parses: each key of
each document must be documented there with its type, each documented key that is not
marked optional must be in every object it belongs to, and each documented key must
turn up in some document (so the page and the output cannot drift apart).

The documents come from the gdb plugin on real processes: tests/programs/vis.c (every
list kind, tags, symbols), corrupt.c's damaged top (walks that stop), lazy.c before the
first malloc, tracee.c for pttrace/pthistory; error and help documents from the CLI.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from dataclasses import dataclass

import pytest
from harness import ROOT, VENV, build, require, waiting_program
from test_views import gdb_plugin

DOC = ROOT / "docs" / "output.md"
CLI = str(VENV / "bin" / "multiheap")
TYPES = {"int", "str", "bool", "null", "list", "object", "float", "any"}


# ------------------------------------------------------------------ the page
@dataclass(frozen=True)
class Row:
    """One documented field: ``chunks[].fd`` with its types; ``?``: not always there."""

    path: str
    types: frozenset
    optional: bool

    def matches(self, path: str) -> bool:
        return _match(self.path.split("."), path.split("."))


def _match(pat: list[str], segs: list[str]) -> bool:
    """``*`` is any one key (``*_tag``: any ending so), ``**`` any number of keys."""
    if not pat:
        return not segs
    if pat[0] == "**":
        return any(_match(pat[1:], segs[i:]) for i in range(len(segs) + 1))
    return bool(segs) and fnmatch.fnmatchcase(segs[0], pat[0]) and _match(pat[1:], segs[1:])


_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|")


def parse_page(text: str = "") -> dict[str, list[Row]]:
    """Section name (a command, or ``every document``) -> its rows, from the part of
    docs/output.md under ``## Fields``."""
    text = text or DOC.read_text()
    part = text.split("\n## Fields", 1)[1].split("\n## ", 1)[0]
    spec: dict[str, list[Row]] = {}
    section = None
    for line in part.splitlines():
        if line.startswith("### "):
            section = line[4:].strip().strip("`")
            spec[section] = []
        m = _ROW.match(line)
        if m and section is not None:
            path, types = m.group(1), {t.strip() for t in m.group(2).split(" or ")}
            assert types <= TYPES, f"{section}: {path}: unknown type in {types}"
            spec[section].append(Row(path.rstrip("?"), frozenset(types), path.endswith("?")))
    return spec


# ------------------------------------------------------------------ the documents
def type_name(v) -> str:
    return {bool: "bool", int: "int", str: "str", float: "float", list: "list",
            dict: "object", type(None): "null"}[type(v)]


def flatten(doc, path: str = "") -> list[tuple[str, str, object]]:
    """(path, type, value) of every value: ``chunks[].addr`` for a list's elements."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            p = f"{path}.{k}" if path else k
            out.append((p, type_name(v), v))
            out += flatten(v, p)
    elif isinstance(doc, list):
        for v in doc:
            out.append((path + "[]", type_name(v), v))
            out += flatten(v, path + "[]")
    return out


def check(docs: list[dict], spec: dict[str, list[Row]]) -> list[str]:
    """What is wrong, in words (empty: every document agrees with the page)."""
    wrong, seen = [], set()
    common = spec.get("every document", [])
    for doc in docs:
        name = doc.get("command")
        rows = spec.get(name)
        if rows is None:
            wrong.append(f"{name}: no section ### {name}")
            continue
        flat = flatten(doc)
        for path, typ, _value in flat:
            row = next((r for r in rows + common if r.matches(path)), None)
            if row is None:
                if path.endswith("[]") and typ in ("object", "list"):
                    continue  # a list's elements: their keys are the rows
                wrong.append(f"{name}: `{path}` ({typ}) is not documented")
            elif typ not in row.types and "any" not in row.types:
                wrong.append(f"{name}: `{path}` is {typ}, documented {' or '.join(row.types)}")
            else:
                seen.add((name if row in rows else "every document", row.path))
        if "error" in doc or "help" in doc:  # {"command", "error" | "help"} only
            continue
        objects = [("", doc)] + [(p, v) for p, _t, v in flat if isinstance(v, dict)]
        for row in rows:
            parent, _, key = row.path.rpartition(".")
            if row.optional or "*" in key or key.endswith("[]"):
                continue
            for p, obj in objects:
                if _match(parent.split(".") if parent else [], p.split(".") if p else []) \
                        and key not in obj:
                    wrong.append(f"{name}: `{row.path}` missing (not marked optional)")
    for name, rows in spec.items():
        if name == "every document":
            continue
        for row in rows:
            if (name, row.path) not in seen and (name, row.path) not in UNEXERCISED \
                    and any(d.get("command") == name for d in docs):
                wrong.append(f"{name}: `{row.path}` is documented but never seen")
    return sorted(set(wrong))


# Documented fields no program here makes, and why (each still checked when it comes).
UNEXERCISED = {
    ("ptconfig", "libc_file"): "needs a libc without debug info (heuristic discovery)",
    ("ptconfig", "structures.main_arena.rejected[]"): "a discovery route rejected",
    ("ptconfig", "structures.mp_.rejected[]"): "a discovery route rejected",
    ("ptconfig", "routes[].rejected[].route"): "a discovery route rejected",
    ("ptfast", "fastbins"): "glibc 2.43+ (no fastbins)",
}


def _docs(parts: list[str], commands: list[str]) -> list[dict]:
    docs = []
    for c, part in zip(commands, parts):
        line = next((ln for ln in part.splitlines() if ln.startswith("{")), None)
        assert line is not None, f"{c}: no JSON document in {part[-1500:]!r}"
        assert json.dumps(json.loads(line), separators=(",", ":")) == line, f"{c}: not compact"
        docs.append(json.loads(line))
    return docs


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> list[dict]:
    """Every command's JSON, in every shape this test can make on real programs."""
    tmp = tmp_path_factory.mktemp("contract")
    docs: list[dict] = []
    with waiting_program("vis", lambda t: [str(t), "wait"], marker="}\n") as running:
        _exe, pid, _core, t = running
        keep, tc, large = t["keep"][0], t["tcache30"][-1], t["large"]
        cmds = [f"ptmeta add {keep:#x} victim", "ptmeta list",
                "ptconfig", "ptarena", "ptarena -l", "ptarena &main_arena", "ptparam",
                "ptstats", "ptstats --no-walk", "ptbin", "ptbin -i 1 --all", "ptfast",
                "pttcache", "ptfree", "ptlist", "ptlist -c 3", "ptlist --mmapped",
                f"ptchunk {keep:#x}", f"ptchunk -m {tc:#x} -v", f"ptchunk -m {large:#x} -x -v",
                f"ptchunk -m {keep:#x} -c 1000", "pthelp", "ptchunk -h", "ptcheck",
                f"pttry free {keep:#x}", "pttry malloc 0x20", f"ptfind {keep:#x}", "ptvis",
                "ptvis --all --raw", f"ptmap --html {tmp / 'map.html'}",
                f"ptmeta del {keep:#x}", "ptmeta clear"]
        cmds = [c + " --json" for c in cmds]
        docs += _docs(gdb_plugin(["-p", str(pid)], cmds), cmds)
    corrupt = build("corrupt", cflags=("-O0",))
    cmds = [c + " --json" for c in ("ptlist", "ptstats", "ptvis --all", "ptfree",
                                    "ptchunk mp_.sbrk_base -c 1000", "ptcheck",
                                    "pttry malloc 0x5000")]
    docs += _docs(gdb_plugin(["-ex", "break checkpoint", "-ex",
                              f"run top_size {tmp / 'c.json'}", str(corrupt)], cmds), cmds)
    lazy = build("lazy")
    cmds = ["ptlist --json", "ptvis --json"]
    docs += _docs(gdb_plugin(["-ex", "break checkpoint", "-ex",
                              f"run early {tmp / 'l.json'}", str(lazy)], cmds), cmds)
    tracee = build("tracee")
    cmds = [f"pttrace start --break-on-error --watch -o {tmp / 't.jsonl'}", "continue",
            "pttrace status", "pttrace show", "pthistory $rdi", "ptchunk -m $rdi",
            f"pttrace save {tmp / 'saved.jsonl'}", "pttrace stop"]
    cmds = [c if c == "continue" else c + " --json" for c in cmds]
    parts = gdb_plugin(["-ex", "break main", "-ex", "run double", str(tracee)], cmds)
    docs += _docs(parts[:1] + parts[2:], cmds[:1] + cmds[2:])
    for argv in (["pthelp", "--json"], ["ptvis", "-h", "--json"],
                 ["--core", str(tmp / "none"), "ptlist", "--json"]):
        proc = subprocess.run([CLI, *argv], capture_output=True, text=True, timeout=60)
        docs += _docs([proc.stdout], [" ".join(argv)])
    return docs


# ------------------------------------------------------------------ the tests
def test_every_document_agrees_with_docs_output_md(documents):
    require("gdb")
    wrong = check(documents, parse_page())
    assert not wrong, "\n".join(wrong)


def test_every_command_has_a_section(documents):
    spec = parse_page()
    names = {d["command"] for d in documents}
    assert {"ptconfig", "ptarena", "ptparam", "ptchunk", "ptlist", "ptbin", "ptfast",
            "pttcache", "ptfree", "ptstats", "ptmeta", "pthelp", "ptcheck", "pttry",
            "ptfind", "ptvis", "ptmap", "pttrace", "pthistory"} <= names
    assert names <= set(spec), names - set(spec)


def test_the_check_can_fail(documents):
    """An undocumented key, a wrong type, a documented key that never comes: each fails."""
    spec = parse_page()
    doc = next(d for d in documents if d["command"] == "ptfind")
    assert check([doc], spec) == []
    assert check([dict(doc, surprise=1)], spec) == \
        ["ptfind: `surprise` (int) is not documented"]
    assert "ptfind: `size` is str, documented int" in check([dict(doc, size="big")], spec)
    less = dict(doc)
    del less["offset"]
    assert any("`offset` missing" in w for w in check([less], spec))
    page = DOC.read_text().replace("### ptfind\n", "### ptfind\n| `ghost` | int | x |\n", 1)
    assert "ptfind: `ghost` is documented but never seen" in check([doc], parse_page(page))


def test_stops_and_tags_are_objects_everywhere(documents):
    """A walk that stopped is a ``stopped`` object ({addr, reason}) in each command that
    walks; a tag rides on the object holding the tagged address."""
    stopped = {d["command"] for d in documents for p, _t, v in flatten(d)
               if p.rpartition(".")[2] == "stopped" and set(v) == {"addr", "reason"}}
    assert {"ptlist", "ptstats", "ptvis", "ptchunk"} <= stopped, stopped
    tagged = {d["command"] for d in documents for p, _t, v in flatten(d)
              if (p.endswith("tag") or p.endswith("tags[]")) and v == "victim"}
    assert {"ptchunk", "ptlist", "ptvis", "ptmeta"} <= tagged, tagged


def test_error_json_is_compact_and_one_line(tmp_path):
    proc = subprocess.run([CLI, "--core", str(tmp_path / "none"), "ptlist", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout.count("\n") == 1 and ", " not in proc.stdout.replace(
        str(tmp_path), "")
    assert set(json.loads(proc.stdout)) == {"command", "error"}
