"""Setting up a job folder for several Unix users, and spotting one that is shared unsafely.

See :mod:`jobs.store.perms` for the model. ``python -m jobs init-folder`` runs :func:`init_folder`; the
runner logs :func:`folder_problems` at start.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
from pathlib import Path

from jobs.errors import OcrJobsError
from jobs.store import perms
from jobs.store.job import JOB_ID

log = logging.getLogger(__name__)


def resolve_user(name: str) -> int:
    """A user name or a numeric uid (a uid needs no passwd entry)."""
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise OcrJobsError(f"no user {name!r} on this machine; give a user name or a numeric uid") from None


def resolve_group(name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise OcrJobsError(f"no group {name!r} on this machine; create it (groupadd) or give a numeric gid") from None


def layout(root: Path, team: int, service: int) -> list[tuple[Path, int, int]]:
    """(path, group, mode) of every shared folder and file. ``state/`` lets the team in and nobody
    else; ``jobs/`` is setgid to the service group (so every job folder belongs to it) and sticky
    (nobody renames another's job); its ``o+rwx`` reaches only the team, through ``state/``."""
    return [
        (root, team, 0o2770),
        (root / "jobs", service, 0o3777),
        (root / "requests", team, 0o3770),
        (root / "runners", team, 0o2750),
        (root / "runners" / "history", team, 0o2750),
        (root / "logs", team, 0o2750),
        (root / "quarantine", service, 0o2770),
        (root / "trash", service, 0o2770),
        (root / "queue.jsonl", team, 0o660),
        (root / "store.lock", service, 0o660),
    ]


def init_folder(root: Path, team: int, owner: int | None = None, service: int | None = None) -> list[str]:
    """Create or fix the folder's ownership and modes; returns what was done, one line each.
    Run by root (to give the folder to the runner's user) or by the runner's user itself."""
    owner = os.geteuid() if owner is None else owner
    if service is None:
        try:
            service = pwd.getpwuid(owner).pw_gid
        except KeyError:
            raise OcrJobsError(f"uid {owner} has no passwd entry: give --service-group") from None
    if os.geteuid() not in (0, owner):
        raise OcrJobsError(f"run init-folder as root or as the folder's owner (uid {owner})")
    done = []
    for path, group, mode in layout(root, team, service):
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
        else:
            path.mkdir(parents=True, exist_ok=True)
        st = os.lstat(path)
        if (st.st_uid, st.st_gid) != (owner, group):
            os.chown(path, owner if os.geteuid() == 0 else -1, group, follow_symlinks=False)
        os.chmod(path, mode)  # after chown: chown clears setgid
        done.append(f"{mode:04o} {owner}:{group} {path}")
    exposed = [p.name for p in _job_dirs(root / "jobs") if os.stat(p).st_mode & 0o007]
    if exposed:
        done.append(
            f"note: {len(exposed)} existing job folder(s) are open to other users (e.g. {exposed[0]}); "
            f"`chmod -R o-rwx {root / 'jobs'}/*` closes them"
        )
    return done


def folder_problems(root: Path) -> list[str]:
    """What makes this folder unsafe for several users, one line each with the fix (empty: fine)."""
    out = []
    fix = "run `ocrjobs init-folder --group TEAM` (see docs/architecture.md, Several users)"
    try:
        jobs_st = os.stat(root / "jobs")
        req_st = os.stat(root / "requests")
        root_st = os.stat(root)
    except OSError:
        return out
    for name, st in (("jobs", jobs_st), ("requests", req_st)):
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            out.append(
                f"{name}/ is writable by other users without the sticky bit: anyone can rename or delete "
                f"another user's {name}; {fix}"
            )
    if jobs_st.st_mode & 0o022 and not jobs_st.st_mode & stat.S_ISGID:
        out.append(f"jobs/ is writable by other users but not setgid: the runner cannot write their jobs; {fix}")
    if req_st.st_mode & stat.S_ISVTX and os.geteuid() not in (0, req_st.st_uid):
        out.append(
            f"requests/ is sticky and belongs to uid {req_st.st_uid}, not to uid {os.geteuid()}: this runner "
            "cannot remove other users' requests; give the folder to the runner's user (init-folder --owner)"
        )
    if jobs_st.st_mode & 0o002 and root_st.st_mode & 0o001:
        out.append(f"every user of this machine can reach state/ and submit (state/ is o+x, jobs/ o+w); {fix}")
    try:
        exposed = sum(1 for p in _job_dirs(root / "jobs") if os.lstat(p).st_mode & 0o007)
    except OSError:
        exposed = 0
    if exposed and jobs_st.st_mode & 0o022:
        out.append(f"{exposed} job folder(s) can be opened by every user; `chmod o-rwx` them")
    return out


def warn_problems(root: Path) -> None:
    for line in folder_problems(root):
        log.warning("shared job folder: %s", line)


def _job_dirs(jobs_dir: Path) -> list[Path]:
    with os.scandir(jobs_dir) as it:
        return [Path(e.path) for e in it if JOB_ID.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]


def prepare_runner(root: Path) -> None:
    """At runner start: in a shared folder, a umask that keeps what the runner makes usable by the
    team's group (the journal it compacts); and one warning per problem of the folder's setup."""
    if perms.is_shared(root / "jobs"):
        os.umask(perms.RUNNER_SHARED_UMASK)
    warn_problems(root)
