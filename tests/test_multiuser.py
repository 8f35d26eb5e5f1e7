"""Several Unix users on one job folder, with real uids (setpriv): each user's scans stay private,
nobody cancels, deletes or renames another's job, and the runner serves everyone without crashing
on a job it cannot open. See jobs/store/perms.py for the model.

Needs root (to switch uids) and util-linux's setpriv; skipped otherwise. The uids need no passwd
entries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, cli, job, make_png

TEAM, SERVICE = 41000, 41005
ALICE, BOB, RUNNER = 41001, 41002, 41003
#: (uid, primary gid, supplementary groups)
USERS = {"alice": (ALICE, TEAM, []), "bob": (BOB, TEAM, []), "runner": (RUNNER, SERVICE, [TEAM])}

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to run as other uids"
)


def _interpreter(home: Path) -> tuple[list[str], dict[str, str]]:
    """A Python other uids can run with this venv's packages: this one, or, where it lives under a
    private home (pyenv under /root), the system's of the same version with the venv's site-packages."""
    env = {**os.environ, "HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    candidates = [([sys.executable], env)]
    system = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin:/usr/local/bin")
    if system:
        candidates.append(([system, "-s"], {**env, "PYTHONPATH": sysconfig.get_paths()["purelib"]}))
    for cmd, cenv in candidates:
        code = "import subprocess, sys, jobs.cli, PIL.Image; subprocess.run([sys.executable, '-c', ''], check=True)"
        probe = _as("alice", [*cmd, "-c", code], env=cenv)  # the runner's workers start from sys.executable
        if probe.returncode == 0:
            return cmd, cenv
    pytest.skip("no Python interpreter with this venv's packages is usable by another uid")


def _as(user: str, argv: list[str], env: dict[str, str] | None = None, timeout: float = 180):
    uid, gid, groups = USERS[user]
    drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}"]
    drop += [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    return subprocess.run(
        [*drop, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


class Users:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.state = base / "state"
        home = base / "home"
        home.mkdir()
        home.chmod(0o1777)
        self.py, self.env = _interpreter(home)

    def cli(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        return _as(user, [*self.py, "-m", "jobs", "--state", str(self.state), *args], env=self.env)

    def submit(self, user: str, path: Path, *extra: str) -> str:
        proc = self.cli(user, "submit", str(path), "--engine", "tests.engines:SizeEngine", "--json", *extra)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["id"]

    def python(self, user: str, code: str) -> subprocess.CompletedProcess[str]:
        return _as(user, [*self.py, "-c", code], env=self.env)

    def run_once(self) -> subprocess.CompletedProcess[str]:
        argv = [*self.py, "runner.py", "--state", str(self.state), "--once", "--workers", "1", "--lease-seconds", "3"]
        return _as("runner", argv, env=self.env, timeout=240)


@pytest.fixture
def users() -> Iterator[Users]:
    base = Path(tempfile.mkdtemp(prefix="ocrjobs-multiuser-", dir="/tmp"))  # pytest's tmp_path is 0700 root
    base.chmod(0o711)
    inputs = base / "in"
    make_png(inputs / "alice.png", (64, 48))
    make_png(inputs / "bob.png", (32, 16))
    make_png(inputs / "own.png", (20, 10))
    make_png(inputs / "locked.png", (30, 10))
    inputs.chmod(0o755)
    for p in inputs.iterdir():
        p.chmod(0o644)
    (base / "out").mkdir(mode=0o777)
    (base / "out").chmod(0o777)
    try:
        yield Users(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _try_open(users: Users, user: str, path: Path) -> str:
    """'ok' or the error name, as ``user`` opening ``path`` for reading."""
    code = f"import sys\ntry:\n    open({str(path)!r}, 'rb').close()\n    print('ok')\nexcept OSError as e:\n"
    code += "    print(type(e).__name__)"
    return users.python(user, code).stdout.strip()


def _setup_by_hand(state: Path) -> None:
    """What `init-folder` does, as the documented shell commands would (chown, then chmod: chown
    clears setgid); the shared folder's layout, independent of the code under test."""
    for name, group, mode in [
        ("", TEAM, 0o2770),
        ("jobs", SERVICE, 0o3777),
        ("requests", TEAM, 0o3770),
        ("runners", TEAM, 0o2750),
        ("logs", TEAM, 0o2750),
    ]:
        d = state / name
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, RUNNER, group)
        d.chmod(mode)


@needs_root
@pytest.mark.parametrize("setup", ["init-folder", "by-hand"])
def test_shared_folder_keeps_users_apart_and_serves_them_all(users: Users, setup: str) -> None:
    if setup == "by-hand":
        _setup_by_hand(users.state)
    else:
        init = subprocess.run(
            [*users.py, "-m", "jobs", "--state", str(users.state), "init-folder", "--group", str(TEAM),
             "--owner", str(RUNNER), "--service-group", str(SERVICE)],
            cwd=REPO, env=users.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert init.returncode == 0, init.stderr
        assert users.cli("runner", "health").returncode in (0, 1, 2)  # the team can read the folder
    ja = users.submit("alice", users.base / "in" / "alice.png")
    jb = users.submit("bob", users.base / "in" / "bob.png")
    alice_dir = users.state / "jobs" / ja
    scan = next((alice_dir / "inputs").iterdir())

    # Nothing of a job is open to other users, whatever the submitter's umask (022 here).
    for p in [alice_dir, *alice_dir.rglob("*")]:
        assert p.stat().st_mode & 0o007 == 0, f"{p} is open to other users: {oct(p.stat().st_mode)}"
    assert json.loads((alice_dir / "job.json").read_text())["owner"]["uid"] == ALICE
    assert _try_open(users, "alice", scan) == "ok"
    assert _try_open(users, "bob", scan) == "PermissionError"
    moved = users.python("bob", f"import os; os.rename({str(alice_dir)!r}, {str(alice_dir)!r} + '-mine')")
    assert moved.returncode != 0 and "PermissionError" in moved.stderr  # sticky jobs/
    assert alice_dir.is_dir()

    # Bob can neither cancel nor delete Alice's job, through the CLI or by writing a request himself.
    for kind in ("cancel", "delete"):
        refused = users.cli("bob", kind, ja)
        assert refused.returncode == 1 and "belongs to" in refused.stderr, refused.stderr
    forged = users.state / "requests" / f"{10**19:020d}-abcdef-{ja}-cancel.json"
    wrote = users.python("bob", f'open({str(forged)!r}, \'w\').write(\'{{"job_id": "{ja}", "kind": "cancel"}}\')')
    assert wrote.returncode == 0, wrote.stderr
    listing = users.cli("bob", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert [j["id"] for j in json.loads(listing.stdout)] == [jb]  # Alice's job is not Bob's to see

    # One runner (a third uid) serves both users' jobs and refuses Bob's forged request.
    ran = users.run_once()
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert job(users.state, ja)["status"] == "succeeded", (job(users.state, ja), ran.stdout + ran.stderr)
    assert job(users.state, jb)["status"] == "succeeded"
    events = [json.loads(line) for line in (alice_dir / "events.jsonl").read_text().splitlines()]
    refusals = [e for e in events if e["event"] == "request_refused"]
    assert refusals and "41002" in refusals[0]["reason"]
    assert not forged.exists()

    # Alice reads what the runner wrote for her, and may delete her own job.
    out = users.base / "out" / "alice.json"
    exported = users.cli("alice", "export", ja, "--format", "json", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    assert "64x48" in out.read_text()
    assert users.cli("alice", "delete", ja).returncode == 0
    again = users.run_once()
    assert again.returncode == 0, again.stdout + again.stderr
    assert not alice_dir.exists()
    assert (users.state / "jobs" / jb).is_dir()


@needs_root
def test_runner_skips_jobs_it_cannot_open_and_serves_the_rest(users: Users) -> None:
    """A folder opened up with `chmod 777` instead of init-folder: another user's job, and a job whose
    lock the runner cannot open, are skipped (logged once), never crash it; its other jobs run."""
    for d in (users.state, *(users.state / name for name in ("jobs", "requests", "runners"))):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o777)
    own = users.submit("runner", users.base / "in" / "own.png")
    foreign = users.submit("alice", users.base / "in" / "alice.png", "--priority", "5")
    locked = users.submit("runner", users.base / "in" / "locked.png", "--priority", "5")
    lock = users.state / "jobs" / locked / "job.lock"
    os.chown(lock, 0, 0)
    lock.chmod(0o600)

    ran = users.run_once()
    log = ran.stdout + ran.stderr
    assert ran.returncode == 0, log
    assert job(users.state, own)["status"] == "succeeded"
    assert job(users.state, foreign)["status"] == "queued"  # untouched, left for a runner that can open it
    assert job(users.state, locked)["status"] == "queued"
    assert f"cannot claim job {locked}" in log
    assert "sticky" in log  # the runner says why the folder is unsafe, and how to fix it
    assert "housekeeping:" not in log, log  # its sweep skips what it cannot open, and goes on


def test_a_job_is_private_to_its_submitter_whatever_the_umask(state: Path, tmp_path: Path) -> None:
    """In a folder not set up for sharing, nothing of a job is open to the group or to others,
    even from a process whose umask (022) would make every copied scan world-readable."""
    old = os.umask(0o022)
    try:
        job_id = json.loads(cli(state, "submit", str(make_png(tmp_path / "a.png")), "--json").stdout)["id"]
    finally:
        os.umask(old)
    folder = state / "jobs" / job_id
    for p in [folder, *folder.rglob("*")]:
        assert p.stat().st_mode & 0o077 == 0, f"{p}: {oct(p.stat().st_mode)}"
    assert json.loads((folder / "job.json").read_text())["owner"]["uid"] == os.geteuid()


def test_an_unsafe_shared_folder_is_named_with_its_fix(state: Path) -> None:
    from jobs.store.shared_folder import folder_problems, init_folder

    for name in ("jobs", "requests"):
        (state / name).mkdir()
        (state / name).chmod(0o777)
    problems = "\n".join(folder_problems(state))
    assert "jobs/ is writable by other users without the sticky bit" in problems
    assert "requests/ is writable by other users without the sticky bit" in problems
    assert "not setgid" in problems and "init-folder" in problems
    init_folder(state, team=os.getegid(), service=os.getegid())
    assert folder_problems(state) == []
    assert (state / "jobs").stat().st_mode & 0o7777 == 0o3777
    assert (state / "requests").stat().st_mode & 0o7777 == 0o3770
