"""ocrjobs: a crash-safe batch OCR job system. The store is the one thing clients and runners share."""

from jobs.errors import InputError, JobNotFound, OcrJobsError, StoreBusy, SubmitError
from jobs.store import Job, Store
from jobs.store.status import ItemStatus, JobStatus
from jobs.torchvision_ops import install as _arm_torchvision_repair

_arm_torchvision_repair()

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
