"""The triage table: rows to Parquet (pyarrow) and JSON Lines, buckets, the summary.

One row per core.  Nested columns: ``frames`` and ``findings`` are lists of structs,
``totals``, ``mallinfo2`` and ``mmapped`` structs.  The full JSON documents of
ptconfig, ptstats and ptcheck are kept as text columns (``*_json``), so nothing a
command says is lost to the fixed schema.  JSON Lines keeps each row as the dict.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from typing import Iterable, Optional

NO_FINDING = "no finding"
NO_SITE = "no crash site"
TOTAL_KEYS = ("system_mem", "top_size", "inuse_count", "inuse_bytes", "free_count",
              "free_bytes", "fast_count", "fast_bytes", "tcache_count", "tcache_bytes")
MALLINFO2_KEYS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "uordblks", "fordblks",
                  "fsmblks", "keepcost")


def schema():
    """The Parquet schema of a triage table."""
    import pyarrow as pa

    frame = pa.struct([("level", pa.int32()), ("addr", pa.uint64()), ("func", pa.string()),
                       ("file", pa.string()), ("line", pa.int32()), ("module", pa.string())])
    finding = pa.struct([("kind", pa.string()), ("severity", pa.string()),
                         ("addr", pa.uint64()), ("related", pa.list_(pa.uint64())),
                         ("message", pa.string()),
                         ("glibc", pa.struct([("message", pa.string()),
                                              ("operation", pa.string())]))])
    return pa.schema([
        ("core", pa.string()), ("exe", pa.string()), ("program", pa.string()),
        ("status", pa.string()), ("error", pa.string()), ("glibc", pa.string()),
        ("signal", pa.int32()), ("signal_name", pa.string()), ("si_code", pa.int32()),
        ("fault_addr", pa.uint64()), ("tid", pa.int64()), ("pc", pa.uint64()),
        ("abort_message", pa.string()), ("crash_site", pa.string()),
        ("frames", pa.list_(frame)), ("checked", pa.bool_()),
        ("findings", pa.list_(finding)), ("first_kind", pa.string()),
        ("totals", pa.struct([(k, pa.int64()) for k in TOTAL_KEYS])),
        ("mallinfo2", pa.struct([(k, pa.int64()) for k in MALLINFO2_KEYS])),
        ("mmapped", pa.struct([("count", pa.int64()), ("bytes", pa.int64())])),
        ("arenas", pa.int32()), ("notes", pa.list_(pa.string())),
        ("ptconfig_json", pa.string()), ("ptstats_json", pa.string()),
        ("ptcheck_json", pa.string()), ("seconds", pa.float64()), ("host", pa.string()),
    ])


def _int(v) -> Optional[int]:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            return None
    if isinstance(v, dict):
        return _int(v.get("addr"))
    return None


def _text(v) -> Optional[str]:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"))


def finding_record(f) -> dict:
    """A ptcheck finding in the table's fixed shape (the full one is in ptcheck_json)."""
    if not isinstance(f, dict):
        return {"kind": _text(f), "severity": None, "addr": None, "related": [],
                "message": None, "glibc": None}
    rel = f.get("related")
    rel = rel if isinstance(rel, list) else [rel] if rel is not None else []
    return {"kind": _text(f.get("kind")), "severity": _text(f.get("severity")),
            "addr": _int(f.get("addr")),
            "related": [x for x in (_int(r) for r in rel) if x is not None],
            "message": _text(f.get("message")), "glibc": _glibc(f.get("glibc"))}


def _glibc(v) -> Optional[dict]:
    """A finding's glibc part ({message, operation}: what glibc would abort with)."""
    if v is None:
        return None
    if isinstance(v, dict):
        return {"message": _text(v.get("message")), "operation": _text(v.get("operation"))}
    return {"message": _text(v), "operation": None}


def parquet_record(row: dict) -> dict:
    """A row as the Parquet schema wants it."""
    rec = {k: row.get(k) for k in schema().names if not k.endswith("_json")}
    for k in ("ptconfig", "ptstats", "ptcheck"):
        rec[f"{k}_json"] = _text(row.get(k))
    rec["findings"] = [finding_record(f) for f in row.get("findings") or []]
    rec["frames"] = list(row.get("frames") or [])
    for k, keys in (("totals", TOTAL_KEYS), ("mallinfo2", MALLINFO2_KEYS),
                    ("mmapped", ("count", "bytes"))):
        v = row.get(k)
        rec[k] = {x: _int(v.get(x)) for x in keys} if isinstance(v, dict) else None
    return rec


def write_parquet(rows: list[dict], path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([parquet_record(r) for r in rows], schema=schema())
    pq.write_table(table, path)


def write_jsonl(rows: Iterable[dict], path: str) -> None:
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")


def bucket_key(row: dict) -> tuple[str, str]:
    """(first finding kind, crash site): cores of one bug share it."""
    return (row.get("first_kind") or NO_FINDING, row.get("crash_site") or NO_SITE)


def buckets(rows: Iterable[dict]) -> list[tuple[tuple[str, str], list[dict]]]:
    """Analysed rows grouped by bucket_key, largest first (then by key)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("status") == "ok":
            groups[bucket_key(r)].append(r)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def summary(rows: list[dict], seconds: Optional[float] = None, workers: Optional[int] = None,
            interrupted: int = 0, limit: int = 20) -> str:
    """The report for people: counts, buckets largest first, failures with why."""
    ok = [r for r in rows if r.get("status") == "ok"]
    bad = [r for r in rows if r.get("status") != "ok"]
    head = f"multiheap triage: {len(rows)} core{'s' * (len(rows) != 1)}, " \
           f"{len(ok)} analysed, {len(bad)} failed"
    if seconds is not None:
        head += f", {seconds:.1f} s"
        if workers:
            head += f" on {workers} worker{'s' * (workers != 1)}"
    lines = [head]
    if interrupted:
        lines.append(f"interrupted: {interrupted} core{'s' * (interrupted != 1)} not analysed")
    groups = buckets(rows)
    if groups:
        lines.append("")
        lines.append(f"buckets (first finding kind, crash site): {len(groups)}")
        width = max(len(str(len(g))) for _k, g in groups)
        for (kind, site), group in groups[:limit]:
            first = group[0]
            what = [first.get("program") or "?"]
            if first.get("signal_name"):
                what.append(first["signal_name"] + (f" at {first['fault_addr']:#x}"
                                                    if first.get("fault_addr") is not None
                                                    else ""))
            if first.get("abort_message"):
                what.append(repr(first["abort_message"]))
            lines.append(f"  {len(group):>{width}}  {kind} | {site} | {', '.join(what)}")
            lines.append(f"  {'':>{width}}  e.g. {first['core']}")
        if len(groups) > limit:
            lines.append(f"  ... and {len(groups) - limit} more buckets")
    if bad:
        lines.append("")
        reasons = Counter(_reason(r) for r in bad)
        lines.append(f"failed: {len(bad)}")
        for r in sorted(bad, key=lambda r: r["core"])[:limit]:
            lines.append(f"  {r['core']}: {r.get('error') or 'unknown error'}")
        if len(bad) > limit:
            lines.append(f"  ... and {len(bad) - limit} more; by reason: "
                         + ", ".join(f"{n} {k}" for k, n in reasons.most_common(5)))
    return "\n".join(lines) + "\n"


def _reason(row: dict) -> str:
    """A failure's kind, for counting: its error without paths and numbers."""
    err = row.get("error") or "unknown error"
    words = [w for w in err.split() if not (os.sep in w or any(c.isdigit() for c in w))]
    return " ".join(words[:6])
