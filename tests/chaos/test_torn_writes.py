"""Torn writes: a child process rewrites ``state.json`` and appends events in a loop and is SIGKILLed
at a random moment, thousands of times; the store must always read back a whole version.

Each version carries its own checksum and a size that varies from 1 KB to 256 KB (many pages), so a
torn or mixed file cannot pass. A SIGKILL leaves the page cache intact: this proves the write
protocol (temp file, rename) against process death, not against power loss (that is fsync's job).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from jobs.intake.submit import JobSpec, submit
from jobs.store import Store
from jobs.store.atomic import TMP_PREFIX, append_line
from jobs.store.housekeeping import TMP_MAX_AGE_S, housekeep
from jobs.store.lease import write_state
from tests.chaos.conftest import corrupt_json_files, record, scale, torn_lines
from tests.conftest import make_png

pytestmark = [pytest.mark.slow, pytest.mark.timeout(scale(120, 900))]


def _version(n: int, rng: random.Random) -> dict[str, Any]:
    blob = rng.randbytes(rng.randint(512, 128 * 1024)).hex()
    return {"status": "running", "version": n, "blob": blob, "sha": hashlib.sha256(blob.encode()).hexdigest()}


def _writer(store: Store, job_id: str, start: int, seed: int) -> None:
    """The child: write versions start+1, start+2, ... until killed."""
    rng = random.Random(seed)
    n = start
    events = store.job_dir(job_id) / "events.jsonl"
    while True:
        n += 1
        write_state(store, job_id, _version(n, rng))
        append_line(events, {"event": "written", "version": n, "pad": "y" * rng.randint(0, 3000)})


def test_a_killed_writer_never_leaves_a_torn_state(state: Path, tmp_path: Path) -> None:
    kills = scale(300, 5000)
    seed = int(os.environ.get("OCRJOBS_CHAOS_SEED") or time.time_ns() % 10**6)
    rng = random.Random(seed)
    store = Store(state)
    job_id = submit(store, [make_png(tmp_path / "a.png", (8, 8))], JobSpec(engine="tests.engines:SizeEngine"))
    jdir = store.job_dir(job_id)
    write_state(store, job_id, _version(0, rng))
    last = 0
    mid_write = advanced = tmp_seen = 0
    for k in range(kills):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            try:
                _writer(store, job_id, last, seed * 100_000 + k)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0, 0.01))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        st = store.read_state(job_id)  # quarantines (and returns {}) whatever it cannot parse
        assert st, f"kill {k}: state.json unreadable or missing (seed {seed})"
        assert hashlib.sha256(st["blob"].encode()).hexdigest() == st["sha"], f"kill {k}: a mixed version"
        assert st["version"] >= last, f"kill {k}: went back from version {last} to {st['version']}"
        advanced += st["version"] > last
        last = st["version"]
        tmp_now = sum(1 for p in os.scandir(jdir) if p.name.startswith(TMP_PREFIX))
        mid_write += tmp_now > tmp_seen  # this kill fell between a temp file's creation and its rename
        tmp_seen = tmp_now
    corrupt = corrupt_json_files(state)
    versions = [e["version"] for e in store.events(job_id) if e.get("event") == "written"]
    tmp_left = sum(1 for p in os.scandir(jdir) if p.name.startswith(TMP_PREFIX))
    housekeep(store, retention_days=365, now=time.time() + TMP_MAX_AGE_S + 1)
    tmp_after = sum(1 for p in os.scandir(jdir) if p.name.startswith(TMP_PREFIX))
    record(
        "torn_writes",
        seed=seed,
        kills=kills,
        versions_written=last,
        kills_after_progress=advanced,
        kills_leaving_a_temp_file=mid_write,
        torn_reads=0,
        corrupt_json=len(corrupt),
        torn_event_lines_skipped=torn_lines(state),
        temp_files_before_housekeeping=tmp_left,
        temp_files_after_housekeeping=tmp_after,
    )
    assert corrupt == [], corrupt
    assert not (state / "quarantine").exists()
    disorder = [(a, b) for a, b in zip(versions, versions[1:], strict=False) if b <= a]
    assert disorder == [], disorder[:10]  # whole lines, in order
    assert mid_write > 0  # some kills really landed mid-write
    assert tmp_after == 0
