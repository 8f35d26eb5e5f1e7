"""Why is a running job not moving? ``stalled`` (its runner is alive but commits nothing) or
``orphaned`` (its lease expired and nobody took it over), with evidence and what to do.

Cheap enough for every health check: it reads the job's state (cached by the store), the
runners' heartbeats, and for an orphaned job the tail of its event log; never result files.

Stall threshold: the issue asks for ``max(3 x recent per-item time, item timeout + grace)``, but
the runner itself kills an item at ``item timeout + grace``, so with ``max`` a stall could never
be seen while an item is still under its timeout, the case its own test describes. So the
threshold here is ``3 x recent per-item time`` (at least ``STALL_FLOOR_S``, so sub-second items
do not flap), capped at ``item timeout + grace``, the point past which the runner should already
have acted; with no per-item time yet, ``item timeout + grace``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from jobs import config
from jobs.ops.liveness import runner_states
from jobs.store import safejson
from jobs.store.status import JobStatus
from jobs.store.store import Job, Store

STALL_FLOOR_S = 10.0
ORPHAN_GRACE_S = 5.0  # a live idle runner polls at least every 2 s; give it that, twice, plus slack
GPU_BUSY_FRACTION = 0.9
EVENTS_TAIL_BYTES = 64 * 1024


@dataclass
class Diagnosis:
    job_id: str
    status: str
    diagnosis: str  # "stalled" | "orphaned" | "ok" | "not running"
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    suggestions: list[str] = field(default_factory=list)

    @property
    def stuck(self) -> bool:
        return self.diagnosis in ("stalled", "orphaned")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def last_commit(store: Store, job_id: str) -> dict[str, Any] | None:
    """The job's last ``item_committed`` event, from the tail of events.jsonl (not the whole log)."""
    data, _whole = safejson.read_tail(store.job_dir(job_id) / "events.jsonl", EVENTS_TAIL_BYTES)
    for line in reversed(data.split(b"\n")):
        ev = safejson.parse_line(line, "event")  # None for a torn last line, or the tail's cut first one
        if ev is not None and ev.get("event") == "item_committed":
            return {"index": ev.get("index"), "status": ev.get("status"), "at": ev.get("at")}
    return None


def _gpu_pressure(hb: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    for g in ((hb or {}).get("gpu") or {}).get("gpus") or []:
        if g["memory_total_bytes"] and g["memory_used_bytes"] / g["memory_total_bytes"] >= GPU_BUSY_FRACTION:
            used = round(100 * g["memory_used_bytes"] / g["memory_total_bytes"])
            out.append({"gpu": g["index"], "used_percent": used})
    return out


def _runner_evidence(hb: dict[str, Any] | None, runner_id: str | None) -> dict[str, Any]:
    if hb is None:
        return {"id": runner_id, "state": "no heartbeat file (it exited cleanly, or never started)"}
    return {k: hb.get(k) for k in ("id", "host", "pid", "state", "age_s", "job", "last_error")}


def diagnose_job(store: Store, job: Job, runners: dict[str, dict[str, Any]], now: float | None = None) -> Diagnosis:
    """Diagnose one job. ``runners`` maps runner id to its heartbeat with ``state`` and ``age_s``
    (from :func:`jobs.ops.liveness.runner_states`)."""
    now = now if now is not None else time.time()
    p = job.progress()
    base = {"committed": p["committed"], "total": p["total"]}
    if job.status != JobStatus.RUNNING:
        return Diagnosis(job.id, job.status.value, "not running", f"not running: the job is {job.status.value}", base)
    base["committed"] = store.committed_count(job.id)  # exact: state.json's progress is written lazily
    lease = job.lease or {}
    holder = runners.get(str(lease.get("runner")))
    expired_for = now - float(lease.get("expires_at") or 0)
    if expired_for > ORPHAN_GRACE_S:
        return _orphaned(store, job, holder, runners, expired_for, base, now)
    if holder is None or holder["state"] != "alive" or _current_of(holder, job.id) is None:
        ev = {**base, "runner": _runner_evidence(holder, lease.get("runner"))}
        ev["lease_expires_in_s"] = -round(expired_for)
        if holder is not None and holder["state"] == "dead":
            why = f"its runner {holder['id']} is dead"
        elif holder is not None and holder["state"] == "stale":
            why = f"its runner {holder['id']} has not heartbeaten for {holder['age_s']:.0f} s"
        else:
            why = "its runner has not reported this job in a heartbeat yet"
        summary = f"ok, not stuck yet: {why}; the lease expires in {max(0.0, -expired_for):.0f} s"
        return Diagnosis(job.id, "running", "ok", summary, ev)
    return _stalled_or_ok(job, holder, base, now)


def _current_of(hb: dict[str, Any], job_id: str) -> dict[str, Any] | None:
    """What a runner's heartbeat says of one of the jobs it holds (``per_job``; ``current`` from a runner
    that held one job at a time)."""
    cur = (hb.get("per_job") or {}).get(job_id) or hb.get("current") or {}
    return cur if cur.get("job") == job_id else None


def _stalled_or_ok(job: Job, hb: dict[str, Any], base: dict[str, Any], now: float) -> Diagnosis:
    cur = _current_of(hb, job.id) or {}
    timeout = float(cur.get("item_timeout_s") or job.spec.get("item_timeout", config.DEFAULT_ITEM_TIMEOUT_S))
    grace = float(hb.get("grace_s") or config.KILL_GRACE_S)
    per_item = cur.get("recent_item_s")
    limit = timeout + grace
    threshold = min(max(3 * per_item, STALL_FLOOR_S), limit) if per_item else limit
    last_at = cur.get("last_commit_at") or cur.get("claimed_at") or now
    quiet = now - last_at
    in_flight = [
        {
            "index": w["item"],
            "source": w.get("source"),
            "page": w.get("page"),
            "worker_pid": w.get("pid"),
            "running_s": round(now - w["item_started_at"], 1) if w.get("item_started_at") else None,
        }
        for w in hb.get("workers", [])
        if w.get("item") is not None and w.get("job", job.id) == job.id
    ]
    loading = [round(now - w["loading_since"], 1) for w in hb.get("workers", []) if w.get("loading_since")]
    gpu = _gpu_pressure(hb)
    evidence = {
        **base,
        "no_commit_for_s": round(quiet, 1),
        "threshold_s": round(threshold, 1),
        "recent_item_s": per_item,
        "item_timeout_s": timeout,
        "grace_s": grace,
        "last_item": {"index": cur.get("last_item"), "committed_at": cur.get("last_commit_at")},
        "in_flight": in_flight,
        "engine_loading_s": loading,
        "runner": _runner_evidence(hb, hb["id"]),
        "gpu_memory_pressure": gpu,
    }
    if loading or quiet <= threshold:
        why = f"engine loading for {max(loading):.0f} s" if loading else f"last commit {quiet:.0f} s ago"
        return Diagnosis(job.id, "running", "ok", f"ok: making progress ({why})", evidence)
    usual = f"3 x its recent {per_item:g} s per item" if per_item else "no item committed yet in this run"
    summary = (
        f"stalled: runner {hb['id']} is alive but no item was committed for {quiet:.0f} s "
        f"(limit {threshold:.0f} s: {usual}, at most the {timeout:g} s item timeout + {grace:g} s grace)"
    )
    return Diagnosis(job.id, "running", "stalled", summary, evidence, _stall_advice(job, evidence))


def _stall_advice(job: Job, ev: dict[str, Any]) -> list[str]:
    out = []
    limit = ev["item_timeout_s"] + ev["grace_s"]
    for item in ev["in_flight"]:
        where = f"{item['source']}" + (f" page {item['page']}" if item.get("page") else "")
        ran = item["running_s"]
        if ran is not None and ran > limit + 2 * ev["grace_s"]:
            out.append(
                f"item #{item['index']} has run {ran:.0f} s, past the runner's own kill at {limit:g} s: the runner "
                "is not enforcing timeouts; restart it (`systemctl restart ocrjobs-runner`), the job resumes after "
                "the last committed item"
            )
            continue
        out.append(
            f"check the input: item #{item['index']} ({where}) has run {ran or 0:.0f} s against a usual "
            f"{ev['recent_item_s'] or '?'} s; an unusually large, many-page or damaged file is the common cause"
        )
        out.append(
            f"if items like it legitimately take this long, raise the item timeout when resubmitting "
            f"(`--item-timeout`, now {ev['item_timeout_s']:g} s); otherwise lower it so hung items fail sooner "
            f"(this one will be timed out at {limit:g} s)"
        )
    if ev["gpu_memory_pressure"]:
        used = ", ".join(f"GPU {g['gpu']} {g['used_percent']} %" for g in ev["gpu_memory_pressure"])
        out.append(
            f"GPU memory is nearly full ({used}): free GPU memory (see `nvidia-smi` for other processes), "
            "or lower the engine's batch size or the runner's --workers"
        )
    if not ev["in_flight"]:
        out.append(
            "no item is in flight although the job has items left: restart the runner "
            "(`systemctl restart ocrjobs-runner`); the job resumes after the last committed item"
        )
    out.append(f"details: `ocrjobs show {job.id}` and the runner log in state/logs/")
    return out


def _orphaned(
    store: Store,
    job: Job,
    holder: dict[str, Any] | None,
    runners: dict[str, dict[str, Any]],
    expired_for: float,
    base: dict[str, Any],
    now: float,
) -> Diagnosis:
    lease = job.lease or {}
    alive = [r for r in runners.values() if r["state"] == "alive"]
    idle = [r for r in alive if not r.get("job")]
    lost = int(job.state.get("lost_runners", 0))
    max_attempts = int(job.spec.get("max_attempts", config.DEFAULT_MAX_ATTEMPTS))
    last = last_commit(store, job.id)
    evidence = {
        **base,
        "lease": {"runner": lease.get("runner"), "epoch": lease.get("epoch"), "expired_s_ago": round(expired_for, 1)},
        "runner": _runner_evidence(holder, lease.get("runner")),
        "last_item": last,
        "last_commit_s_ago": round(now - last["at"], 1) if last and last.get("at") else None,
        "lost_runners": lost,
        "max_attempts": max_attempts,
        "runners_alive": len(alive),
        "runners_idle": len(idle),
    }
    after = f" after item #{last['index']}" if last else ""
    tips = []
    if holder is not None and holder["state"] == "stale":
        tips.append(
            f"runner {holder['id']} (pid {holder.get('pid')} on {holder.get('host')}) stopped heartbeating "
            f"{holder['age_s']:.0f} s ago but its process exists: it is hung or suspended (SIGSTOP, a frozen VM); "
            "restart it (`systemctl restart ocrjobs-runner`)"
        )
    elif holder is not None:
        tips.append(
            f"runner {holder['id']} died (killed or crashed): see its log in state/logs/ "
            "or `journalctl -u ocrjobs-runner`"
        )
    if not alive:
        tips.append(
            f"start a runner: `python runner.py --state {store.root}` or `systemctl start ocrjobs-runner`; "
            f"it takes the job over and resumes{after}"
        )
    elif idle:
        tips.append(
            f"{len(idle)} idle runner(s) should have taken it over within seconds: check their logs for lock errors"
        )
    else:
        tips.append(
            f"all {len(alive)} live runner(s) are busy with other jobs: one takes it over when it finishes, "
            "or start another runner to take it now"
        )
    if lost >= 1 and lost + 1 >= max_attempts:
        tips.append(
            f"the job has lost its runner {lost} times; at {max_attempts} it fails: if runners keep dying on it, "
            f"check the input{after}"
        )
    summary = (
        f"orphaned: its lease (runner {lease.get('runner')}) expired {expired_for:.0f} s ago and no runner took it over"
    )
    return Diagnosis(job.id, "running", "orphaned", summary, evidence, tips)


def diagnose(store: Store, job_id: str, now: float | None = None) -> Diagnosis:
    """Diagnose one job by id (``python -m jobs diagnose ID``)."""
    now = now if now is not None else time.time()
    job = store.get(job_id)
    runners = {r["id"]: r for r in runner_states(store, now)}
    d = diagnose_job(store, job, runners, now)
    if d.diagnosis == "not running" or "last_item" not in d.evidence:
        d.evidence["last_item"] = last_commit(store, job_id)
    return d
