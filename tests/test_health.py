"""The one health model: each rule from hand-written heartbeats and jobs, then from real runners."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest

from jobs.ops import health, mounts
from jobs.ops.gpu import gpu_stats
from jobs.store import Store
from tests.conftest import PY, Runners, cli, wait_for
from tests.fakes import FakeNvml, write_heartbeat, write_job

Part = namedtuple("Part", "device mountpoint fstype opts")
Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def store(state: Path) -> Store:
    return Store(state)


def reasons(store: Store) -> tuple[str, list[str]]:
    report = health.check(store)
    return report["status"], report["reasons"]


def test_a_fresh_heartbeat_from_a_live_process_is_ok(store: Store) -> None:
    write_heartbeat(store)
    assert reasons(store) == ("ok", [])


def test_no_runner_is_down(store: Store) -> None:
    status, why = reasons(store)
    assert status == "down" and "no runner is alive" in why[0]


def test_a_heartbeat_whose_process_is_gone_is_dead_at_once(store: Store) -> None:
    proc = subprocess.run([PY, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    write_heartbeat(store, pid=int(proc.stdout))
    report = health.check(store)
    assert [r["state"] for r in report["runners"]] == ["dead"] and report["status"] == "down"


@pytest.mark.parametrize("age,expected", [(9.0, "alive"), (11.0, "stale"), (120.0, "dead")])
def test_a_runner_is_stale_after_five_missed_2s_beats(store: Store, age: float, expected: str) -> None:
    write_heartbeat(store, "r1", age_s=age, host="another-host")
    assert [r["state"] for r in health.check(store)["runners"]] == [expected]


def test_a_stale_runner_degrades_health(store: Store) -> None:
    write_heartbeat(store, "r1")
    write_heartbeat(store, "r2", age_s=30)
    status, why = reasons(store)
    assert status == "degraded" and why == ["runner r2 heartbeat is 30 s old: it is hung, stopped or overloaded"]


@pytest.mark.parametrize("free_percent,status", [(50.0, "ok"), (3.0, "degraded"), (0.5, "down")])
def test_disk_free_thresholds(store: Store, monkeypatch: pytest.MonkeyPatch, free_percent: float, status: str) -> None:
    write_heartbeat(store)
    usage = Usage(1000, int(1000 - free_percent * 10), int(free_percent * 10))
    monkeypatch.setattr(health.shutil, "disk_usage", lambda _path: usage)
    got, why = reasons(store)
    assert got == status
    assert status == "ok" or f"{free_percent:.1f} % free" in why[0]


@pytest.mark.parametrize(
    "used_mib,total_mib,degraded",
    [(15500, 16000, True), (3700, 4096, True), (8000, 16000, False)],
    ids=["over-95-percent", "under-500-MiB-free", "fine"],
)
def test_gpu_memory_rules(store: Store, used_mib: int, total_mib: int, degraded: bool) -> None:
    write_heartbeat(store, gpu=gpu_stats(FakeNvml(used_mib, total_mib)))
    status, why = reasons(store)
    assert status == ("degraded" if degraded else "ok")
    if degraded:
        assert why[0].startswith("GPU 0 (Tesla T4) of runner r1:") and f"{total_mib - used_mib} MiB free" in why[0]


def test_a_dead_ray_node_and_its_actor_degrade_health(store: Store) -> None:
    node = {"node_id": "6b1b" * 8, "alive": True, "host": "gpu-a", "cpus": 8, "gpus": 1}
    actor = {"slot": 0, "alive": True, "node_id": node["node_id"]}
    ray = {"nodes": [node], "nodes_alive": 1, "actors": [actor], "actors_alive": 1, "gpu_by_node": {}}
    write_heartbeat(store, executor="ray", ray=ray)
    assert reasons(store) == ("ok", [])

    ray = {
        **ray,
        "nodes": [node, {**node, "node_id": "9c9c" * 8, "alive": False, "host": "gpu-b"}],
        "actors": [actor, {**actor, "slot": 1, "alive": False}],
        "gpu_by_node": {node["node_id"]: gpu_stats(FakeNvml(15500, 16000))},
    }
    write_heartbeat(store, executor="ray", ray=ray)
    status, why = reasons(store)
    assert status == "degraded"
    assert "runner r1: 1 Ray node(s) dead (gpu-b)" in why
    assert "runner r1: 1 of 2 Ray actors up" in why
    assert any(w.startswith("GPU 0 (Tesla T4) of runner r1 (Ray node 6b1b6b1b6b1b)") for w in why), why


@pytest.mark.parametrize(
    "recent,status",
    [({"done": 17, "failed": 2, "timed_out": 1}, "degraded"), ({"done": 18, "failed": 2}, "ok"), ({"failed": 5}, "ok")],
    ids=["15-percent", "10-percent", "too-few-items"],
)
def test_failure_rate_over_five_minutes(store: Store, recent: dict[str, int], status: str) -> None:
    write_heartbeat(store, recent={"window_s": 300, **recent})
    got, why = reasons(store)
    assert got == status
    if status == "degraded":
        assert why == ["15 % of the last 20 items failed or timed out (over 5 min; limit 10 %)"]


def test_a_failure_rate_is_summed_over_runners(store: Store) -> None:
    write_heartbeat(store, "r1", recent={"window_s": 300, "done": 9, "failed": 2})
    write_heartbeat(store, "r2", recent={"window_s": 300, "done": 0, "timed_out": 1})
    report = health.check(store)
    assert report["failure_rate"]["items"] == 12 and report["status"] == "degraded"


def test_a_backlog_over_1000_items_degrades(store: Store) -> None:
    write_heartbeat(store)
    write_job(store, total=1001)
    status, why = reasons(store)
    assert status == "degraded" and why == ["backlog of 1001 items (> 1000)"]


def test_a_job_folder_on_nfs_degrades(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    write_heartbeat(store)
    table = [Part("/dev/sda1", "/", "ext4", "rw"), Part("srv:/export", str(store.root.parent), "nfs4", "rw")]
    monkeypatch.setattr(mounts.psutil, "disk_partitions", lambda all=False: table)
    status, why = reasons(store)
    assert status == "degraded"
    assert "is on nfs4" in why[0] and "file locks are not reliable across hosts" in why[0]


def test_the_mount_holding_a_path_is_the_longest_prefix() -> None:
    table = [Part("a", "/", "ext4", ""), Part("b", "/srv", "cifs", ""), Part("c", "/srv/local", "xfs", "")]
    assert mounts.filesystem("/srv/jobs/state", table)["fstype"] == "cifs"
    assert mounts.filesystem("/srv/local/state", table) == {
        "mountpoint": "/srv/local",
        "fstype": "xfs",
        "network": False,
    }
    assert mounts.filesystem("/srvx", table)["fstype"] == "ext4"


# -- real runners ------------------------------------------------------------------------------
FAST_BEAT = {"OCRJOBS_HEARTBEAT_S": "0.5"}  # stale after 2.5 s instead of 10 s


def health_json(state: Path) -> tuple[int, dict[str, Any]]:
    proc = cli(state, "health", "--json", check=False)
    return proc.returncode, json.loads(proc.stdout)


def alive(state: Path) -> bool:
    return [r["state"] for r in health.check(Store(state))["runners"]] == ["alive"]


@pytest.mark.slow
def test_a_running_runner_is_ok(state: Path, runners: Runners) -> None:
    runners.start(state)
    wait_for(lambda: alive(state), 30, what="the runner's heartbeat")
    code, report = health_json(state)
    assert (code, report["status"], report["reasons"]) == (0, "ok", [])


@pytest.mark.slow
def test_a_stopped_runner_goes_stale_and_health_degrades(state: Path, runners: Runners) -> None:
    proc = runners.start(state, env=FAST_BEAT)
    wait_for(lambda: alive(state), 30, what="the runner's heartbeat")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: health.check(Store(state))["status"] == "degraded", 10, what="a stale heartbeat")
        code, report = health_json(state)
        assert code == 1 and [r["state"] for r in report["runners"]] == ["stale"]
        assert "heartbeat is" in report["reasons"][0] and "hung, stopped" in report["reasons"][0]
    finally:
        os.kill(proc.pid, signal.SIGCONT)


@pytest.mark.slow
def test_a_killed_runner_leaves_health_down(state: Path, runners: Runners) -> None:
    proc = runners.start(state)
    wait_for(lambda: alive(state), 30, what="the runner's heartbeat")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    code, report = health_json(state)
    assert code == 2 and [r["state"] for r in report["runners"]] == ["dead"]
    why = f"no runner is alive in {state.resolve()}: start one with `python runner.py` (or `make run`)"
    assert report["reasons"] == [why]
