"""Hostile files in the job folder (issue 14, findings 3, 8, 9, 10, 12): anyone who can write to the
folder can drop these. Made at test time, never committed.

Each attack turns a file of some *kind* (a job's job.json, state.json, manifest.json, a result, its
events.jsonl or job.lock; a request; a runner heartbeat or history; a queue.jsonl line) into
something that used to crash, hang or flood every reader: nesting 100,000 deep, ``Infinity``,
``1e400``, wrong types, a FIFO (an open blocks for ever), a symlink to ``/dev/zero`` (endless bytes).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

#: Attacks on the content of a JSON document.
CONTENT = ("deep", "infinity", "huge_float", "wrong_types")
#: Attacks on what the file is.
NODES = ("fifo", "dev_zero")
ATTACKS = CONTENT + NODES
#: The files of one job an attack can hit.
JOB_FILES = ("job.json", "state.json", "manifest.json", "results/000000.json", "events.jsonl")


def valid_doc(kind: str, job_id: str = "20260101-000000-aaaaaa") -> dict[str, Any] | list[Any]:
    """A well-formed document of ``kind``, the base the content attacks damage."""
    now = time.time()
    docs: dict[str, Any] = {
        "job": {"id": job_id, "created_at": now, "priority": 0, "spec": {"engine": "x"}, "total": 1},
        "state": {"status": "queued", "epoch": 1, "attempts": 1, "updated_at": now},
        "manifest": [{"index": 0, "source": "a.png", "path": "inputs/a.png", "page": None}],
        "result": {"index": 0, "status": "done", "text": "hi", "source": "a.png"},
        "request": {"job_id": job_id, "kind": "cancel", "at": now},
        "heartbeat": {"id": "r-evil", "pid": os.getpid(), "host": "h", "heartbeat_at": now, "interval_s": 2.0},
        "history": {"runner": "r-evil", "samples": [{"t": now, "done": 1}]},
        "journal": {"id": job_id, "status": "queued", "priority": 0, "created_at": now},
        "event": {"at": now, "event": "item_committed", "index": 0, "status": "done"},
    }
    return docs[kind]


#: Where each content attack puts its number, per kind (a field readers do arithmetic with).
NUMBER_FIELD = {
    "job": "priority",
    "state": "epoch",
    "result": "index",
    "request": "at",
    "heartbeat": "heartbeat_at",
    "journal": "priority",
    "event": "at",
}

WRONG_TYPES: dict[str, Any] = {
    "job": {"id": "JOB", "created_at": "yesterday", "priority": "high", "spec": [], "total": "5"},
    "state": {"status": "running", "epoch": "x", "lease": {"expires_at": "soon"}, "progress": {"done": "many"}},
    "manifest": [{"index": "0", "source": 5}],
    "result": {"index": "0", "status": 7, "text": ["not", "text"]},
    "request": {"job_id": 5, "kind": ["cancel"]},
    "heartbeat": {"id": "r-evil", "heartbeat_at": "yesterday", "pid": "x", "interval_s": "fast", "workers": "none"},
    "history": {"samples": [{"t": "yesterday"}]},
    "journal": {"id": "JOB", "status": "queued", "priority": "Infinity", "created_at": "now"},
    "event": {"event": 5, "at": "x", "index": "0"},
}


def content(kind: str, attack: str, job_id: str = "20260101-000000-aaaaaa") -> bytes:
    """The bytes of a ``kind`` document under a content attack (one line: journals and event logs take it too)."""
    if attack == "deep":
        return b"[" * 100_000 + b"]" * 100_000
    if attack == "wrong_types":
        doc = json.loads(json.dumps(WRONG_TYPES[kind]).replace("JOB", job_id))
        return json.dumps(doc).encode()
    doc = valid_doc(kind, job_id)
    if kind == "manifest":
        doc[0]["page"] = float("inf")  # type: ignore[index]
    elif kind == "history":
        doc["samples"][0]["t"] = float("inf")  # type: ignore[call-overload]
    else:
        doc[NUMBER_FIELD[kind]] = float("inf")  # type: ignore[call-overload]
    text = json.dumps(doc)  # allow_nan: writes Infinity
    if attack == "huge_float":
        text = text.replace("Infinity", "1e400")
    return text.encode()


def plant(path: Path, attack: str, kind: str, job_id: str = "20260101-000000-aaaaaa") -> Path:
    """Replace ``path`` with the attack (a FIFO or a symlink to /dev/zero for the node attacks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    if attack == "fifo":
        os.mkfifo(path)
    elif attack == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_bytes(content(kind, attack, job_id))
    return path


def kind_of(name: str) -> str:
    """The document kind of a job file name (``results/000000.json`` -> ``result``)."""
    return {
        "job.json": "job",
        "state.json": "state",
        "manifest.json": "manifest",
        "events.jsonl": "event",
    }.get(name, "result")


def damage_job_file(job_dir: Path, name: str, attack: str) -> Path:
    """One of the job's files (see :data:`JOB_FILES`) under an attack; events.jsonl gets a bad line appended
    to its good ones for the content attacks (it is a log)."""
    path = job_dir / name
    if name == "events.jsonl" and attack in CONTENT:
        with open(path, "ab") as f:
            f.write(content("event", attack, job_dir.name) + b"\n")
        return path
    return plant(path, attack, kind_of(name), job_dir.name)


def lock_replaced(job_dir: Path, how: str) -> Path:
    """``job.lock`` replaced by a symlink (to a file of the attacker's: ELOOP for O_NOFOLLOW) or a FIFO."""
    lock = job_dir / "job.lock"
    lock.unlink(missing_ok=True)
    if how == "symlink":
        target = job_dir.parent.parent / "attacker-owned"
        target.touch()
        lock.symlink_to(target)
    else:
        os.mkfifo(lock)
    return lock


def heartbeat_yesterday(state: Path, runner_id: str = "r-yesterday") -> Path:
    """A runner record whose ``heartbeat_at`` is a word (used to put a traceback on every page)."""
    doc = {**valid_doc("heartbeat"), "id": runner_id, "heartbeat_at": "yesterday"}
    path = state / "runners" / f"{runner_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def journal_lines(state: Path, job_id: str) -> bytes:
    """queue.jsonl lines that used to kill every runner reading them (``"priority": Infinity``) or hang it."""
    lines = [content("journal", a, job_id) for a in CONTENT]
    lines.append(b'{"id": "' + job_id.encode() + b'", "status": "queued", "priority": Infinity, "created_at": 1}')
    lines.append(b'{"id": "' + b"9" * 300 + b'", "status": "queued", "priority": 1, "created_at": 1}')
    return b"\n".join(lines) + b"\n"


def append_journal_attack(state: Path, job_id: str) -> None:
    with open(state / "queue.jsonl", "ab") as f:
        f.write(journal_lines(state, job_id))


def runner_files(state: Path) -> list[Path]:
    """Heartbeats and histories under every attack (state/runners/ and runners/history/)."""
    out = [heartbeat_yesterday(state)]
    for attack in ATTACKS:
        out.append(plant(state / "runners" / f"r-{attack}.json", attack, "heartbeat"))
        out.append(plant(state / "runners" / "history" / f"r-{attack}.json", attack, "history"))
    return out


def request_files(state: Path, job_id: str) -> list[Path]:
    """Request files under every attack."""
    return [
        plant(state / "requests" / f"{time.time_ns():020d}-{attack}-{job_id}-cancel.json", attack, "request", job_id)
        for attack in ATTACKS
    ]


def truncate_result(path: Path, keep: int = 10) -> None:
    """A result cut short, as a power loss or a full disk may leave it."""
    path.write_bytes(path.read_bytes()[:keep])


def forge_result(results: Path, name_index: int, claimed_index: int, text: str = "FORGED") -> Path:
    """A result file whose name says one item and whose content another (or an index out of range)."""
    path = results / f"{name_index:06d}.json"
    path.write_text(json.dumps({"index": claimed_index, "status": "done", "text": text, "source": "x"}))
    return path
