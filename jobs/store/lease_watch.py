"""The takeover rule: a running job's lease is taken over only after it stood unchanged for a lease period.

Measured on the claimer's own monotonic clock, so no wall clock, wrong or jumping on either side,
decides a takeover (see docs/architecture.md, *Clocks*). One :class:`LeaseWatch` per store object.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from jobs.store.store import Store


class LeaseWatch:
    """How long this process has seen each running job's lease unchanged, on its own monotonic clock.

    A lease is taken over only once the same (runner, epoch, expires_at) has stood for the owner's
    ``lease_s`` of the claimer's monotonic time. A live owner rewrites it every ``lease_s / 3``
    (monotonic too), so no wall clock, wrong or jumping on either side, can make a live lease look
    expired, or a dead owner's lease look live for more than one lease period after it is first seen.
    """

    def __init__(self) -> None:
        # job id -> (lease key, monotonic time first seen, lease_s, seen alive: changed or written by us)
        self._seen: dict[str, tuple[tuple[Any, ...], float, float, bool]] = {}

    def note(self, job_id: str, lease: dict[str, Any], lease_s: float, *, live: bool = False) -> float:
        """Record a sighting (or our own write, ``live``) of a lease; return how long it has stood."""
        key = (lease.get("runner"), lease.get("epoch"), lease.get("expires_at"))
        lease_s = float(lease.get("lease_s") or lease_s)
        now = time.monotonic()
        hit = self._seen.get(job_id)
        if live or hit is None or hit[0] != key:
            self._seen[job_id] = (key, now, lease_s, live or hit is not None)
            return 0.0
        return now - hit[1]

    def expired(self, job_id: str, lease: dict[str, Any], lease_s: float) -> bool:
        return self.note(job_id, lease, lease_s) >= float(lease.get("lease_s") or lease_s)

    def suspect(self) -> bool:
        """A watched lease that may be an orphan's: not yet seen renewed, or late for its renewal,
        and not expired yet. ``runner.py --once`` waits for these before it calls the queue drained."""
        now = time.monotonic()
        return any(
            (not alive or now - since >= lease_s / 2) and now - since < lease_s
            for _key, since, lease_s, alive in self._seen.values()
        )

    def keep_only(self, job_ids: set[str]) -> None:
        for gone in set(self._seen) - job_ids:
            del self._seen[gone]


_WATCHES: weakref.WeakKeyDictionary[Store, LeaseWatch] = weakref.WeakKeyDictionary()


def watch_of(store: Store) -> LeaseWatch:
    """The lease sightings of this process for one store (kept as long as the store object)."""
    watch = _WATCHES.get(store)
    if watch is None:
        watch = _WATCHES[store] = LeaseWatch()
    return watch
