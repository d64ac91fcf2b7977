"""lldb frontend: ``command script import /path/to/plugins/lldb.py`` adds every pt* command.

lldb imports this file under the module name ``lldb``, that is, it runs it inside
lldb's own module.  So the file does two jobs: loaded that way it only bootstraps
(puts multiheap's virtualenv on ``sys.path``, restores lldb's module identity, imports
itself again as ``multiheap.plugins.lldb``); imported under that name it defines the
commands.  Address arguments are lldb expressions, evaluated without running any code
in the target (no JIT, no function calls).
"""

from __future__ import annotations

if __name__ == "lldb":  # `command script import`: we are running inside lldb's module

    def _multiheap_bootstrap() -> None:
        import importlib
        import importlib.util
        import os
        import site
        import sys

        g = globals()
        here = os.path.dirname(os.path.abspath(g["__file__"]))
        pkg = g.get("__path__")
        if pkg:  # lldb re-executed its module with our spec: give it back its own
            init = os.path.join(list(pkg)[0], "__init__.py")
            spec = importlib.util.spec_from_file_location("lldb", init,
                                                          submodule_search_locations=pkg)
            if spec is not None:
                g.update(__file__=init, __spec__=spec, __loader__=spec.loader,
                         __package__="lldb", __cached__=spec.cached)
        # The venv goes on sys.path even when some "multiheap" is importable already
        # (lldb puts "." on sys.path: a checkout there lacks the installed
        # multiheap.adapters / multiheap.plugins mapping that the venv provides).
        try:
            found = importlib.util.find_spec("multiheap.plugins") is not None
        except ImportError:
            found = False
        if not found:
            ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
            for venv in (os.environ.get("MULTIHEAP_VENV", ""), os.path.join(here, "..", ".venv")):
                if not venv:
                    continue
                sp = os.path.realpath(os.path.join(venv, "lib", ver, "site-packages"))
                if os.path.isdir(sp) and sp not in sys.path:
                    site.addsitedir(sp)
            importlib.invalidate_caches()
        repo = os.path.normpath(os.path.join(here, ".."))
        if importlib.util.find_spec("multiheap") is None and \
                os.path.isfile(os.path.join(repo, "multiheap", "__init__.py")):
            sys.path.append(repo)  # a checkout used without installing
            importlib.invalidate_caches()
        importlib.import_module("multiheap.plugins.lldb")

    def __lldb_init_module(debugger, internal_dict) -> None:  # noqa: N807
        import sys

        sys.modules["multiheap.plugins.lldb"].register(debugger, internal_dict)

    _multiheap_bootstrap()
    del _multiheap_bootstrap

else:
    from typing import Optional

    import lldb  # type: ignore[import-not-found]

    from multiheap.adapters.lldb import LldbTarget
    from multiheap.commands import COMMANDS, run_command
    from multiheap.session import Session

    _SESSIONS: dict[int, Session] = {}

    def session_for(debugger) -> Session:
        """One multiheap session per lldb debugger (its tags and overrides)."""
        key = debugger.GetID()
        if key not in _SESSIONS:
            _SESSIONS[key] = Session(LldbTarget(debugger))
        return _SESSIONS[key]

    def _options():
        opts = lldb.SBExpressionOptions()
        opts.SetAllowJIT(False)  # the IR interpreter only: no code runs in the target
        opts.SetIgnoreBreakpoints(True)
        opts.SetTryAllThreads(False)
        opts.SetStopOthers(True)
        opts.SetUnwindOnError(True)
        opts.SetTimeoutInMicroSeconds(2_000_000)
        opts.SetFetchDynamicValue(lldb.eNoDynamicValues)
        opts.SetSuppressPersistentResult(True)
        return opts

    def _expression_error(text: str) -> str:
        """lldb's several-line expression error as one line."""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        msg = (errors or lines or ["invalid expression"])[0].removeprefix("error:").strip()
        if "<user expression" in msg:
            msg = msg.split(": ", 1)[-1]
        if "Interpreter doesn't handle" in msg or "without a running target" in msg:
            msg = "needs code to run in the target (function calls are not allowed)"
        return msg

    def evaluate(debugger, exe_ctx, text: str) -> int:
        """An lldb expression as an address (``$rsp+8``, ``&var``, ``ptr->next``)."""
        try:
            return int(text, 0)
        except ValueError:
            pass
        target = debugger.GetSelectedTarget()
        frame = exe_ctx.GetFrame() if exe_ctx is not None else None
        if frame is None or not frame.IsValid():
            thread = target.GetProcess().GetSelectedThread()
            frame = thread.GetSelectedFrame() if thread.IsValid() else None
        if frame is not None and frame.IsValid():
            v = frame.EvaluateExpression(text, _options())
        else:
            v = target.EvaluateExpression(text, _options())
        err = v.GetError()
        if not v.IsValid() or err.Fail():
            raise ValueError(_expression_error(err.GetCString() or ""))
        ty = v.GetType().GetCanonicalType()
        if ty.IsArrayType() or ty.GetTypeClass() == lldb.eTypeClassFunction:
            addr = v.GetLoadAddress()
            if addr == lldb.LLDB_INVALID_ADDRESS:
                raise ValueError("has no address")
            return addr
        if not (ty.IsPointerType() or ty.GetTypeFlags() & (lldb.eTypeIsScalar |
                                                           lldb.eTypeIsEnumeration)):
            raise ValueError(f"is a {v.GetTypeName()}, not an address")
        mask = (1 << (8 * target.GetAddressByteSize())) - 1
        return v.GetValueAsUnsigned() & mask

    class _PtCommand:
        """An lldb command object for one multiheap command (``command script add -c``)."""

        name = ""

        def __init__(self, debugger, internal_dict) -> None:
            self.debugger = debugger

        def get_short_help(self) -> str:
            return COMMANDS[self.name].summary

        def get_long_help(self) -> str:
            cmd = COMMANDS[self.name]
            return cmd.summary + "\n\n" + cmd.parser.format_help()

        def __call__(self, debugger, command: str, exe_ctx, result) -> None:
            session = session_for(debugger)
            session.evaluate = lambda text: evaluate(debugger, exe_ctx, text)
            res = run_command(session, self.name, command or "",
                              color=bool(debugger.GetUseColor()))
            if res.error:
                result.SetError(" ".join(res.error.split("\n")))
                result.SetStatus(lldb.eReturnStatusFailed)
                return
            if res.output:
                result.Print(str(res.output))
            result.SetStatus(lldb.eReturnStatusSuccessFinishResult)

    def register(debugger, internal_dict: Optional[dict] = None) -> None:
        """Add every command to ``debugger`` (again after a re-import: overwrites).

        ``MULTIHEAP_DEBUG_DIRS`` (colon-separated) join lldb's
        ``target.debug-file-search-paths``, for the targets made after this.
        """
        from multiheap.adapters.lldb import add_debug_dirs
        from multiheap.debugfile import extra_debug_dirs

        add_debug_dirs(debugger, extra_debug_dirs())
        module = globals()
        if internal_dict is not None:
            internal_dict["_multiheap_lldb"] = _ModuleProxy
        for name in COMMANDS:
            cls = type(f"Cmd_{name}", (_PtCommand,), {"name": name})
            module[cls.__name__] = cls
            setattr(_ModuleProxy, cls.__name__, cls)
            ret = lldb.SBCommandReturnObject()
            debugger.GetCommandInterpreter().HandleCommand(
                f"command script add -o -c _multiheap_lldb.{cls.__name__} {name}", ret)
            if not ret.Succeeded():
                debugger.GetCommandInterpreter().HandleCommand(
                    f"command script add -c _multiheap_lldb.{cls.__name__} {name}", ret)

    class _ModuleProxy:
        """What ``_multiheap_lldb`` names in lldb's session dictionary: the command classes."""
