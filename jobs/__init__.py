"""ocrjobs: a crash-safe batch OCR job system. The store is the one thing clients and runners share."""

from jobs.errors import InputError, JobNotFound, OcrJobsError, StoreBusy, SubmitError
from jobs.store.status import ItemStatus, JobStatus
from jobs.store.store import Job, Store

__all__ = [
    "InputError",
    "ItemStatus",
    "Job",
    "JobNotFound",
    "JobStatus",
    "OcrJobsError",
    "Store",
    "StoreBusy",
    "SubmitError",
]
