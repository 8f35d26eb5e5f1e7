"""Exports of a job's results: json (a list of items), csv (a table), txt (pages in order)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from jobs.errors import OcrJobsError
from jobs.store import Store

FORMATS = ("json", "csv", "txt")
COLUMNS = (
    "index",
    "source",
    "page",
    "status",
    "text",
    "confidence",
    "error",
    "error_kind",
    "processing_time_ms",
    "device",
)


def rows(store: Store, job_id: str) -> list[dict[str, Any]]:
    out = []
    for item in store.items(job_id):
        err = item.get("error") or {}
        out.append(
            {
                "index": item["index"],
                "source": item["source"],
                "page": item.get("page"),
                "status": item["status"],
                "text": item.get("text") or "",
                "confidence": item.get("confidence"),
                "error": err.get("message") if isinstance(err, dict) else err,
                "error_kind": err.get("kind") if isinstance(err, dict) else None,
                "processing_time_ms": item.get("processing_time_ms"),
                "device": item.get("device"),
            }
        )
    return out


def render(store: Store, job_id: str, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise OcrJobsError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    data = rows(store, job_id)
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, indent=1).encode()
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(data)
        return buf.getvalue().encode("utf-8-sig")  # BOM: Excel opens Chinese text correctly
    parts = []
    for r in data:
        where = r["source"] + (f" — page {r['page']}" if r["page"] else "")
        body = r["text"] if r["status"] == "done" else f"[{r['status']}: {r['error'] or 'not processed yet'}]"
        parts.append(f"===== {where} =====\n{body}\n")
    return "\n".join(parts).encode()


def export(store: Store, job_id: str, fmt: str, dest: Path) -> Path:
    data = render(store, job_id, fmt)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return dest
