"""The Target protocol over a gdb subprocess driven through gdb/MI (``--interpreter=mi3``).

Requests carry a token and return as soon as the matching ``^done``/``^error`` record
arrives (pygdbmi's ``GdbController.write()`` waits out its timeout instead).  Bulk
memory goes through ``dump binary memory`` into a private file, small reads through
``-data-read-memory-bytes``.  gdb runs in its own session (the terminal's Ctrl-C
reaches only us) and is told to die with us (PR_SET_PDEATHSIG); :meth:`close`
detaches from an attached process, kills a program we started, and reaps gdb.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Optional, Sequence

from pygdbmi.gdbmiparser import parse_response

from multiheap.adapters import gdbtext
from multiheap.elffile import (
    PT_LOAD,
    BadInputError,
    check_core_matches,
    inspect_core,
    read_elf,
)
from multiheap.errors import MultiheapError, NoTargetError, TargetMemoryError, UsageError
from multiheap.progio import dup_stdio, program_argv
from multiheap.target import Module, Region, Thread, TypeLayout

SMALL_READ = 0x4000  # up to this many bytes: hex through MI; above: dump to a file
TIMEOUT = 120.0
_HEXREAD = re.compile(r'begin="0x([0-9a-f]+)",offset="0x([0-9a-f]+)",end="0x([0-9a-f]+)",'
                      r'contents="([0-9a-f]*)"')
_LWP = re.compile(r"LWP (\d+)|process (\d+)")
_HANDLE = re.compile(r"Thread (0x[0-9a-f]+)")


class GdbMiError(MultiheapError):
    """gdb answered a request with ``^error``."""


class GdbDied(MultiheapError):
    """The gdb subprocess exited or stopped answering."""


def mi_quote(text: str) -> str:
    """A C string literal, as MI wants for arguments with spaces or quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class MiProcess:
    """One gdb in MI mode and a token-matched request loop over its pipes."""

    def __init__(self, gdb: str = "gdb", init: tuple[str, ...] = (),
                 pass_fds: tuple[int, ...] = ()) -> None:
        path = shutil.which(gdb)
        if path is None:
            raise BadInputError(f"{gdb} is not installed (run scripts/setup.sh, or "
                                "apt-get install gdb)")
        args = [path, "--interpreter=mi3", "-nx", "-q"]
        for c in ("set debuginfod enabled off", "set pagination off", "set width 0",
                  "set may-call-functions off",  # expressions never run target code
                  "set confirm off", "set style enabled off", *init):
            args += ["-iex", c]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent, pass_fds=pass_fds)
        self._fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self._buf = bytearray()
        self._token = 0
        self._pending: list[int] = []  # tokens whose answer an interrupt left unread
        self.stopped: Optional[dict] = None  # the last *stopped record
        self.exited: Optional[dict] = None  # =thread-group-exited, when the program ended

    # raw lines --------------------------------------------------------------------
    def _line(self, deadline: Optional[float]) -> str:
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[:i + 1]
                return line.decode("utf-8", "replace").rstrip("\r")
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], wait)
            if not ready:
                raise GdbDied("gdb did not answer in time")
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                raise GdbDied("gdb exited unexpectedly")
            self._buf += chunk

    def _note(self, line: str) -> None:
        """Remember the asynchronous records the adapter cares about."""
        if line.startswith("*stopped"):
            self.stopped = parse_response(line).get("payload") or {}
        elif line.startswith("=thread-group-exited"):
            self.exited = parse_response(line).get("payload") or {}

    # requests ---------------------------------------------------------------------
    def send(self, command: str) -> int:
        self._token += 1
        try:
            self.proc.stdin.write(f"{self._token}{command}\n".encode())  # type: ignore
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            raise GdbDied("gdb exited unexpectedly") from None
        return self._token

    def _finish_pending(self, timeout: float) -> None:
        """Read the answers of requests an interrupt abandoned (their errors too)."""
        while self._pending:
            try:
                self.wait_result(self._pending[0], timeout)
            except GdbMiError:
                pass

    def wait_result(self, token: int, timeout: Optional[float] = TIMEOUT,
                    raw: bool = False) -> tuple[dict, list[str]]:
        """Read until the result record of ``token``: (payload, console lines).

        With ``raw``, the payload is ``{"line": the unparsed record}``.
        """
        prefix = f"{token}^"
        deadline = None if timeout is None else time.monotonic() + timeout
        console: list[str] = []
        if token not in self._pending:
            self._pending.append(token)
        while True:
            line = self._line(deadline)
            if line.startswith(prefix):
                self._pending.remove(token)
                if line.startswith("error", len(prefix)):
                    msg = (parse_response(line).get("payload") or {}).get("msg", "error")
                    raise GdbMiError(msg.strip())
                if raw:
                    return {"line": line}, console
                return parse_response(line).get("payload") or {}, console
            if line.startswith('~"'):
                console.append(parse_response(line)["payload"] or "")
            elif line.startswith(("*", "=")):
                self._note(line)

    def request(self, command: str, timeout: Optional[float] = TIMEOUT
                ) -> tuple[dict, list[str]]:
        """Send one MI command and return (payload, console lines) of its answer."""
        self._finish_pending(timeout or TIMEOUT)
        return self.wait_result(self.send(command), timeout)

    def console(self, command: str, timeout: Optional[float] = TIMEOUT) -> str:
        """Run a CLI command and return what it printed."""
        _, lines = self.request(f"-interpreter-exec console {mi_quote(command)}", timeout)
        return "".join(lines)

    def wait_stopped(self, timeout: Optional[float] = None) -> dict:
        """Block until the program stops (``*stopped``) or exits."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.stopped = None
        while self.stopped is None and self.exited is None:
            line = self._line(deadline)
            if line.startswith(("*", "=")):
                self._note(line)
        return self.stopped or {}

    # ending -----------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, grace: float = 3.0) -> None:
        """End gdb: ask politely, then SIGTERM (gdb detaches or kills), then SIGKILL."""
        if self.alive():
            try:
                self.send("-gdb-exit")
                self.proc.wait(grace)
            except (GdbDied, subprocess.TimeoutExpired):
                pass
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if not self.alive():
                break
            try:
                self.proc.send_signal(sig)
                self.proc.wait(wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass


class GdbMiTarget:
    """A core file, an attached process or a started program, seen through gdb/MI."""

    name = "gdb-mi"

    def __init__(self, mi: MiProcess, how: str) -> None:
        self.mi = mi
        self.how = how  # core, attach or run
        self._state = "core" if how == "core" else "live"
        self._tmp = tempfile.mkdtemp(prefix="multiheap-mi-", dir=_tmp_base())
        self._dump = os.path.join(self._tmp, "mem")
        self._maps: Optional[list[Region]] = None
        self._ptr: Optional[int] = None
        self._arch: Optional[str] = None
        self._endian: Optional[str] = None
        self._pid: Optional[int] = None
        self._handles: dict[int, int] = {}  # thread number -> pthread_t, from gdb's names
        self._core_fd: Optional[int] = None
        self._core_segments: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
        self._closed = False
        self.guarded = False  # gdb refuses writes to memory and registers (forbid_writes)

    def use_core_file(self, path: str) -> None:
        """Let bulk reads come from the core file itself (sorted PT_LOAD segments)."""
        elf = read_elf(path)
        self._core_segments = sorted((va, fs, off) for pt, off, va, fs, _ms in elf.phdrs
                                     if pt == PT_LOAD and fs)
        self._core_fd = os.open(path, os.O_RDONLY)

    # the machine --------------------------------------------------------------------
    def _eval(self, expr: str, thread: Optional[int] = None) -> str:
        opt = f"--thread {thread} " if thread is not None else ""
        payload, _ = self.mi.request(f"-data-evaluate-expression {opt}{mi_quote(expr)}")
        return payload.get("value", "")

    @property
    def pointer_size(self) -> int:
        if self._ptr is None:
            self._ptr = int(self._eval("sizeof(void *)"))
        return self._ptr

    @property
    def endianness(self) -> str:
        if self._endian is None:  # fixed for the session, like the word size
            self._endian = "big" if "big" in self.mi.console("show endian") else "little"
        return self._endian

    @property
    def arch(self) -> str:
        if self._arch is None:
            text = self.mi.console("show architecture")
            m = re.search(r'currently "([^"]+)"', text) or re.search(r'set to "([^"]+)"', text)
            name = m.group(1) if m else ""
            self._arch = "x86_64" if "x86-64" in name else \
                ("i386" if name.startswith("i386") else name)
        return self._arch

    @property
    def state(self) -> str:
        return "exited" if self.mi.exited is not None else self._state

    @property
    def pid(self) -> Optional[int]:
        if self._pid is None:
            payload, _ = self.mi.request("-list-thread-groups")
            for g in payload.get("groups", []):
                if g.get("pid"):
                    self._pid = int(g["pid"])
                    break
        return self._pid

    def generation(self) -> int:
        return 0  # the program never runs while we look at it

    # memory ---------------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        if self._closed:
            raise NoTargetError("the gdb/MI session is closed")
        if size <= 0:
            return b""
        if size <= SMALL_READ:
            return self._read_hex(addr, size)
        if self._core_fd is not None:
            data = self._read_core(addr, size)
            if data is not None:
                return data
        return self._read_dump(addr, size)

    def _read_core(self, addr: int, size: int) -> Optional[bytes]:
        """Bulk bytes straight from the core file's segments (what gdb would read from
        it too), when they hold the whole range; None sends the read through gdb."""
        parts = []
        want, end = addr, addr + size
        for va, fs, off in self._core_segments:
            if va <= want < va + fs:
                n = min(end, va + fs) - want
                parts.append(os.pread(self._core_fd, n, off + want - va))
                want += n
                if want >= end:
                    data = b"".join(parts)
                    return data if len(data) == size else None
        return None

    def _read_hex(self, addr: int, size: int) -> bytes:
        self.mi._finish_pending(TIMEOUT)
        tok = self.mi.send(f"-data-read-memory-bytes {addr:#x} {size}")
        try:
            payload, _ = self.mi.wait_result(tok, TIMEOUT, raw=True)
        except GdbMiError as e:
            raise TargetMemoryError(addr, size, str(e)) from None
        blocks = _HEXREAD.findall(payload["line"])
        if len(blocks) != 1 or int(blocks[0][0], 16) + int(blocks[0][1], 16) != addr \
                or len(blocks[0][3]) != 2 * size:
            have = sum(len(b[3]) // 2 for b in blocks)
            raise TargetMemoryError(addr, size, f"only {have} bytes readable")
        return bytes.fromhex(blocks[0][3])

    def _read_dump(self, addr: int, size: int) -> bytes:
        try:
            self.mi.console(f"dump binary memory {self._dump} {addr:#x} {addr + size:#x}")
            with open(self._dump, "rb") as f:
                data = f.read()
        except GdbMiError as e:
            raise TargetMemoryError(addr, size, str(e)) from None
        finally:
            try:
                os.unlink(self._dump)
            except OSError:
                pass
        if len(data) != size:
            raise TargetMemoryError(addr, size, f"only {len(data)} bytes readable")
        return data

    # regions and modules --------------------------------------------------------------
    def regions(self) -> list[Region]:
        if self._maps is None:
            try:
                named = gdbtext.proc_mappings(self.mi.console("info proc mappings"))
            except GdbMiError:
                named = []
            if self._state == "core" or not named:
                sections = gdbtext.core_sections(
                    self.mi.console("maintenance info sections -all-objects"))
                named = gdbtext.merge_core_regions(named, sections) if named else sections
            self._maps = named
        return self._maps

    def modules(self) -> list[Module]:
        from multiheap.elffile import file_build_id

        out = []
        payload, _ = self.mi.request("-list-thread-groups")
        for g in payload.get("groups", []):
            exe = g.get("executable")
            if exe:
                out.append(Module(exe, 0, file_build_id(exe)))
        payload, _ = self.mi.request("-file-list-shared-libraries")
        for lib in payload.get("shared-libraries", []):
            path = lib.get("host-name") or lib.get("target-name") or ""
            ranges = lib.get("ranges") or [{}]
            base = int(ranges[0].get("from", "0"), 16) if ranges[0] else 0
            out.append(Module(path, base, file_build_id(path)))
        return out

    # symbols and types ----------------------------------------------------------------
    def symbol(self, name: str, module: Optional[str] = None) -> Optional[int]:
        try:
            return gdbtext.parse_value(self._eval(f"&'{name}'"), 8 * self.pointer_size)
        except GdbMiError:
            return None

    def type_layout(self, name: str) -> Optional[TypeLayout]:
        try:
            text = self.mi.console(f"ptype/o struct {name}")
        except GdbMiError:
            return None
        return gdbtext.ptype_layout(name, text)

    def evaluate(self, expr: str) -> int:
        """An address expression as gdb reads it (``ptchunk $rax``, ``demo_ptrs[3]``),
        with gdb's guards against writes and calls on (:func:`forbid_writes`); an
        assignment or increment is refused before gdb sees it."""
        try:
            return int(expr, 0)  # the engine masks a negative one, refuses a huge one
        except ValueError:
            pass
        op = gdbtext.write_operator(expr)
        if op is not None:
            raise UsageError(gdbtext.write_refusal(expr))
        bits = 8 * self.pointer_size
        if not self.guarded:
            raise UsageError(f"cannot evaluate {expr[:60]!r}: gdb would not forbid writes "
                             "to the target, so only numbers are taken as addresses")
        try:
            v = gdbtext.parse_value(self._eval(expr), bits)
            if v is None:  # an array or struct: its address
                v = gdbtext.parse_value(self._eval(f"&({expr})"), bits)
        except GdbMiError as e:
            refusal = gdbtext.guard_refusal(expr, str(e))
            if refusal:
                raise UsageError(refusal) from None
            raise MultiheapError(str(e)) from None
        if v is None:
            raise MultiheapError(f"{expr} is not a number or an address")
        return v

    def forbid_writes(self) -> None:
        """Turn gdb's ``may-write-memory`` and ``may-write-registers`` off for the rest of
        the session: this gdb only reads (a detach or kill at the end writes neither).

        gdb 13 will not change ``may-write-registers`` while a process is live ("Cannot
        change this setting while the inferior is running"; it checks only the current
        inferior), so that one is set from an empty inferior added for the purpose and
        removed again; the selected thread is restored.  Until both are off,
        :meth:`evaluate` takes only numbers.
        """
        for name in ("may-write-memory", "may-write-registers"):
            try:
                self.mi.console(f"set {name} off")
            except GdbMiError:
                self._from_empty_inferior(f"set {name} off")
        self.guarded = all(" is off" in self.mi.console(f"show {name}")
                           for name in ("may-write-memory", "may-write-registers"))

    def _from_empty_inferior(self, command: str) -> None:
        payload, _ = self.mi.request("-thread-info")
        current = payload.get("current-thread-id")
        payload, _ = self.mi.request("-add-inferior --no-connection")
        empty = payload.get("inferior", "")
        try:
            self.mi.request(f"-interpreter-exec --thread-group {empty} console "
                            f"{mi_quote(command)}")
        except GdbMiError:
            pass  # forbid_writes() then finds the setting still on
        finally:
            if current:
                self.mi.request(f"-thread-select {current}")
            self.mi.request(f"-remove-inferior {empty}")

    # threads --------------------------------------------------------------------------
    def threads(self) -> list[Thread]:
        payload, _ = self.mi.request("-thread-info")
        out = []
        self._handles = {}
        for t in payload.get("threads", []):
            target_id = t.get("target-id", "")
            m = _LWP.search(target_id)
            tid = int(m.group(1) or m.group(2)) if m else (self.pid or 0)
            out.append(Thread(int(t["id"]), tid, t.get("name", "")))
            h = _HANDLE.search(target_id)
            if h:
                self._handles[int(t["id"])] = int(h.group(1), 16)
        return sorted(out, key=lambda t: t.num)

    def thread_pointer(self, thread: Thread) -> Optional[int]:
        """$fs_base / $gs_base; else pthread_t (the thread pointer on x86), as gdb names
        the thread (``Thread 0x... (LWP n)``): i386 gdb has no $gs_base."""
        reg = "$fs_base" if self.arch == "x86_64" else "$gs_base"
        try:
            v = gdbtext.parse_value(self._eval(reg, thread.num), 8 * self.pointer_size)
        except GdbMiError:
            v = None
        if v is not None:
            return v
        if thread.num not in self._handles:
            self.threads()
        return self._handles.get(thread.num)

    def tls_symbol(self, name: str, thread: Thread) -> Optional[int]:
        try:
            return gdbtext.parse_value(self._eval(f"&'{name}'", thread.num),
                                       8 * self.pointer_size)
        except GdbMiError:
            return None

    # ending ---------------------------------------------------------------------------
    def close(self) -> None:
        """Detach (attached process) or kill (started program), end gdb, drop files."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.mi.alive() and self.how == "attach" and self.mi.exited is None:
                self.mi.request("-target-detach", timeout=10)
        except MultiheapError:
            pass
        finally:
            self.mi.terminate()
            shutil.rmtree(self._tmp, ignore_errors=True)
            if self._core_fd is not None:
                os.close(self._core_fd)
                self._core_fd = None

    def __enter__(self) -> GdbMiTarget:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tmp_base() -> Optional[str]:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _first_line(e: Exception) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def open_target(core: Optional[str] = None, exe: Optional[str] = None,
                pid: Optional[int] = None, run: Optional[str] = None,
                brk: Optional[str] = None, gdb: str = "gdb",
                debug_dirs: Sequence[str] = (), **_options) -> GdbMiTarget:
    """Start gdb on a core, a PID or a program to run; return the stopped target.

    ``debug_dirs`` are searched for separate debug files before gdb's own default.
    """
    if sum(x is not None for x in (core, pid, run)) != 1:
        raise BadInputError("give exactly one of --core, --pid or --run")
    if core is not None:
        info = inspect_core(core)
        if exe is None:
            exe = info.exe
            if exe is None or not os.path.isfile(exe):
                raise BadInputError(f"cannot find the executable of {core} "
                                    f"({exe or 'not named in the core'}): give --exe")
        check_core_matches(info, exe)
    elif pid is not None:
        _check_pid(pid)
    else:
        assert run is not None
        exe, *run_args = program_argv(run)

    stdio = dup_stdio() if run is not None else ()
    try:
        mi = MiProcess(gdb, pass_fds=stdio)
    finally:
        for fd in stdio:  # gdb holds its own copies, for the program
            os.close(fd)
    target = GdbMiTarget(mi, "core" if core else "attach" if pid is not None else "run")
    try:
        mi.request("-gdb-set mi-async on")
        if debug_dirs:
            _add_debug_dirs(mi, debug_dirs)
        if core is not None:
            assert exe is not None
            _load(mi, exe)
            try:
                mi.request(f"-target-select core {_path_arg(core)}")
            except GdbMiError as e:
                raise BadInputError(f"gdb cannot open core {core}: {_first_line(e)}") from None
            target.use_core_file(core)
        elif pid is not None:
            try:
                mi.request(f"-target-attach {pid}")
            except GdbMiError as e:
                raise BadInputError(f"cannot attach to process {pid}: {_first_line(e)}"
                                    + _ptrace_hint()) from None
            mi.wait_stopped(TIMEOUT)
        else:
            _load(mi, exe)  # type: ignore[arg-type]
            if brk:
                try:
                    mi.request(f"-break-insert {mi_quote(brk)}")
                except GdbMiError as e:
                    raise BadInputError(f"--break {brk}: {_first_line(e)}") from None
            # the program's stdin, stdout and stderr are ours (gdb's own are the MI pipes):
            # gdb's shell starts it with the copies gdb inherited, then closes them
            i, o, e = stdio
            args = f"<&{i} >&{o} 2>&{e} {i}<&- {o}>&- {e}>&- " \
                + " ".join(shlex.quote(a) for a in run_args)
            mi.request(f"-exec-arguments {args}")
            mi.request("-exec-run")
            stop = mi.wait_stopped(None)
            if mi.exited is not None or stop.get("reason", "").startswith("exited"):
                code = stop.get("exit-code") or (mi.exited or {}).get("exit-code") or "0"
                raise BadInputError(f"{run} exited (status {int(code, 8)}) before it "
                                    "stopped" + (f" at {brk}" if brk else ""))
        target.forbid_writes()
        return target
    except BaseException:
        target.close()
        raise




def _add_debug_dirs(mi: MiProcess, dirs: Sequence[str]) -> None:
    """Put ``dirs`` before gdb's default ``debug-file-directory`` (kept, e.g. /usr/lib/debug)."""
    shown = mi.console("show debug-file-directory")
    m = re.search(r'"(.*)"', shown)
    default = [d for d in (m.group(1) if m else "/usr/lib/debug").split(":") if d]
    path = ":".join(dict.fromkeys([*dirs, *default]))
    mi.console(f"set debug-file-directory {path}")  # (-gdb-set would keep the quotes)


def _load(mi: MiProcess, exe: str) -> None:
    try:
        mi.request(f"-file-exec-and-symbols {_path_arg(exe)}")
    except GdbMiError as e:
        raise BadInputError(f"gdb cannot load {exe}: {_first_line(e)}") from None


def _check_pid(pid: int) -> None:
    if pid <= 0:
        raise BadInputError(f"bad process id {pid}")
    if pid == os.getpid():
        raise BadInputError("multiheap cannot attach to itself")
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        raise BadInputError(f"no process {pid}") from None
    state = status.get("State", "").strip()
    if state.startswith(("Z", "X")):
        raise BadInputError(f"process {pid} has exited (state {state})")
    tracer = int(status.get("TracerPid", "0").strip() or 0)
    if tracer:
        raise BadInputError(f"process {pid} is already traced by process {tracer}")


def _ptrace_hint() -> str:
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = f.read().strip()
    except OSError:
        return ""
    if scope != "0":
        return f" (kernel.yama.ptrace_scope is {scope}: run as root or lower it)"
    return ""


def _path_arg(path: str) -> str:
    path = os.path.abspath(path)
    return mi_quote(path) if any(c.isspace() or c in "\"'\\" for c in path) else path
