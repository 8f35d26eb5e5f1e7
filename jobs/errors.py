"""Exceptions a user can act on. Each message says what went wrong and what to do."""

from __future__ import annotations


class OcrJobsError(Exception):
    """Base class: the CLI prints these as one line, never a traceback."""


class JobNotFound(OcrJobsError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r} (see `ocrjobs list`)")
        self.job_id = job_id


class JobDamaged(JobNotFound):
    """A job folder whose files cannot be trusted (a damaged job.json, a job.lock that is a symlink or
    a FIFO). A kind of JobNotFound, so every caller that skips a vanished job skips this one too."""

    def __init__(self, job_id: str, reason: str) -> None:
        OcrJobsError.__init__(
            self,
            f"job {job_id} is damaged: {reason}. Its results are kept in jobs/{job_id}/results; "
            "a runner sets the damaged file aside in state/quarantine/ (see its .reason.txt); "
            f"`ocrjobs delete {job_id}` removes the job",
        )
        self.job_id, self.reason = job_id, reason


class Corrupt(OcrJobsError):
    """A JSON file exists but cannot be parsed into the expected shape (raised by jobs.store.safejson
    and jobs.store.atomic; here, below both, so neither imports the other for it)."""


class InvalidTransition(OcrJobsError):
    pass


class StoreBusy(OcrJobsError):
    """A store lock could not be taken in time (another process holds it too long)."""


class LeaseLost(OcrJobsError):
    """This runner's lease epoch is no longer current: another runner owns the job."""

    def __init__(self, message: str, job_id: str = "") -> None:
        super().__init__(message)
        self.job_id = job_id  # which of the jobs a runner holds it lost


class SubmitError(OcrJobsError):
    """The submission itself is unusable (no files, unknown engine, bad option)."""


class InputError(OcrJobsError):
    """One input item is unusable (bad image, encrypted PDF...): a per-item error."""


class EngineError(OcrJobsError):
    """An engine could not be found or loaded."""
