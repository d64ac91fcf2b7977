"""The layering rules, checked on the source: the engine never imports a debugger, an
adapter never formats output, and nothing is installed as a bare top-level package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEBUGGERS = {"gdb", "lldb", "r2pipe", "pygdbmi", "_lldb"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_engine_never_imports_a_debugger():
    engine = [p for p in (ROOT / "multiheap").rglob("*.py")]
    assert len(engine) > 10
    for path in engine:
        bad = {n for n in _imports(path) if n.split(".")[0] in DEBUGGERS
               or n.startswith(("multiheap.adapters.gdb", "multiheap.adapters.lldb",
                                "multiheap.adapters.r2", "multiheap.plugins"))}
        # The CLI and the demo choose an adapter through the registry, by name.
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_adapters_never_format_output():
    for path in (ROOT / "adapters").glob("*.py"):
        names = _imports(path)
        assert not any(n.startswith(("multiheap.builders", "multiheap.commands"))
                       for n in names), f"{path.name} imports output code"
        assert "print(" not in path.read_text(), f"{path.name} prints"


def test_importing_the_engine_loads_no_debugger():
    code = ("import sys, multiheap.commands, multiheap.registry, multiheap.cli;"
            "multiheap.registry.adapters();"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(DEBUGGERS)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_no_bare_top_level_packages_installed(tmp_path):
    # From a directory outside the checkout, only the multiheap namespace imports.
    code = ("import importlib.util as u, multiheap.adapters as a, multiheap.plugins as p;"
            "print(u.find_spec('adapters'), u.find_spec('plugins'), a.__file__, p.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout.split()
    assert out[:2] == ["None", "None"]
    assert Path(out[2]).parent == ROOT / "adapters" and Path(out[3]).parent == ROOT / "plugins"


def test_every_command_is_defined_once():
    from multiheap.commands import COMMANDS
    defs: dict[str, list[str]] = {}
    for path in (ROOT / "multiheap" / "commands").glob("*.py"):
        if path.name == "base.py":  # defines the decorator (and shows it in a docstring)
            continue
        for name in COMMANDS:
            if f'@command("{name}"' in path.read_text():
                defs.setdefault(name, []).append(path.name)
    assert {n: len(v) for n, v in defs.items()} == {n: 1 for n in COMMANDS}
    assert len(COMMANDS) >= 12  # others add commands; each still defined once
