"""Shared fixtures: scenario programs run once per session in gdb, live and from core."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BUILD_DIR, build, run_gdb  # noqa: E402

# Every command, in the forms the tests compare; each run executes all of them.
JSON_COMMANDS = ["ptconfig --json", "ptarena -l --json", "ptparam --json", "ptstats --json",
                 "ptbin --json", "ptfast --json", "pttcache --json", "ptfree --json",
                 "ptlist --json", "ptlist --mmapped --json", "pthelp --json"]
TEXT_COMMANDS = ["ptconfig", "ptarena -l", "ptparam", "ptstats", "ptbin", "ptfast",
                 "pttcache", "ptfree", "ptlist -c 30", "pthelp"]


def _live_and_core(mode: str, m32: bool = False, extra: tuple[str, ...] = ()):
    exe = build("scenario", m32=m32)
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    core = BUILD_DIR / f"{exe.name}-{mode}-{os.getpid()}.core"  # one per test run
    cmds = JSON_COMMANDS + TEXT_COMMANDS + list(extra)
    live = run_gdb(exe, mode, cmds, gcore=core)
    dead = run_gdb(exe, mode, cmds, core=core, truth=live.truth)
    return live, dead


@pytest.fixture(scope="session")
def basic():
    """(live, core) runs of the single-threaded scenario, x86_64."""
    return _live_and_core("basic")


@pytest.fixture(scope="session")
def threads():
    """(live, core) runs of the scenario with three worker threads, x86_64."""
    return _live_and_core("threads")


@pytest.fixture(scope="session")
def basic32():
    """(live, core) runs of the threaded scenario built with -m32 (i386)."""
    return _live_and_core("threads", m32=True)


def pytest_sessionfinish(session, exitstatus):
    """Core files are large: remove this run's."""
    for core in BUILD_DIR.glob(f"*-{os.getpid()}.core"):
        core.unlink(missing_ok=True)
