"""Who may see and change what in a job folder shared by several Unix users.

The model (docs/architecture.md, *Several users on one folder*): the folder belongs to the runner's
user (the *operator*); ``state/`` is group-owned by the team and setgid; ``jobs/`` is setgid to the
runner's *service group* and sticky; each job folder is made ``2770`` by its submitter, so only the
submitter and the service group (runners, dashboard) can enter it. A job's *owner* is the owner of
its folder (the kernel's word, which nobody can forge); ``job.json`` records it for people. Only the
owner, root or the operator may cancel, pause, resume, retry or delete a job: the client checks
before writing a request, and the runner checks the request file's owner before applying it.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
from pathlib import Path
from typing import Any, Protocol

from jobs.errors import JobNotFound, OcrJobsError
from jobs.store.safejson import open_regular


class Folder(Protocol):
    """What this module needs of a :class:`jobs.store.store.Store` (which calls it, so it cannot
    import the store back): its root and where a job's folder is."""

    root: Path

    def job_dir(self, job_id: str) -> Path: ...


log = logging.getLogger(__name__)

#: The runner's umask in a shared folder: what it creates stays writable by the team's group (the
#: journal it compacts, the folders it makes); job folders keep others out with their own mode.
RUNNER_SHARED_UMASK = 0o002
#: Modes of what a submitter puts in a job folder: owner and group only (group = the service group
#: in a shared folder), so another user cannot read a scan and the runner can write its state.
SHARED_DIR_MODE, SHARED_FILE_MODE = 0o770, 0o660
#: In a folder not set up for sharing the job stays private to its submitter (the runner is the same user).
PRIVATE_DIR_MODE, PRIVATE_FILE_MODE = 0o700, 0o600

_warned: set[tuple[str, str]] = set()


class PermissionRefused(OcrJobsError):
    """The caller may not act on this job: it belongs to another user."""


class JobUnreadable(JobNotFound):
    """The job exists but this user cannot open it (another user's job). A :class:`JobNotFound`,
    so every caller that skips a vanished job skips it too, instead of crashing."""

    def __init__(self, job_id: str, owner: str) -> None:
        super().__init__(job_id)
        self.args = (f"job {job_id} belongs to {owner}; you cannot read it (only its owner and the runners can)",)


def user_name(uid: int) -> str:
    """``alice (uid 1001)``, or ``uid 41001`` for a uid without a passwd entry."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def current_owner() -> dict[str, Any]:
    """What job.json records as the submitter."""
    uid = os.geteuid()
    try:
        name: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    return {"uid": uid, "user": name}


def is_shared(jobs_dir: Path) -> bool:
    """A folder set up for several users: ``jobs/`` is setgid (see :func:`init_folder`)."""
    try:
        return bool(os.stat(jobs_dir).st_mode & stat.S_ISGID)
    except OSError:
        return False


def seal_job_folder(tmp: Path, shared: bool) -> None:
    """Give a job folder being built its modes, whatever the submitter's umask: owner and group in a
    shared folder, owner alone otherwise; never others. Only modes that differ are changed, so a
    setgid bit inherited from ``jobs/`` stays (chmod by a non-member of the group would clear it)."""
    dmode, fmode = (SHARED_DIR_MODE, SHARED_FILE_MODE) if shared else (PRIVATE_DIR_MODE, PRIVATE_FILE_MODE)
    for dirpath, dirnames, filenames in os.walk(tmp):
        for name, want in [(dirpath, dmode)] + [(os.path.join(dirpath, f), fmode) for f in filenames]:
            st = os.lstat(name)
            if stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_IMODE(st.st_mode) & 0o777 != want:
                os.chmod(name, (stat.S_IMODE(st.st_mode) & 0o7000) | want)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]


def job_owner_uid(store: Folder, job_id: str) -> int:
    """The job's owner: its folder's owner (raises JobNotFound if there is no such job)."""
    try:
        return os.stat(store.job_dir(job_id)).st_uid
    except FileNotFoundError:
        raise JobNotFound(job_id) from None


def allowed_uids(store: Folder, job_id: str) -> set[int]:
    """Who may change the job: root, its owner and the folder's owner (the operator, the dashboard)."""
    return {0, job_owner_uid(store, job_id), os.stat(store.root).st_uid}


def check_may_request(store: Folder, job_id: str, kind: str) -> None:
    """Client side: refuse early, with a message, a request the runner would refuse anyway."""
    uid = os.geteuid()
    if uid not in allowed_uids(store, job_id):
        owner = user_name(job_owner_uid(store, job_id))
        raise PermissionRefused(
            f"job {job_id} belongs to {owner}; only its owner, root or the folder's owner "
            f"({user_name(os.stat(store.root).st_uid)}) may {kind} it"
        )


def unreadable(store: Folder, job_id: str) -> JobUnreadable:
    """The error for a job folder this user may not open; logged once per job and process (a warning
    in a runner, which should be able to open every job; a client skipping others' jobs says nothing)."""
    try:
        owner = user_name(job_owner_uid(store, job_id))
    except (OSError, OcrJobsError):
        owner = "another user"
    warn_once(
        "unreadable",
        job_id,
        "job %s cannot be opened by %s (it belongs to %s); skipped",
        job_id,
        user_name(os.geteuid()),
        owner,
        level=logging.WARNING if getattr(store, "repair", False) else logging.DEBUG,
    )
    return JobUnreadable(job_id, owner)


def cannot_open(store: Folder, job_id: str) -> bool:
    """Whether the job's folder exists but this user may not read its job.json."""
    try:
        os.close(open_regular(store.job_dir(job_id) / "job.json"))
        return False
    except PermissionError:
        return True
    except (OSError, OcrJobsError):
        return False


def request_refusal(store: Folder, path: Path, job_id: str) -> str | None:
    """Runner side: why a request file may not be applied (its owner may not change the job), or None.
    The file's owner is the kernel's record of who wrote it: another user cannot forge it."""
    try:
        requester = os.stat(path).st_uid
        allowed = allowed_uids(store, job_id)
    except (OSError, OcrJobsError):
        return None  # gone, or no such job: the usual path handles it
    if requester in allowed:
        return None
    return f"{user_name(requester)} may not change a job of {user_name(job_owner_uid(store, job_id))}"


def warn_once(kind: str, key: str, msg: str, *args: Any, level: int = logging.WARNING) -> bool:
    """A warning logged once per (kind, key) and process (a runner polls every 0.1 s); True the first time."""
    if (kind, key) in _warned:
        return False
    _warned.add((kind, key))
    log.log(level, msg, *args)
    return True
