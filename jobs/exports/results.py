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
    truncated: dict[str, int] = field(default_factory=dict)  # why -> how many done items were cut short

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
            "truncated": sum(self.truncated.values()),
        }

    def warning(self) -> str | None:
        """One line when some done items were cut short (their text is incomplete), else None."""
        return truncation_warning(self.truncated)


class Tracker:
    """Streams a job's items in order (manifest merged with results) and counts them on the way."""

    def __init__(self, store: Store, job_id: str) -> None:
        self.store, self.job_id = store, job_id
        self.job = store.get(job_id)
        self.counts: dict[str, int] = {}
        self.missing: list[dict[str, Any]] = []
        self.truncated: dict[str, int] = {}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for item in self.store.manifest(self.job_id):
            row = _merge(item, self._result(item["index"]))
            self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
            if row["status"] == "pending":
                self.missing.append({k: row.get(k) for k in ("index", "row", "source", "page")})
            count_truncated(self.truncated, row)
            yield row

    def _result(self, index: int) -> dict[str, Any] | None:
        # None if damaged or forged: the runner quarantines it and redoes the item; until then it is pending
        return self.store.result(self.job_id, index)

    def summary(self, path: Path, fmt: str) -> Summary:
        status = self.store.get(self.job_id).status.value
        return Summary(path, fmt, status, self.job.total, dict(self.counts), self.missing, dict(self.truncated))


def _merge(item: dict[str, Any], res: dict[str, Any] | None) -> dict[str, Any]:
    res = res or {"status": "pending"}
    err = res.get("error") or {}
    cut = res["status"] == "done" and res.get("truncated") is True  # only a done item's text can be incomplete
    out = {
        "index": item["index"],
        "source": item["source"],
        "page": item.get("page"),
        "status": res["status"],
        "text": res.get("text") or "",
        "confidence": res.get("confidence"),
        "truncated": cut,
        "truncated_by": res.get("truncated_by") if cut else None,
        "error": err.get("message") if isinstance(err, dict) else err,
        "error_kind": err.get("kind") if isinstance(err, dict) else None,
        "processing_time_ms": res.get("processing_time_ms"),
        "device": res.get("device"),
        "method": res.get("method"),  # "text-layer" (a PDF page's own text) or "ocr"
    }
    # line boxes in page pixels, a form's fields, the engine's route (latin/cjk/mixed): the JSON keeps them
    for extra in ("boxes", "fields", "warning", "route"):
        if res.get(extra):
            out[extra] = res[extra]
    if "row" in item:
        out["row"] = item["row"]
    return out


def rows(store: Store, job_id: str) -> list[dict[str, Any]]:
    """Every item with its result, in order (the json export as Python objects)."""
    return list(Tracker(store, job_id))


#: What to do about an item cut short, by what cut it (the engine's ``truncated_by``).
_TRUNCATION_ADVICE = {
    "max_new_tokens": "truncated at max_new_tokens: raise --max-new-tokens",
    "max_time": "cut short by the generation time limit (max_time_s, 0.8 x the item timeout): raise --item-timeout",
}


def truncation_advice(why: str | None) -> str:
    """What cut an item short and the option that helps, e.g. "truncated at max_new_tokens: raise --max-new-tokens"."""
    return _TRUNCATION_ADVICE.get(str(why), "truncated (cut short before the model finished)")


def count_truncated(counts: dict[str, int], result: dict[str, Any]) -> None:
    """Add one done item's truncation (``truncated: true`` in its result) to ``counts`` (why -> how many)."""
    if result.get("status") == "done" and result.get("truncated") is True:
        why = str(result.get("truncated_by") or "unknown")
        counts[why] = counts.get(why, 0) + 1


def truncation_warning(counts: dict[str, int]) -> str | None:
    """One line for a person: how many done items are incomplete, why, and the option that helps; None if none.
    Shared by ``show``, the exports and the dashboard's Job page."""
    parts = []
    for why, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        items = f"{n} item{'s' if n != 1 else ''}"
        parts.append(f"{items} {truncation_advice(why)}")
    return "; ".join(parts) or None
