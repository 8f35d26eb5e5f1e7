"""What each JSON file of the job folder must look like: a size cap and the fields its readers index.

Small hand-written checks rather than a schema library: they run 10,000 times on a cold listing,
and they only pin down what a reader relies on (the type of each field it indexes or does arithmetic
with), so a file a newer version wrote with extra fields still reads. Each check returns None when
the document is fine, else a short reason. Numbers are finite by then (see jobs/store/safejson.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobs.store.status import ItemStatus, JobStatus

#: Deeper than any file the project writes (a heartbeat with Ray info is about 6).
MAX_DEPTH = 32
KB, MB = 1024, 1024 * 1024

Check = Callable[[Any], "str | None"]
_JOB_STATUSES = frozenset(s.value for s in JobStatus)
_ITEM_STATUSES = frozenset(s.value for s in ItemStatus)


#: Plain type tests, as sets: checked without a call (10,000 job.json on a cold listing).
INT, NUM, STR = frozenset({int}), frozenset({int, float}), frozenset({str})
DICT, LIST = frozenset({dict}), frozenset({list})
_NAMES = {INT: "an integer", NUM: "a number", STR: "a string", DICT: "an object", LIST: "a list"}


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_num(v: Any) -> bool:
    return type(v) is int or type(v) is float


def _is_str(v: Any) -> bool:
    return type(v) is str


def _is_dict(v: Any) -> bool:
    return type(v) is dict


def _fields(obj: Any, required: dict[str, Any], optional: dict[str, Any], not_null: tuple[str, ...] = ()) -> str | None:
    """``obj`` is an object; each required key is present and of its type; each optional key, if present
    and not null, is of its type; the ``not_null`` ones, if present, are not null (readers use their
    ``.get(key, default)``, which a null would get past)."""
    if type(obj) is not dict:
        return f"expected a JSON object, found {type(obj).__name__}"
    for key, test in required.items():
        if key not in obj:
            return f"field {key!r} is missing"
        v = obj[key]
        if (type(v) not in test) if type(test) is frozenset else not test(v):
            return f"field {key!r} is not {_NAMES.get(test, 'valid')} ({str(v)[:40]!r})"
    for key, v in obj.items():  # the keys it has: fewer than the optional ones, mostly
        test = optional.get(key)
        if test is not None and v is not None and ((type(v) not in test) if type(test) is frozenset else not test(v)):
            return f"field {key!r} is not {_NAMES.get(test, 'valid')} ({str(v)[:40]!r})"
    for key in not_null:
        if key in obj and obj[key] is None:
            return f"field {key!r} is null"
    return None


def _list_of(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: type(v) is list and all(test(x) for x in v)


def _counts(v: Any) -> bool:
    """Counters by name (progress also holds the item in progress, an object or null)."""
    return type(v) is dict and all(
        _is_num(n) if k != "current" else (n is None or type(n) is dict) for k, n in v.items()
    )


def _spec(v: Any) -> bool:
    """The spec fields the runner does arithmetic with or passes to an engine."""
    return (
        _fields(
            v,
            {},
            {
                "engine": STR,
                "engine_options": DICT,
                "item_timeout": NUM,
                "retries": INT,
                "max_attempts": INT,
                "dpi": INT,
                "pdf_text": lambda v: v in ("auto", "ocr", "text"),
                "name": STR,
                "submitted_by": STR,
                "max_workers": INT,
            },
            ("engine", "engine_options", "item_timeout", "retries", "max_attempts", "dpi"),
        )
        is None
    )


def check_job(obj: Any) -> str | None:
    problem = _fields(
        obj,
        {"id": STR, "created_at": NUM, "spec": _spec, "total": INT},
        {"priority": INT, "inputs": _list_of(_is_str)},
        ("priority", "inputs"),
    )
    if problem is None and obj["total"] < 0:
        return "field 'total' is negative"
    return problem


def _lease(v: Any) -> bool:
    return _fields(v, {"expires_at": NUM}, {"runner": STR, "epoch": INT, "lease_s": NUM}) is None


def _run(v: Any) -> bool:
    return _fields(v, {}, {"started_at": NUM, "committed": INT}) is None


def check_state(obj: Any) -> str | None:
    return _fields(
        obj,
        {},
        {
            "status": lambda v: type(v) is str and v in _JOB_STATUSES,
            "epoch": INT,
            "lease": _lease,
            "attempts": INT,
            "lost_runners": INT,
            "round": INT,
            "priority": INT,
            "progress": _counts,
            "run": _run,
            "item_crashes": DICT,
            "started_at": NUM,
            "finished_at": NUM,
            "updated_at": NUM,
        },
        ("status", "epoch", "attempts", "lost_runners", "round", "progress", "item_crashes"),
    )


def check_manifest(obj: Any) -> str | None:
    return None if type(obj) is list else f"expected a JSON list, found {type(obj).__name__}"


def check_result(obj: Any) -> str | None:
    problem = _fields(obj, {"index": INT, "status": STR}, {"text": STR, "error": DICT})
    if problem is None and obj["status"] not in _ITEM_STATUSES:
        return f"status {obj['status'][:20]!r} is not an item status"
    if problem is None and obj["index"] < 0:
        return "field 'index' is negative"
    return problem


def check_request(obj: Any) -> str | None:
    return _fields(obj, {"job_id": STR, "kind": STR}, {"at": NUM, "priority": INT})


def _worker(v: Any) -> bool:
    nums = {k: NUM for k in ("item_started_at", "loading_since", "cpu_percent", "rss_bytes")}
    return _fields(v, {}, {"item": INT, "pid": INT, "slot": INT, "job": STR, **nums}) is None


def _current(v: Any) -> bool:
    nums = {k: NUM for k in ("claimed_at", "last_commit_at", "item_timeout_s", "recent_item_s", "committed")}
    return _fields(v, {}, {"job": STR, "last_item": INT, **nums}) is None


def _one_gpu(g: Any) -> bool:
    keys = ("memory_total_bytes", "memory_used_bytes", "memory_free_bytes")
    return _fields(g, {"index": INT, "name": STR, **dict.fromkeys(keys, NUM)}, {}) is None


def _gpu(v: Any) -> bool:
    return _fields(v, {}, {"gpus": _list_of(_one_gpu)}) is None


def _ray(v: Any) -> bool:
    """What jobs/ops/health.py's ray_reasons reads of a Ray runner's heartbeat."""
    return (
        _fields(
            v,
            {},
            {
                "nodes": _list_of(_is_dict),
                "actors": LIST,
                "actors_alive": INT,
                "gpu_by_node": lambda d: type(d) is dict and all(g is None or _gpu(g) for g in d.values()),
            },
        )
        is None
    )


def check_heartbeat(obj: Any) -> str | None:
    return _fields(
        obj,
        {"id": STR, "heartbeat_at": NUM},
        {
            "pid": INT,
            "host": STR,
            "started_at": NUM,
            "interval_s": NUM,
            "grace_s": NUM,
            "job": STR,
            "jobs": _list_of(lambda j: type(j) is str),
            "current": _current,
            "per_job": lambda d: type(d) is dict and all(_current(c) for c in d.values()),
            "workers": _list_of(_worker),
            "counters": _counts,
            "recent": _counts,
            "gpu": _gpu,
            "ray": _ray,
            "resources": DICT,
            "disk": DICT,
            "last_error": STR,
        },
        ("workers",),  # readers iterate hb.get("workers", [])
    )


def check_history(obj: Any) -> str | None:
    return _fields(obj, {"samples": _list_of(_sample)}, {})


def _sample(s: Any) -> bool:
    """One history sample: numbers (charts plot them) but for the job's id."""
    return (
        type(s) is dict
        and _is_num(s.get("t"))
        and all(v is None or _is_num(v) or (k == "job" and type(v) is str) for k, v in s.items())
    )


def check_journal(obj: Any) -> str | None:
    return _fields(obj, {"id": STR, "status": STR}, {"priority": INT, "created_at": NUM})


def check_event(obj: Any) -> str | None:
    return _fields(obj, {}, {"event": STR, "at": NUM})


@dataclass(frozen=True)
class Kind:
    max_bytes: int
    check: Check


#: Every kind of JSON document the store reads, with its size cap. The caps are far above what the
#: project writes (a job.json is ~1 KB, a result a page of text), far below what hurts a reader.
KINDS: dict[str, Kind] = {
    "job": Kind(1 * MB, check_job),
    "state": Kind(8 * MB, check_state),
    "manifest": Kind(256 * MB, check_manifest),
    "result": Kind(32 * MB, check_result),
    "request": Kind(64 * KB, check_request),
    "heartbeat": Kind(4 * MB, check_heartbeat),
    "history": Kind(16 * MB, check_history),
    "journal": Kind(4 * KB, check_journal),
    "event": Kind(1 * MB, check_event),
    "any": Kind(64 * MB, lambda obj: None),
}
