"""The runner heartbeat: what a real runner reports, and its bounded hour of history."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from jobs.ops.liveness import read_history
from jobs.runner.heartbeat import HISTORY_LEN, Resources, Telemetry
from jobs.store import Store
from tests.conftest import Runners, cli_json, make_png, wait_for


@pytest.mark.slow
def test_a_runner_heartbeat_says_what_it_is_doing(state: Path, tmp_path: Path, runners: Runners) -> None:
    files = [make_png(tmp_path / f"p{i}.png", (20 + i, 10)) for i in range(4)]
    engine = ("--engine", "tests.engines:SizeEngine", "--engine-option", "delay=1")
    job_id = cli_json(state, "submit", *map(str, files), *engine)["id"]
    runners.start(state, "--workers", "1", env={"OCRJOBS_HEARTBEAT_S": "0.5"})

    def busy() -> dict[str, Any] | None:
        hbs = Store(state).runners()
        ok = hbs and (hbs[0].get("current") or {}).get("committed", 0) >= 1 and hbs[0]["workers"][0]["item"]
        return hbs[0] if ok else None

    hb = wait_for(busy, 30, what="a heartbeat with a committed item and one in flight")
    assert {"pid", "host", "version", "started_at", "last_error", "device"} <= set(hb)
    assert hb["job"] == job_id and hb["current"]["job"] == job_id and hb["counters"]["done"] >= 1
    assert hb["current"]["last_item"] == hb["counters"]["done"] - 1 and 0.9 < hb["current"]["recent_item_s"] < 2
    (worker,) = hb["workers"]
    assert worker["engine"] == "tests.engines:SizeEngine" and worker["engine_device"] == "cpu"
    assert worker["source"] == f"p{worker['item']}.png" and time.time() - worker["item_started_at"] < 5
    assert hb["resources"]["runner"]["rss_bytes"] > 10 * 1024**2 and hb["resources"]["rss_bytes"] is not None
    assert hb["gpu"]["available"] or hb["gpu"]["reason"].startswith("no GPU")
    assert hb["disk"]["free_bytes"] > 0 and hb["disk"]["fstype"]
    assert hb["recent"]["done"] == hb["counters"]["done"]  # the runner is younger than the 5-minute window
    assert 1 <= hb["backlog"]["held_items"] <= 4 - hb["counters"]["done"]  # in flight or still to send
    assert read_history(Store(state), hb["id"])[0]["done"] == 0  # the first sample, at start


def sample_hb(t: float, done: int) -> dict[str, Any]:
    return {
        "heartbeat_at": t,
        "counters": {"done": done, "failed": 0, "timed_out": 0},
        "job": None,
        "workers": [],
        "resources": {"cpu_percent": 1.0, "rss_bytes": 1},
        "gpu": {"available": False, "gpus": []},
        "disk": {"free_percent": 50.0},
    }


def test_the_history_keeps_one_hour_of_samples(state: Path) -> None:
    store = Store(state)
    tel = Telemetry(store, "r1", 2.0)
    start = time.time() - 4000
    for i in range(400):  # 400 samples 10 s apart: the oldest 40 fall out
        tel._sample(sample_hb(start + 10 * i, done=i))
    saved = read_history(store, "r1")
    assert len(tel.history) == len(saved) == HISTORY_LEN == 360
    assert saved[0]["done"] == 40 and saved[-1]["done"] == 399
    assert json.loads((state / "runners" / "history" / "r1.json").read_text())["every_s"] == 10.0


def test_the_recent_window_counts_the_last_five_minutes(state: Path) -> None:
    tel = Telemetry(Store(state), "r1", 2.0)
    now = time.time()
    for age, done in ((400, 5), (310, 8), (290, 10), (100, 20)):
        tel._sample(sample_hb(now - age, done=done))
    recent = tel._recent(now, {"done": 30, "failed": 4, "timed_out": 1})
    assert recent == {"window_s": 290.0, "done": 20, "failed": 4, "timed_out": 1}


def test_resource_sampling_is_cached_between_heartbeats(state: Path) -> None:
    res = Resources(state, every_s=60)
    first = res.sample([])
    assert res.sample([]) is first and first["runner"]["rss_bytes"] > 0
