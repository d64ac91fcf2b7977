"""lldb frontend: ``command script import /path/to/plugins/lldb.py`` adds every pt* command.

lldb imports this file under the module name ``lldb``, that is, it runs it inside
lldb's own module.  So the file does two jobs: loaded that way it only bootstraps
(puts multiheap's virtualenv on ``sys.path``, restores lldb's module identity, imports
itself again as ``multiheap.plugins.lldb``); imported under that name it defines the
commands.  Address arguments are C expressions (variables, members, elements, ``&``,
``*``, casts, arithmetic, ``$registers``) read by multiheap.expr from lldb's look-ups:
nothing is evaluated, allocated, written or run in the target.
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
    from multiheap.adapters.lldb_expr import evaluate as evaluate_address
    from multiheap.commands import COMMANDS, run_command
    from multiheap.errors import NoTargetError
    from multiheap.session import Session

    _SESSIONS: dict[int, Session] = {}

    def session_for(debugger) -> Session:
        """One multiheap session per lldb debugger (its tags and overrides)."""
        key = debugger.GetID()
        if key not in _SESSIONS:
            _SESSIONS[key] = Session(LldbTarget(debugger))
            from multiheap.adapters.lldb_trace import LldbTracer  # pttrace, pthistory
            _SESSIONS[key].tracer = LldbTracer(debugger)  # type: ignore[attr-defined]
        return _SESSIONS[key]

    def evaluate(debugger, exe_ctx, text: str) -> int:
        """An address argument (``$rsp+8``, ``&var``, ``ptr->next``, ``(char *)a[1]+16``),
        read by multiheap's own expression reader from lldb's variables, registers and
        types.  lldb's expression evaluator is never used: even without JIT it maps
        memory into the target and writes there.  Assignments, ``++``/``--`` and calls
        are refused with one line, before anything is looked up."""
        target = debugger.GetSelectedTarget()
        if not target or not target.IsValid():
            raise NoTargetError("no target (file PROG, then run, attach or load a core)")
        frame = exe_ctx.GetFrame() if exe_ctx is not None else None
        if frame is None or not frame.IsValid():
            thread = target.GetProcess().GetSelectedThread()
            frame = thread.GetSelectedFrame() if thread.IsValid() else None
        return evaluate_address(target, frame, text)

    def use_color(debugger) -> bool:
        """lldb's use-color, on a terminal, without NO_COLOR (as lldb's own output)."""
        import os

        return bool(debugger.GetUseColor()) and os.isatty(1) and not os.environ.get("NO_COLOR")

    STREAM_AFTER = 8 << 20  # characters kept for the command's result before streaming

    class _Output:
        """Where a command's output goes, as it is made.

        Up to ``STREAM_AFTER`` characters go into the command's result, as every lldb
        command's do (a script's ``HandleCommand`` reads them there).  A longer output
        (ptlist of a big heap) goes to lldb's output file (``debugger.GetOutputFile()``,
        what lldb prints results to) piece by piece instead, held back first so its order
        is kept: lldb's result would hold all of it in memory (267 MB for 1M chunks)."""

        def __init__(self, debugger, result) -> None:
            self.debugger, self.result = debugger, result
            self.held: list[str] = []
            self.size = 0
            self.file = None
            self.streaming = False

        def write(self, text: str) -> None:
            if not self.streaming:
                self.held.append(text)
                self.size += len(text)
                if self.size <= STREAM_AFTER:
                    return
                self.streaming = True
                file = self.debugger.GetOutputFile()
                self.file = file if file is not None and file.IsValid() else None
                text, self.held = "".join(self.held), []
            if self.file is None:  # no output file: the result it is, however long
                self.result.Print(text)
            else:
                self.file.Write(text.encode("utf-8", "replace"))

        def close(self, keep: bool = True) -> None:
            """The end: what is held goes to the result (dropped after an error, whose
            own line or JSON document stands alone, as before streaming)."""
            if self.file is not None:
                self.file.Flush()
            elif self.held and keep:
                self.result.Print("".join(self.held))
            self.held = []

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
            out = _Output(debugger, result)
            res = run_command(session, self.name, command or "", color=use_color(debugger),
                              sink=out.write)
            out.close(keep=not res.error)
            if res.output:  # with --json, an error's one JSON document too
                result.Print(str(res.output))
            if res.error:
                result.SetError(" ".join(res.error.split("\n")))
                result.SetStatus(lldb.eReturnStatusFailed)
                return
            result.SetStatus(lldb.eReturnStatusSuccessFinishResult)

    def register(debugger, internal_dict: Optional[dict] = None) -> None:
        """Add every command to ``debugger`` (again after a re-import: overwrites).

        ``MULTIHEAP_DEBUG_DIRS`` (colon-separated) join lldb's
        ``target.debug-file-search-paths``, for the targets made after this.
        """
        from multiheap.adapters.lldb_open import add_debug_dirs
        from multiheap.debugfile import extra_debug_dirs

        add_debug_dirs(debugger, extra_debug_dirs())
        module = globals()
        if internal_dict is not None:
            internal_dict["_multiheap_lldb"] = _ModuleProxy
        ci = debugger.GetCommandInterpreter()
        ret = lldb.SBCommandReturnObject()
        ci.HandleCommand("help command script add", ret)
        # lldb 17+: arguments complete as `frame variable`'s (`ptchunk kee` -> `keep`);
        # lldb 16 has no -C, and its commands go on without completion.
        completion = " -C variable-path" if "completion-type" in ret.GetOutput() else ""
        for name in COMMANDS:
            cls = type(f"Cmd_{name}", (_PtCommand,), {"name": name})
            module[cls.__name__] = cls
            setattr(_ModuleProxy, cls.__name__, cls)
            add = f"command script add{completion} -c _multiheap_lldb.{cls.__name__} {name}"
            ret = lldb.SBCommandReturnObject()
            ci.HandleCommand(add.replace(" add", " add -o", 1), ret)
            if not ret.Succeeded():
                ci.HandleCommand(add, ret)

    class _ModuleProxy:
        """What ``_multiheap_lldb`` names in lldb's session dictionary: the command classes."""
