"""``multiheap trace`` over gdb/MI: a gdb subprocess runs the gdb tracer itself.

The gdb plugin is sourced in the gdb the CLI starts, so every stop is handled inside
gdb (no MI round trip per call); this side only starts the program (or attaches), turns
the trace on once libc is loaded, waits for the end, and ends everything cleanly:
the program's exit, crash or death, Ctrl-C (--pid: detach, the process keeps running),
or a stop at an error (--break-on-error).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Callable, Optional

from multiheap.adapters.gdbmi_process import GdbMiError, MiProcess, mi_quote
from multiheap.errors import MultiheapError, UsageError
from multiheap.progio import dup_stdio
from multiheap.trace import TraceOptions

_SOLIB_TRIES = 20


def _plugin() -> str:
    import multiheap.plugins as plugins

    return os.path.join(os.path.dirname(os.path.abspath(plugins.__file__)), "gdb.py")




class MiTrace:
    """One traced program (``run``) or process (``pid``) under a gdb of our own."""

    def __init__(self, opts: TraceOptions, run: Optional[str] = None,
                 pid: Optional[int] = None) -> None:
        self.opts, self.run, self.pid = opts, run, pid
        os.environ.setdefault("MULTIHEAP_VENV", sys.prefix)  # for the plugin in gdb
        self._fds = dup_stdio() if run is not None else ()
        try:
            self.mi = MiProcess("gdb", pass_fds=self._fds)
        finally:
            for fd in self._fds:
                os.close(fd)
        self.stopped_at_error: Optional[dict] = None
        self._shell_target = None  # the shell's view of the stopped program, if one ran

    # helpers -------------------------------------------------------------------------
    def _py(self, code: str) -> str:
        return self.mi.console("python " + code)

    def _status(self) -> dict:
        out = self._py("import json as _j; gdb.write(_j.dumps(SESSION.tracer.status()) + "
                       "chr(10))")
        for line in out.splitlines()[::-1]:
            if line.startswith("{"):
                return json.loads(line)
        raise MultiheapError("the tracer in gdb did not answer")

    def _start_trace(self) -> Optional[str]:
        """Turn the trace on in gdb; the reason when it cannot be (yet)."""
        o = self.opts
        out = self._py(
            "exec(\"from multiheap.trace import TraceOptions as _O\\ntry:\\n "
            f"SESSION.tracer.start(_O(backtrace={o.backtrace}, "
            f"break_on_error={o.break_on_error}, watch={o.watch}, output={o.output!r}, "
            f"complete={o.complete}))\\n gdb.write('@ok' + chr(10))\\nexcept Exception as _e:\\n "
            "gdb.write('@' + str(_e) + chr(10))\")")
        lines = [ln for ln in out.splitlines() if ln.startswith("@")]
        why = lines[-1][1:] if lines else "no answer from gdb"
        return None if why == "ok" else why

    # the run ---------------------------------------------------------------------------
    def start(self) -> None:
        mi = self.mi
        mi.request("-gdb-set mi-async on")
        mi.console(f"source {_plugin()}")
        if self.pid is not None:
            try:
                mi.request(f"-target-attach {self.pid}")
            except GdbMiError as e:
                raise UsageError(f"cannot attach to process {self.pid}: {e}") from None
            mi.wait_stopped(60)
            why = self._start_trace()
            if why:
                raise UsageError(f"cannot trace process {self.pid}: {why}")
            return
        assert self.run is not None
        argv = shlex.split(self.run)
        exe = os.path.abspath(argv[0])
        try:
            mi.request(f"-file-exec-and-symbols {mi_quote(exe)}")
        except GdbMiError as e:
            raise UsageError(f"gdb cannot load {argv[0]}: {e}") from None
        i, o, e = self._fds
        args = f"<&{i} >&{o} 2>&{e} {i}<&- {o}>&- {e}>&- " + " ".join(
            shlex.quote(a) for a in argv[1:])
        mi.request(f"-exec-arguments {args}")
        mi.console("set stop-on-solib-events 1")
        mi.request("-exec-run")
        for _ in range(_SOLIB_TRIES):
            mi.wait_stopped(60)
            if mi.exited is not None:
                raise UsageError(f"{argv[0]} exited before libc was loaded")
            why = self._start_trace()
            if why is None:
                break
            if "libc is not loaded" not in why:
                raise UsageError(f"cannot trace: {why}")
            mi.request("-exec-continue")
        else:
            raise UsageError("libc never loaded")
        mi.console("set stop-on-solib-events 0")

    def wait(self, on_error: Optional[Callable[[dict], None]] = None) -> str:
        """Let the program run until it ends; returns how it ended.  A stop at an error
        (--break-on-error) calls ``on_error`` with the tracer's status, then ends."""
        mi = self.mi
        while True:
            mi.request("-exec-continue")
            stop = mi.wait_stopped(None)
            if mi.exited is not None or stop.get("reason", "").startswith("exited"):
                return "exited"
            if stop.get("reason") == "signal-received":
                continue  # delivered on the next continue: the program handles it or dies
            st = self._status()
            if st.get("running") and st.get("errors") and self.opts.break_on_error:
                if on_error is not None:
                    on_error(st)
                self._py("SESSION.tracer.stop('stopped at an error')")
                return "error"

    def shell(self) -> None:
        """--break-on-error on a terminal: multiheap's shell on the program stopped at the
        error (the same gdb; the trace goes on until the shell ends)."""
        from multiheap.adapters.gdbmi import GdbMiTarget
        from multiheap.session import Session
        from multiheap.shell import run_shell

        target = GdbMiTarget(self.mi, "attach" if self.pid is not None else "run")
        self._shell_target = target  # closed with gdb, after the trace's summary
        run_shell(Session(target, target.evaluate))

    def interrupt(self) -> None:
        """Ctrl-C: stop the program (all threads) where it is."""
        mi = self.mi
        try:
            mi.send("-exec-interrupt")
            mi.wait_stopped(10)
        except MultiheapError:
            pass

    def finish(self, detach: bool) -> None:
        """End the trace (the summary record) and gdb; --pid: detach first."""
        mi = self.mi
        try:
            if mi.alive() and mi.exited is None:
                try:
                    st = self._status()
                    if st.get("running"):
                        self._py(f"SESSION.tracer.stop({'detached' if detach else 'killed'!r})")
                except MultiheapError:
                    pass
                if detach:
                    mi.request("-target-detach", timeout=10)
                else:
                    mi.console("kill", timeout=10)
        except MultiheapError:
            pass
        finally:
            mi.terminate()
            if self._shell_target is not None:
                self._shell_target.close()  # its files; gdb has ended already
