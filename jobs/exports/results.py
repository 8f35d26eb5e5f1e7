"""A job's items merged with their results, streamed in order (:class:`Tracker`), and what an export
held (:class:`Summary`). Shared by the exports (jobs/exports/export.py) and the write-back into the
user's workbook (jobs/exports/writeback.py), below both."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.store.store import Store


@dataclass
class Summary:
    """What an export wrote, and what it could not: the items not processed yet."""

    path: Path
    format: str
    job_status: str
    total: int
    counts: dict[str, int] = field(default_factory=dict)
    missing: list[dict[str, Any]] = field(default_factory=list)  # index, row, source, page

    def note(self) -> str | None:
        """One line for a person when the export is partial, else None."""
        if not self.missing:
            return None
        first = ", ".join(str(m["index"]) for m in self.missing[:10]) + (", ..." if len(self.missing) > 10 else "")
        return (
            f"partial export: job is {self.job_status}; {len(self.missing)} of {self.total} items not processed "
            f"yet (status 'pending': items {first}); export again when the job has finished"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "job_status": self.job_status,
            "total": self.total,
            "counts": self.counts,
            "missing": len(self.missing),
            "missing_items": [m["index"] for m in self.missing],
        }


class Tracker:
    """Streams a job's items in order (manifest merged with results) and counts them on the way."""

    def __init__(self, store: Store, job_id: str) -> None:
        self.store, self.job_id = store, job_id
        self.job = store.get(job_id)
        self.counts: dict[str, int] = {}
        self.missing: list[dict[str, Any]] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for item in self.store.manifest(self.job_id):
            row = _merge(item, self._result(item["index"]))
            self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
            if row["status"] == "pending":
                self.missing.append({k: row.get(k) for k in ("index", "row", "source", "page")})
            yield row

    def _result(self, index: int) -> dict[str, Any] | None:
        # None if damaged or forged: the runner quarantines it and redoes the item; until then it is pending
        return self.store.result(self.job_id, index)

    def summary(self, path: Path, fmt: str) -> Summary:
        status = self.store.get(self.job_id).status.value
        return Summary(path, fmt, status, self.job.total, dict(self.counts), self.missing)


def _merge(item: dict[str, Any], res: dict[str, Any] | None) -> dict[str, Any]:
    res = res or {"status": "pending"}
    err = res.get("error") or {}
    out = {
        "index": item["index"],
        "source": item["source"],
        "page": item.get("page"),
        "status": res["status"],
        "text": res.get("text") or "",
        "confidence": res.get("confidence"),
        "error": err.get("message") if isinstance(err, dict) else err,
        "error_kind": err.get("kind") if isinstance(err, dict) else None,
        "processing_time_ms": res.get("processing_time_ms"),
        "device": res.get("device"),
    }
    if "row" in item:
        out["row"] = item["row"]
    return out


def rows(store: Store, job_id: str) -> list[dict[str, Any]]:
    """Every item with its result, in order (the json export as Python objects)."""
    return list(Tracker(store, job_id))
