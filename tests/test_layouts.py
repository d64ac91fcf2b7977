"""The engine's struct layouts against the real debug info of every glibc we can run.

One gdb session per libc (no process: gdb loads libc.so.6 and its debug file) prints
``ptype/o`` of each malloc struct; every field's offset and size, and each struct's
size, must equal :func:`multiheap.layouts.layout` for that version and word size.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from glibcbuilds import Libc, all_libcs
from harness import require

from multiheap.layouts import layout

# our struct name -> the name gdb knows it by
STRUCTS = {"malloc_state": "struct malloc_state", "malloc_par": "struct malloc_par",
           "heap_info": "struct _heap_info", "malloc_chunk": "struct malloc_chunk",
           "tcache_perthread_struct": "struct tcache_perthread_struct",
           "tcache_entry": "struct tcache_entry"}
RENAMED = {"mchunk_prev_size": "prev_size", "mchunk_size": "size"}  # 2.25's names
_FIELD = re.compile(r"/\*\s+(\d+)\s+\|\s+(\d+)\s+\*/\s+(.*?)\s*;\s*$")
_TOTAL = re.compile(r"total size \(bytes\):\s+(\d+)")

LIBCS = all_libcs()


def ptype_all(libc: Libc) -> dict[str, tuple[int, dict[str, tuple[int, int]]]]:
    """{struct: (size, {field: (offset, size)})} from gdb's ptype/o, top level only."""
    require("gdb")
    cmds = ["set debuginfod enabled off", f"set debug-file-directory {libc.debug_dir}",
            f"file {libc.path}"]
    for ours, theirs in STRUCTS.items():
        cmds += [f"echo @@{ours}\\n", f"ptype/o {theirs}"]
    cmds += ["echo @@global_max_fast\\n", "print sizeof(global_max_fast)"]
    args = ["gdb", "-nx", "-batch", "-q"]
    for c in cmds:
        args += ["-ex", c]
    text = subprocess.run(args, capture_output=True, text=True, timeout=120).stdout
    out: dict[str, tuple[int, dict[str, tuple[int, int]]]] = {}
    for block in text.split("@@")[1:]:
        name, _, body = block.partition("\n")
        if name == "global_max_fast":
            m = re.search(r"= (\d+)", body)
            out[name] = (int(m.group(1)) if m else -1, {})
            continue
        fields: dict[str, tuple[int, int]] = {}
        depth = 0
        for line in body.splitlines():
            m = _FIELD.match(line)
            if m and depth == 1:
                decl = m.group(3)
                fname = re.search(r"(\w+)\s*(\[\d+\])?$", decl).group(1)  # type: ignore
                fields[RENAMED.get(fname, fname)] = (int(m.group(1)), int(m.group(2)))
            depth += line.count("{") - line.count("}")
        total = _TOTAL.findall(body)
        assert total, f"{libc.name}: gdb printed no layout for {name}:\n{body[:500]}"
        out[name] = (int(total[-1]), fields)
    return out


@pytest.fixture(scope="module", params=LIBCS, ids=[lc.name for lc in LIBCS])
def real(request):
    libc = request.param
    return libc, ptype_all(libc)


@pytest.mark.parametrize("struct", list(STRUCTS))
def test_struct_matches_debug_info(real, struct):
    libc, structs = real
    size, fields = structs[struct]
    mine = layout(struct, libc.version, libc.ptr_size)
    theirs = {n: v for n, v in fields.items() if v[1]}  # drop char pad[0]
    ours = {n: (f.offset, f.size) for n, f in mine.fields.items()}
    assert ours == theirs, f"glibc {libc.name} struct {struct}"
    assert mine.size == size, f"glibc {libc.name} sizeof(struct {struct})"


def test_global_max_fast_width(real):
    """2.37 made global_max_fast a uint8_t (the engine reads that width); 2.43 drops it."""
    libc, structs = real
    width = structs["global_max_fast"][0]
    if libc.version >= (2, 43):
        expect = -1  # no fastbins, no such variable
    else:
        expect = 1 if libc.version >= (2, 37) else libc.ptr_size
    assert width == expect, f"glibc {libc.name}: sizeof(global_max_fast)"
