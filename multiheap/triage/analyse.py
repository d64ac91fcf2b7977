"""One core file, analysed: the row ``multiheap triage`` writes for it.

``analyse_core()`` runs ``python -m multiheap.triage.analyse CORE`` as a child process
and reads the one JSON row it prints.  The child is the CLI's own code path: it parses
``--core CORE [--exe EXE]`` with the CLI's parser, opens the target with the CLI's
``_open`` and runs ``ptconfig --json``, ``ptstats --json`` and ``ptcheck --json`` (when
that command exists) through ``run_command`` on that one target, exactly as
``multiheap --core CORE ptcheck --json`` does.  A child process, not a call in the
worker, because a debugger that hangs must be killed with everything it started
(``--timeout``), and a crash of the analysis must not take the worker with it.

The crash (signal, faulting address, crashing thread) comes from the core's notes
(multiheap.triage.notes); its frames from the same debugger session (gdb/MI's
``-stack-list-frames`` on the thread gdb selects on a core, the one the signal was
for), and glibc's abort message from ``__abort_msg`` in the target's memory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Optional, Sequence

from multiheap.errors import MultiheapError

DEFAULT_TIMEOUT = 120.0
DEFAULT_BACKEND = "gdb-mi"
COMMANDS = ("ptconfig", "ptstats", "ptcheck")
MAX_FRAMES = 12
LIBC_NAMES = ("libc.so", "libc-", "ld-linux", "ld-2.", "ld.so", "libpthread")


def blank_row(core: str) -> dict:
    """A row with every field present and nothing known yet."""
    return {"core": core, "exe": None, "program": None, "status": "failed", "error": None,
            "glibc": None, "signal": None, "signal_name": None, "si_code": None,
            "fault_addr": None, "tid": None, "pc": None, "abort_message": None,
            "crash_site": None, "frames": [], "checked": False, "findings": [],
            "first_kind": None, "totals": None, "mallinfo2": None, "mmapped": None,
            "arenas": None, "notes": [], "ptconfig": None, "ptstats": None,
            "ptcheck": None, "seconds": None, "host": socket.gethostname()}


# ---------------------------------------------------------------- in the child process
def analyse_here(core: str, exe: Optional[str] = None, backend: str = DEFAULT_BACKEND,
                 debug_dirs: Sequence[str] = ()) -> dict:
    """The row for ``core``, computed in this process (what the child runs)."""
    from multiheap import cli
    from multiheap.elffile import inspect_core
    from multiheap.triage.notes import crash_notes

    start = time.monotonic()
    row = blank_row(core)
    try:
        info = inspect_core(core)
        row["exe"] = exe or info.exe
        row["program"] = os.path.basename(row["exe"]) if row["exe"] else None
        notes = crash_notes(core, info)
        for k in ("signal", "signal_name", "si_code", "fault_addr", "tid", "pc"):
            row[k] = notes[k]
        argv = ["--backend", backend, "--core", core]
        argv += ["--exe", exe] if exe else []
        for d in debug_dirs:
            argv += ["--debug-dir", d]
        args = cli.build_parser().parse_args(argv)
        target = cli._open(args)
    except (MultiheapError, cli.UsageExit) as e:
        row["error"] = " ".join(str(e).split())
        row["seconds"] = round(time.monotonic() - start, 3)
        return row
    try:
        _run_commands(row, target, info.files)
    finally:
        target.close()
    row["seconds"] = round(time.monotonic() - start, 3)
    return row


def _run_commands(row: dict, target, files: list[tuple[int, int, int, str]]) -> None:
    from multiheap.commands import COMMANDS as KNOWN
    from multiheap.commands import run_command
    from multiheap.session import Session

    session = Session(target, target.evaluate)
    errors = []
    for name in COMMANDS:
        if name not in KNOWN:
            row["notes"].append(f"{name}: not available in this multiheap")
            continue
        res = run_command(session, name, ["--json"])
        try:
            doc = json.loads(str(res.output))
        except ValueError:
            doc = {"command": name, "error": res.error or "no JSON document"}
        row[name] = doc
        if res.error:
            errors.append(res.error if res.error.startswith(name) else f"{name}: {res.error}")
        if name == "ptconfig" and (res.error or not doc.get("glibc")):
            if not res.error:  # not glibc (musl...): ptconfig says so in a note
                why = [n.get("message") for n in doc.get("notes") or [] if isinstance(n, dict)]
                errors.append(" ".join((why[0] if why and why[0] else
                                        "glibc not detected").split()))
            break  # no glibc heap to look at
    conf = row["ptconfig"] or {}
    row["glibc"] = conf.get("glibc")
    stats = row["ptstats"] or {}
    if "error" not in stats:
        for k in ("totals", "mallinfo2", "mmapped"):
            row[k] = stats.get(k)
        row["arenas"] = len(stats.get("arenas") or []) or None
        row["notes"] += [n.get("message", str(n)) if isinstance(n, dict) else str(n)
                         for n in stats.get("notes") or []]
    check = row["ptcheck"]
    if isinstance(check, dict) and "error" not in check:
        row["checked"] = True
        row["findings"] = list(check.get("findings") or [])
        if row["findings"] and isinstance(row["findings"][0], dict):
            row["first_kind"] = row["findings"][0].get("kind")
    try:
        row["frames"] = crash_frames(target, files)
    except Exception as e:  # a backtrace is extra information, never the row's end
        row["notes"].append(f"backtrace: {' '.join(str(e).split())[:200]}")
    row["crash_site"] = crash_site(row["frames"])
    row["abort_message"] = abort_message(target)
    row["error"] = "; ".join(_merge(errors)) or None
    row["status"] = "failed" if errors else "ok"


def _merge(errors: list[str]) -> list[str]:
    """``ptstats: X; ptcheck: X`` said once: ``ptstats, ptcheck: X``."""
    by: dict[str, list[str]] = {}
    for e in errors:
        name, sep, why = e.partition(": ")
        if not (sep and name.startswith("pt") and " " not in name):
            name, why = "", e
        by.setdefault(why, []).append(name)
    return [(", ".join(n for n in names if n) + ": " if any(names) else "") + why
            for why, names in by.items()]


def crash_frames(target, files: list[tuple[int, int, int, str]]) -> list[dict]:
    """The top frames of the thread the debugger selected on the core (gdb/MI only)."""
    mi = getattr(target, "mi", None)
    if mi is None:
        return []
    payload, _ = mi.request(f"-stack-list-frames 0 {MAX_FRAMES - 1}")
    frames = []
    for f in payload.get("stack") or []:
        f = f.get("frame", f) if isinstance(f, dict) else {}
        try:
            addr = int(f.get("addr", "0"), 16)
        except ValueError:
            addr = 0
        module = f.get("from") or next((n for s, e, _o, n in files if s <= addr < e), "")
        line = f.get("line")
        frames.append({"level": int(f.get("level", len(frames))), "addr": addr,
                       "func": f.get("func") or "??", "file": f.get("file") or None,
                       "line": int(line) if line and line.isdigit() else None,
                       "module": module or None})
    return frames


def in_libc(frame: dict) -> bool:
    """A frame in glibc itself (abort, raise, malloc_printerr...), not the program's."""
    return os.path.basename(frame.get("module") or "").startswith(LIBC_NAMES)


def crash_site(frames: list[dict]) -> Optional[str]:
    """Where the program was: its first frame outside glibc, without addresses (ASLR)."""
    for f in frames:
        if not in_libc(f):
            where = (f"{os.path.basename(f['file'])}:{f['line']}" if f.get("file")
                     else os.path.basename(f.get("module") or "") or "?")
            return f"{f['func']} ({where})"
    if frames:
        f = frames[0]
        return f"{f['func']} ({os.path.basename(f.get('module') or '?')})"
    return None


def abort_message(target) -> Optional[str]:
    """glibc's last fatal message (``free(): double free detected in tcache 2``), kept in
    ``__abort_msg`` (a pointer to {unsigned int size; char msg[]}), or None."""
    try:
        sym = target.symbol("__abort_msg")
        if not sym:
            return None
        ptr = int.from_bytes(target.read(sym, target.pointer_size),
                             "little" if target.endianness == "little" else "big")
        if not ptr:
            return None
        text = target.read(ptr + 4, 512).split(b"\0", 1)[0]
        return text.decode("utf-8", "replace").strip() or None
    except Exception:  # the message is a bonus; a core without it is normal
        return None


# -------------------------------------------------------------- in the Dask worker
def _die_with_parent() -> None:  # between fork and exec: killed if the worker dies
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc/*/task/*/children), deepest last."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a child, its process group and everything it started (gdb runs in a
    session of its own), then reap it."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


def analyse_core(core: str, exe: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT,
                 backend: str = DEFAULT_BACKEND, debug_dirs: Sequence[str] = ()) -> dict:
    """The row for ``core``: the analysis runs in a child process killed (with its
    debugger) after ``timeout`` seconds.  Never raises for a bad core: the row says why."""
    cmd = [sys.executable, "-m", "multiheap.triage.analyse", "--backend", backend, core]
    if exe:
        cmd += ["--exe", exe]
    for d in debug_dirs:
        cmd += ["--debug-dir", d]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_die_with_parent)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        row = blank_row(core)
        row["error"] = f"no answer within {timeout:g} s (the debugger hung; --timeout)"
        row["seconds"] = round(time.monotonic() - start, 3)
        return row
    except BaseException:
        kill_tree(proc)
        raise
    lines = out.decode("utf-8", "replace").strip().splitlines()
    try:
        row = json.loads(lines[-1])
    except (IndexError, ValueError):
        row = blank_row(core)
        why = (err.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        row["error"] = f"analysis died (exit status {proc.returncode}): {why[:200]}"
        row["seconds"] = round(time.monotonic() - start, 3)
    return row


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m multiheap.triage.analyse [--exe EXE] CORE``: print the core's row."""
    import argparse

    p = argparse.ArgumentParser(prog="multiheap.triage.analyse")
    p.add_argument("core")
    p.add_argument("--exe")
    p.add_argument("--backend", default=DEFAULT_BACKEND)
    p.add_argument("--debug-dir", dest="debug_dirs", action="append", default=[])
    a = p.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # unwind: the debugger is closed
        signal.signal(sig, lambda s, _f: sys.exit(128 + s))
    row = analyse_here(a.core, a.exe, a.backend, a.debug_dirs)
    sys.stdout.write(json.dumps(row, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
