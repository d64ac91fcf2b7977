"""``multiheap triage CORE...``: analyse many core files in parallel on a Dask cluster.

Without ``--scheduler`` a LocalCluster of ``--workers`` processes (one thread each) runs
on this machine; with ``--scheduler tcp://host:port`` an existing cluster does, whose
workers have multiheap installed and see the same paths.  Each core is one task,
``analyse_core`` (multiheap.triage.analyse).  A task whose worker dies is retried once
(the local cluster's ``distributed.scheduler.allowed-failures`` is 1; an existing
cluster keeps its own setting) and then reported as that core's error.
Dask, distributed and pyarrow are imported only here, only when triage runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from typing import Optional

from multiheap import elffile
from multiheap.errors import MultiheapError
from multiheap.triage.analyse import DEFAULT_BACKEND, DEFAULT_TIMEOUT, blank_row, descendants

ET_CORE = 4


def add_parser(sub) -> None:
    """The ``triage`` action's parser, on the CLI's action subparsers."""
    sp = sub.add_parser("triage", help="analyse many core files at once (Dask)",
                        description="Analyse core files in parallel: ptcheck findings, "
                        "ptstats, the crash (signal, address, frames); a Parquet table "
                        "and a summary grouping cores by (first finding kind, crash site).")
    sp.add_argument("cores", nargs="+", metavar="CORE",
                    help="core files, or directories (walked for core files)")
    sp.add_argument("--exe", help="the executable of every core (default: the one each "
                    "core names)")
    sp.add_argument("-o", "--output", metavar="OUT.parquet", help="write the table here")
    sp.add_argument("--jsonl", metavar="OUT.jsonl", help="also write it as JSON Lines")
    sp.add_argument("--workers", type=_positive, metavar="N",
                    help="local worker processes (default: the CPU count)")
    sp.add_argument("--scheduler", metavar="ADDRESS",
                    help="an existing Dask scheduler, tcp://host:port")
    sp.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="S",
                    help="seconds one core may take before its debugger is killed "
                    "(default: %(default)g)")
    sp.add_argument("--backend", default=DEFAULT_BACKEND, metavar="NAME",
                    help="debugger adapter (default: %(default)s)")
    sp.add_argument("--debug-dir", dest="debug_dirs", action="append", default=[],
                    metavar="DIR", help="extra .build-id debug directory (repeatable)")
    sp.set_defaults(fn=run)


def _positive(text: str) -> int:
    try:
        n = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text[:40]!r}") from None
    if not 1 <= n <= 4096:
        raise argparse.ArgumentTypeError(f"{n} is out of range (1 to 4096)")
    return n


def _seconds(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text[:40]!r}") from None
    if not 0 < s < 1e6:
        raise argparse.ArgumentTypeError(f"{text[:40]} is out of range")
    return s


def is_core(path: str) -> bool:
    """An ELF file of type ET_CORE (by its first bytes)."""
    found = elffile.ident(path)
    return found is not None and found[0] == ET_CORE


def find_cores(args: list[str]) -> list[str]:
    """Absolute paths: files as given (a bad one becomes an error row), directories
    walked for core files.  Each path once, in the order found."""
    out: list[str] = []
    for a in args:
        if os.path.isdir(a):
            found = []
            for top, dirs, files in os.walk(a):
                dirs.sort()
                found += [os.path.join(top, f) for f in sorted(files)
                          if is_core(os.path.join(top, f))]
            if not found:
                raise MultiheapError(f"no core files in directory {a}")
            out += found
        else:
            out.append(a)
    seen: set[str] = set()
    return [p for p in map(os.path.abspath, out) if not (p in seen or seen.add(p))]


class Progress:
    """A one-line progress bar on stderr when it is a terminal (else nothing)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.on = sys.stderr.isatty()
        self.start = time.monotonic()

    def update(self, row: dict) -> None:
        self.done += 1
        self.failed += row.get("status") != "ok"
        if not self.on:
            return
        width = 30
        fill = width * self.done // max(self.total, 1)
        rate = self.done / max(time.monotonic() - self.start, 1e-6) * 60
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} "
                         f"cores, {self.failed} failed, {rate:.0f}/min ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.on:
            sys.stderr.write("\r" + " " * 79 + "\r")
            sys.stderr.flush()


def _imports():
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise MultiheapError(f"multiheap triage needs dask, distributed and pyarrow "
                             f"({e.name} is missing): pip install 'multiheap[triage]'"
                             ) from None


def start_cluster(workers: Optional[int], scheduler: Optional[str]):
    """(client, cluster or None): a LocalCluster of ``workers`` processes, or a client
    of the existing scheduler at ``scheduler``."""
    import dask
    from distributed import Client, LocalCluster

    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if scheduler:
        try:
            return Client(scheduler, timeout=5), None
        except (OSError, TimeoutError) as e:
            raise MultiheapError(f"cannot reach the Dask scheduler {scheduler[:80]}: "
                                 f"{' '.join(str(e).split())[:160]}") from None
        except ValueError as e:
            raise MultiheapError(f"--scheduler {scheduler[:80]!r}: {e}") from None
    dask.config.set({"distributed.scheduler.allowed-failures": 1,
                     "distributed.worker.daemon": True})
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                           processes=True, dashboard_address=None,
                           silence_logs=logging.CRITICAL)
    try:
        return Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise


def triage(cores: list[str], *, exe: Optional[str] = None, workers: Optional[int] = None,
           scheduler: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT,
           backend: str = DEFAULT_BACKEND, debug_dirs: tuple[str, ...] = (),
           progress: Optional[Progress] = None) -> tuple[list[dict], int, int]:
    """Analyse ``cores`` on a cluster: (rows sorted by core, workers, cores not done).

    On KeyboardInterrupt the cluster is closed first (workers and their debuggers end)
    and the rows done so far are returned with the number left undone.
    """
    from distributed import as_completed

    from multiheap.triage.analyse import analyse_core

    client, cluster = start_cluster(workers, scheduler)
    rows: dict[str, dict] = {}
    try:
        nworkers = len(client.scheduler_info().get("workers", {}))
        futures = {client.submit(analyse_core, c, exe, timeout, backend, tuple(debug_dirs),
                                 key=f"triage-{i}-{os.path.basename(c)}", pure=False): c
                   for i, c in enumerate(cores)}
        try:
            for fut in as_completed(futures):
                core = futures[fut]
                try:
                    row = fut.result()
                except Exception as e:  # KilledWorker: its worker died twice
                    row = blank_row(core)
                    if type(e).__name__ == "KilledWorker":
                        row["error"] = ("the worker analysing it died, also when retried "
                                        "once (KilledWorker)")
                    else:
                        row["error"] = (f"analysis raised {type(e).__name__}: "
                                        f"{' '.join(str(e).split())[:200]}")
                rows[core] = row
                if progress is not None:
                    progress.update(row)
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip
            client.cancel(list(futures))
            return sorted(rows.values(), key=lambda r: r["core"]), nworkers, \
                len(cores) - len(rows)
    finally:
        _close(client, cluster)
    return sorted(rows.values(), key=lambda r: r["core"]), nworkers, 0


def _close(client, cluster) -> None:
    """Close the client and the local cluster; then kill whatever they started that is
    still running (an analysis child or a debugger of a worker that did not end)."""
    started = descendants(os.getpid())
    try:
        client.close(timeout=10)
    except Exception:
        pass
    if cluster is not None:
        try:
            cluster.close(timeout=20)
        except Exception:
            pass
    for pid in started + [p for p in descendants(os.getpid()) if p not in started]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"multiprocessing.resource_tracker" in f.read():
                    continue  # ours for the process's life; ends when we do
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def run(args: argparse.Namespace) -> int:
    """The ``triage`` action: analyse, write the table(s), print the summary."""
    from multiheap.triage.table import summary, write_jsonl, write_parquet

    _imports()
    if args.exe and not os.path.isfile(args.exe):
        raise MultiheapError(f"executable {args.exe} does not exist")
    for out in (args.output, args.jsonl):
        d = os.path.dirname(os.path.abspath(out)) if out else None
        if d and not os.path.isdir(d):
            raise MultiheapError(f"cannot write {out}: no directory {d}")
    if args.scheduler and args.workers:
        raise MultiheapError("--workers is for the local cluster; with --scheduler the "
                             "cluster has its own workers")
    cores = find_cores(args.cores)
    exe = os.path.abspath(args.exe) if args.exe else None
    dirs = tuple(os.path.abspath(d) for d in args.debug_dirs)
    progress = Progress(len(cores))
    start = time.monotonic()
    try:
        rows, nworkers, left = triage(cores, exe=exe, workers=args.workers,
                                      scheduler=args.scheduler, timeout=args.timeout,
                                      backend=args.backend, debug_dirs=dirs,
                                      progress=progress)
    finally:
        progress.close()
    seconds = time.monotonic() - start
    try:
        if args.output:
            write_parquet(rows, args.output)
        if args.jsonl:
            write_jsonl(rows, args.jsonl)
    except OSError as e:
        raise MultiheapError(f"cannot write the table: {e.strerror or e}") from None
    sys.stdout.write(summary(rows, seconds, nworkers, interrupted=left))
    sys.stdout.flush()
    if left:
        print("multiheap: interrupted", file=sys.stderr)
        return 130
    return 0
