"""The job folder and its protocol: atomic writes, locks, jobs, the queue journal, statuses,
leases, requests and housekeeping. The lowest layer: it imports only jobs.errors and jobs.config."""

from jobs.store.job import Job
from jobs.store.store import Store

__all__ = ["Job", "Store"]
