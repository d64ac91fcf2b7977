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


# What an adapter may import of multiheap: the protocol, the error types, the start-up
# request, the ELF reader (a module's build-id), and the small helpers for a program's
# stdio and address arguments (plus its sibling adapter modules).  Tracing glue
# (*_trace.py: breakpoints, then a shell) and the registry's hook (registration.py) are
# not adapters of the protocol.
ADAPTER_MAY_IMPORT = {"multiheap.target", "multiheap.errors", "multiheap.progio",
                      "multiheap.expr", "multiheap.startup", "multiheap.hookspecs",
                      "multiheap.elffile"}
ADAPTER_MAX_LINES = 400


def _multiheap_imports(path: Path) -> set[str]:
    """Every multiheap module ``path`` imports (``from multiheap import x`` counts as
    ``multiheap.x``), at any depth of the file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("multiheap")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "multiheap":
                out |= {f"multiheap.{a.name}" for a in node.names}
            elif node.module.startswith("multiheap."):
                out.add(node.module)
    return out


def _protocol_adapters() -> list[Path]:
    return [p for p in sorted((ROOT / "adapters").glob("*.py"))
            if not p.name.endswith("_trace.py") and p.name not in ("registration.py",
                                                                    "__init__.py")]


def test_adapters_import_only_the_protocol():
    paths = _protocol_adapters()
    assert {"gdb.py", "gdbmi.py", "lldb.py", "r2.py"} <= {p.name for p in paths}
    for path in paths:
        bad = {n for n in _multiheap_imports(path)
               if n not in ADAPTER_MAY_IMPORT and not n.startswith("multiheap.adapters")}
        assert not bad, f"adapters/{path.name} imports {sorted(bad)}"


def test_adapters_are_small():
    for path in (ROOT / "adapters").glob("*.py"):
        n = len(path.read_text().splitlines())
        assert n <= ADAPTER_MAX_LINES, f"adapters/{path.name} has {n} lines"


def test_protocol_declares_close_and_evaluate():
    """Every built-in adapter implements the whole protocol, close and evaluate
    included: nothing finds them with getattr."""
    from multiheap.target import Target

    for name in ("close", "evaluate"):
        assert name in Target.__dict__, name
    for path in _protocol_adapters():
        text = path.read_text()
        if "class " in text and "(R2Target)" not in text and "def read(self" in text:
            for name in ("close", "evaluate", "thread_pointer", "tls_symbol", "type_layout"):
                assert f"def {name}(self" in text, f"adapters/{path.name} lacks {name}"
    for path in [*(ROOT / "multiheap").rglob("*.py"), *(ROOT / "adapters").glob("*.py")]:
        text = path.read_text()
        for name in ("close", "evaluate"):
            assert f'getattr(target, "{name}"' not in text, f"{path.name}: getattr {name}"


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


# -- discovery (multiheap/discovery/) ---------------------------------------------------
DISCOVERY = ROOT / "multiheap" / "discovery"
# What the rest of the engine may take from discovery: the plain data and discover().
DISCOVERY_API = {"multiheap.discovery", "multiheap.discovery.facts"}
# Each fallback has one home: the function names below are defined once, in discovery,
# and called nowhere outside it.
ONE_HOME = ("scan_thread_pointers", "tcbhead_at", "is_tcb", "find_tcache_offset", "check_arena",
            "check_mp", "arena_candidates_in_file", "mp_candidates_in_file", "tls_address",
            "thread_lists", "is_variant1_tcb", "libc_tls_offset", "static_tls_offset")
# Marks of a fallback route, by what it reads: only their one home may name them.
# (A core's notes -- each thread's NT_PRSTATUS, NT_SIGINFO -- are decoded by elffile
# alone: adapters take the thread pointers and triage/notes.py the crash from its CoreInfo;
# glibc's thread lists are walked by discovery/pthreads.py alone, with or without layouts.)
ROUTE_MARKS = {"_dl_stack_user": ("multiheap/discovery/pthreads.py",),
               "__stack_user": ("multiheap/discovery/pthreads.py",),
               "l_tls_offset": ("multiheap/discovery",),
               "NT_PRSTATUS": ("multiheap/elffile.py",),
               "iter_notes": ("multiheap/elffile.py",),
               "NT_SIGINFO": ("multiheap/elffile.py",)}


def test_nothing_outside_discovery_discovers():
    """Walks, free lists, commands and adapters never reach into discovery's routes."""
    for path in [*(ROOT / "multiheap").rglob("*.py"), *(ROOT / "adapters").glob("*.py")]:
        if DISCOVERY in path.parents:
            continue
        bad = {n for n in _imports(path) if n.startswith("multiheap.discovery.")
               and n not in DISCOVERY_API}
        if (ROOT / "adapters") in path.parents:  # adapters: no discovery at all
            bad |= {n for n in _imports(path) if n.startswith("multiheap.discovery")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
        text = path.read_text()
        calls = [f for f in ONE_HOME if f"{f}(" in text and f"def {f}(" not in text]
        assert not calls, f"{path.relative_to(ROOT)} calls {calls} (discovery's own)"


def test_each_fallback_is_defined_once():
    sources = [*(ROOT / "multiheap").rglob("*.py"), *(ROOT / "adapters").glob("*.py")]
    for name in ONE_HOME:
        homes = [(p.relative_to(ROOT), n) for p in sources
                 for n in [p.read_text().count(f"def {name}(")] if n]
        assert len(homes) == 1 and homes[0][1] == 1, (name, homes)
    old = [p for p in ("multiheap/locate.py", "multiheap/heuristics.py") if (ROOT / p).exists()]
    assert not old, f"{old}: discovery lives in multiheap/discovery/"


def test_every_engine_package_is_installed():
    """pyproject lists its packages by name: a new subpackage missing there would import
    from a checkout but not from an installed wheel."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {"multiheap." + p.parent.name for p in (root / "multiheap").glob("*/__init__.py")}
    assert found <= listed, sorted(found - listed)


def test_route_marks_have_one_home():
    """glibc's thread list, ld.so's link_map TLS offset and a core's NT_PRSTATUS notes
    are read in one place each (adapters once had their own copies)."""
    for path in [*(ROOT / "multiheap").rglob("*.py"), *(ROOT / "adapters").glob("*.py"),
                 *(ROOT / "plugins").glob("*.py")]:
        rel = str(path.relative_to(ROOT))
        text = path.read_text()
        for mark, home in ROUTE_MARKS.items():
            assert mark not in text or rel.startswith(home), f"{rel} reads {mark}"


def test_no_import_circle_between_cli_and_shell():
    """The shell runs commands itself (shell.run_one); the CLI uses the shell, never the
    other way round."""
    assert not any(n.startswith("multiheap.cli") for n in _multiheap_imports(
        ROOT / "multiheap" / "shell.py"))



def test_one_elf_reader():
    """Every ELF parse of the package goes through multiheap/elffile.py: no module imports
    pyelftools (a test dependency only, to check elffile against), and pyproject does not
    install it for users."""
    import tomllib

    for path in [*(ROOT / "multiheap").rglob("*.py"), *(ROOT / "adapters").glob("*.py"),
                 *(ROOT / "plugins").glob("*.py")]:
        assert not {n for n in _imports(path) if n.split(".")[0] == "elftools"}, path
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if d.startswith("pyelftools")], deps


def _heap_receiver(node: ast.expr) -> bool:
    """``heap``, ``h``, ``self.heap``, ``self.h``: the names a Heap goes by."""
    if isinstance(node, ast.Name):
        return node.id in ("heap", "h")
    return isinstance(node, ast.Attribute) and node.attr in ("heap", "h") \
        and isinstance(node.value, ast.Name) and node.value.id == "self"


def test_heap_is_composed_not_mixed_in():
    from multiheap.freelists import FreeLists
    from multiheap.heap import Heap
    from multiheap.walks import ChunkWalks

    # Heap holds its free lists and walks (heap.lists, heap.walks); it inherits nothing,
    # and they are objects built with what they need, not mixins of Heap.
    assert Heap.__mro__ == (Heap, object)
    for cls in (FreeLists, ChunkWalks):
        assert cls.__mro__ == (cls, object) and "__init__" in vars(cls), cls.__name__
    for path in (ROOT / "multiheap").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == "Heap":
                assert not node.bases, f"{path.relative_to(ROOT)}: Heap has a base class"
            # nothing outside heap.py reaches into a Heap's private state
            if path.name != "heap.py" and isinstance(node, ast.Attribute) \
                    and _heap_receiver(node.value) and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                raise AssertionError(f"{path.relative_to(ROOT)}:{node.lineno} reads "
                                     f"a Heap's private {node.attr}")
            if isinstance(node, ast.Attribute) and node.attr == "__dict__" \
                    and _heap_receiver(node.value):
                raise AssertionError(f"{path.relative_to(ROOT)}:{node.lineno} reads "
                                     "a Heap's __dict__")
