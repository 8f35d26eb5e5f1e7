"""One job a runner holds: its claim, its items still to send, its drain, its place in the fair share.

A runner holds up to ``--max-jobs`` of these at once (jobs/runner/supervisor.py). Everything that was
true of "the job" when a runner held one is true of each ``Held``: the claim's lease is renewed and its
epoch fences every commit, requests are applied at item boundaries, a drain winds it down alone.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from jobs import config
from jobs.runner.drain import Drain
from jobs.store.lease import Claim
from jobs.store.store import Store

#: Priorities are clamped to this range before they become a weight (2 ** (priority / 5)).
PRIORITY_SPAN = 50


def weight_of(priority: int) -> float:
    """A job's share of the workers: 5 priority points double it (10 points: 4 to 1)."""
    return 2.0 ** (max(-PRIORITY_SPAN, min(PRIORITY_SPAN, priority)) / 5)


def engine_key(spec: dict[str, Any]) -> str:
    """The engine and its options: jobs with the same key can share a worker's loaded engine."""
    options = sorted((spec.get("engine_options") or {}).items())
    return repr((spec.get("engine", config.DEFAULT_ENGINE), options))


@dataclass
class Held:
    claim: Claim
    spec: dict[str, Any]
    drain: Drain
    pending: deque[dict[str, Any]] = field(default_factory=deque)
    solo: set[int] = field(default_factory=set)  # suspects: indices to run alone (jobs/runner/items.py)
    #: the stride scheduler's pass (jobs/runner/fairshare.py): items sent so far over the job's weight
    pass_: float = 0.0
    base_priority: int = 0  # job.json's; a priority request overrides it in the claim's state
    claimed_at: float = field(default_factory=time.monotonic)

    @property
    def job_id(self) -> str:
        return self.claim.job_id

    @property
    def engine_key(self) -> str:
        return engine_key(self.spec)

    @property
    def batch_key(self) -> str:
        """Jobs with the same key may share a batch: one engine call, items read and retried alike."""
        s = self.spec
        reading = (int(s.get("dpi", config.DEFAULT_DPI)), s.get("pdf_text", "auto"))
        return repr((self.engine_key, reading, int(s.get("retries", config.DEFAULT_RETRIES))))

    @property
    def owner(self) -> str:
        return str(self.spec.get("submitted_by") or "")

    @property
    def priority(self) -> int:
        p = self.claim.state.get("priority")  # a priority request's override (jobs/runner/drain.py)
        return p if type(p) is int else self.base_priority

    @property
    def max_workers(self) -> int | None:
        n = self.spec.get("max_workers")
        return n if type(n) is int and n >= 1 else None

    @property
    def item_timeout(self) -> float:
        return float(self.spec.get("item_timeout", config.DEFAULT_ITEM_TIMEOUT_S))

    def load(self, store: Store) -> None:
        """The job's items without a result yet are the ones to do."""
        done = {r["index"] for r in store.iter_results(self.job_id)}
        self.pending = deque(i for i in store.manifest(self.job_id) if i["index"] not in done)
        self.solo = set()

    def requeue(self, items: list[dict[str, Any]], *, solo: bool = False) -> None:
        """Back to the front of the queue, in order."""
        for item in reversed(items):
            self.pending.appendleft(item)
            if solo:
                self.solo.add(item["index"])

    def has_work(self) -> bool:
        """Items to send, and no drain stopping it from sending them."""
        return bool(self.pending) and self.drain.state is None
