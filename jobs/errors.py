"""Exceptions a user can act on. Each message says what went wrong and what to do."""

from __future__ import annotations


class OcrJobsError(Exception):
    """Base class: the CLI prints these as one line, never a traceback."""


class JobNotFound(OcrJobsError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r} (see `python -m jobs list`)")
        self.job_id = job_id


class InvalidTransition(OcrJobsError):
    pass


class StoreBusy(OcrJobsError):
    """A store lock could not be taken in time (another process holds it too long)."""


class LeaseLost(OcrJobsError):
    """This runner's lease epoch is no longer current: another runner owns the job."""


class SubmitError(OcrJobsError):
    """The submission itself is unusable (no files, unknown engine, bad option)."""


class InputError(OcrJobsError):
    """One input item is unusable (bad image, encrypted PDF...): a per-item error."""


class EngineError(OcrJobsError):
    """An engine could not be found or loaded."""
