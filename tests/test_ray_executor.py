"""The Ray executor end to end: a local two-node Ray cluster (ray.cluster_utils.Cluster), real
``runner.py --executor ray --ray-address ...`` processes joining it, test engines on CPU actors;
checked through what a user sees (``show --json``, the export, the job's event log).

One cluster serves the module (starting one takes ~8 s on 2 cores); the node-kill test runs last
and adds a fresh node back. Without ray installed, the cluster tests skip, saying how to install it;
the tests that ocrjobs works, and says what to do, without ray always run.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.store import Store
from tests.conftest import PY, REPO, Runners, cli, cli_json, events, job, wait_for
from tests.test_runner import commits_per_index, committed, exported, pngs, status, submit, text

pytestmark = pytest.mark.slow
SIZE = "tests.engines:SizeEngine"
STORE_MB = 100 * 1024 * 1024
NODE_CPUS = 2  # room for a second actor, so one killed with its node can restart on the other


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    pytest.importorskip("ray", reason="ray is not installed: pip install -r requirements-ray.txt")
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": STORE_MB, "include_dashboard": False},
    )
    try:
        for _ in range(2):
            c.add_node(num_cpus=NODE_CPUS, object_store_memory=STORE_MB)
        yield c
    finally:
        c.shutdown()


def ray_runner(runners: Runners, state: Path, cluster: Any, *args: str) -> subprocess.Popen[bytes]:
    return runners.start(state, "--executor", "ray", "--ray-address", cluster.address, *args)


def finish(runners: Runners, proc: subprocess.Popen[bytes], timeout: float) -> str:
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"runner did not finish in {timeout} s:\n{runners.log(proc)}") from None
    assert rc == 0, runners.log(proc)
    return runners.log(proc)


def actor_nodes(log: str) -> dict[int, list[str]]:
    """Per worker slot, the nodes its actor was (re)started on, in order (from the runner's log)."""
    out: dict[int, list[str]] = {}
    for slot, node in re.findall(r"worker (\d+): Ray actor \w+ ready on node (\w+)", log):
        out.setdefault(int(slot), []).append(node)
    return out


def pids(calls: Path) -> list[str]:
    """The process id each recognised item ran in, in order (SizeEngine's ``log`` option)."""
    return [line.split()[0] for line in calls.read_text().splitlines()]


def test_a_60_item_job_runs_on_actors_on_both_nodes_each_item_committed_once(
    cluster: Any, state: Path, tmp_path: Path, runners: Runners
) -> None:
    calls = tmp_path / "calls.log"
    job_id = submit(
        state,
        pngs(tmp_path / "in", 60),
        "--engine",
        SIZE,
        "--engine-option",
        "delay=0.05",
        "--engine-option",
        f"log={calls}",
    )
    log = finish(runners, ray_runner(runners, state, cluster, "--once", "--ray-actors", "2"), 120)

    shown = job(state, job_id)
    assert shown["status"] == "succeeded", log
    assert (shown["progress"]["done"], shown["progress"]["committed"]) == (60, 60)
    assert commits_per_index(state, job_id) == Counter(range(60))
    assert [r["text"] for r in exported(state, job_id, tmp_path)] == [text(i) for i in range(60)]
    nodes = actor_nodes(log)
    assert sorted(nodes) == [0, 1] and nodes[0][0] != nodes[1][0], log  # spread over the two nodes
    assert len(set(pids(calls))) == 2  # both actors did items, each loading the engine once
    assert len(re.findall(r"loaded tests.engines:SizeEngine", log)) == 2, log


def test_a_hung_item_times_out_the_actor_is_restarted_and_the_job_completes(
    cluster: Any, state: Path, tmp_path: Path, runners: Runners
) -> None:
    from tests.engines import RED

    calls = tmp_path / "calls.log"
    files = pngs(tmp_path / "in", 8, {2: RED})
    job_id = submit(
        state, files, "--engine", "tests.engines:HangEngine", "--item-timeout", "2", "--engine-option", f"log={calls}"
    )
    proc = ray_runner(runners, state, cluster, "--once", "--ray-actors", "1")
    # while it runs, its heartbeat (what health and the dashboard read) shows the cluster
    hb = wait_for(lambda: next((h for h in Store(state).runners() if h.get("ray")), None), 60, what="a Ray heartbeat")
    assert hb["executor"] == "ray" and hb["ray"]["nodes_alive"] >= 2 and len(hb["ray"]["actors"]) == 1, hb["ray"]
    log = finish(runners, proc, 90)

    shown = job(state, job_id)
    assert shown["status"] == "completed_with_errors", log
    assert (shown["progress"]["done"], shown["progress"]["timed_out"]) == (7, 1)
    rows = exported(state, job_id, tmp_path)
    assert [r["status"] for r in rows] == ["done", "done", "timed_out", *["done"] * 5]
    assert rows[2]["error_kind"] == "timeout" and "item timeout" in rows[2]["error"]
    assert 2000 <= rows[2]["processing_time_ms"] <= 2000 + 5000  # within timeout + 5 s
    assert [rows[i]["text"] for i in (0, 1, 3, 4, 5, 6, 7)] == [text(i) for i in (0, 1, 3, 4, 5, 6, 7)]
    # one actor slot: the items after the hang ran in a new process, after Ray restarted the actor
    ran_in = pids(calls)
    assert len(ran_in) == 7 and ran_in[0] == ran_in[1] and ran_in[2] != ran_in[0], ran_in
    assert len(actor_nodes(log)[0]) == 2, log


def test_killing_a_node_mid_job_loses_no_item_and_commits_none_twice(
    cluster: Any, state: Path, tmp_path: Path, runners: Runners
) -> None:
    job_id = submit(state, pngs(tmp_path / "in", 60), "--engine", SIZE, "--engine-option", "delay=0.1")
    proc = ray_runner(runners, state, cluster, "--ray-actors", "2")
    wait_for(lambda: committed(state, job_id) >= 10, 60, what="10 committed items")
    nodes = actor_nodes(runners.log(proc))
    victim = next(n for n in cluster.worker_nodes if n.node_id.startswith(nodes[0][0]))
    cluster.remove_node(victim, allow_graceful=False)
    killed_at = time.monotonic()
    try:
        wait_for(lambda: status(state, job_id) == "succeeded", 90, what="the job to succeed")
        took = time.monotonic() - killed_at

        shown = job(state, job_id)
        assert (shown["progress"]["done"], shown["progress"]["committed"]) == (60, 60)
        assert commits_per_index(state, job_id) == Counter(range(60))
        assert [r["text"] for r in exported(state, job_id, tmp_path)] == [text(i) for i in range(60)]
        crashes = [e for e in events(state, job_id) if e["event"] in ("worker_crash", "batch_crash")]
        assert crashes and all("Ray actor" in e["why"] for e in crashes), crashes
        assert took < 60, took
    finally:
        cluster.add_node(num_cpus=NODE_CPUS, object_store_memory=STORE_MB)  # for whatever runs next


def test_ray_cluster_info_reports_nodes_actors_and_gpu_per_node(cluster: Any) -> None:
    import ray

    from jobs.errors import OcrJobsError
    from jobs.ray.cluster import make_ray_handles, ray_cluster_info

    def started(handles: list[Any]) -> dict[str, Any]:
        try:
            wait_for(lambda: all(h.messages() is not None and h.can_take() for h in handles), 60, what="actors up")
            return ray_cluster_info(handles)
        finally:
            for h in handles:
                h.stop()

    ray.init(address=cluster.address, logging_level="WARNING")
    gpu_node = None
    try:
        with pytest.raises(OcrJobsError, match=r"need 20 CPUs, but the cluster has \d+; use fewer --ray-actors"):
            make_ray_handles(actors=10, actor_cpus=2)
        info = started(make_ray_handles(actors=2))
        # a node that declares a GPU: by default the runner starts one GPU actor per GPU, placed there
        gpu_node = cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=STORE_MB)
        wait_for(lambda: ray.cluster_resources().get("GPU"), 30, what="the GPU node")
        with pytest.raises(OcrJobsError, match="2 Ray actor.s. need a GPU each, but the cluster has 1"):
            make_ray_handles(actors=2)
        gpu_info = started(make_ray_handles())
    finally:
        ray.shutdown()
        if gpu_node is not None:
            cluster.remove_node(gpu_node)
    assert info["actors_alive"] == 2 and info["nodes_alive"] >= 3, info
    assert {a["node_id"] for a in info["actors"]} <= {n["node_id"] for n in info["nodes"] if n["alive"]}
    assert all(a["pid"] > 0 and a["rss_bytes"] > 0 for a in info["actors"]), info
    for gpu in info["gpu_by_node"].values():  # no GPU here: each node says why, it does not fail
        assert gpu["available"] is False and gpu["reason"], gpu
    assert json.loads(json.dumps(info)) == info  # fit for a heartbeat file
    assert [a["node_id"] for a in gpu_info["actors"]] == [gpu_node.node_id], gpu_info


def test_runner_without_ray_says_how_to_install_it(state: Path, tmp_path: Path) -> None:
    fake = tmp_path / "site" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError('No module named ray', name='ray')\n")
    proc = subprocess.run(
        [PY, "runner.py", "--state", str(state), "--once", "--executor", "ray"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**_env(), "PYTHONPATH": str(fake.parent)},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install -r requirements-ray.txt" in lines[0], proc.stderr


def test_ocrjobs_imports_and_runs_locally_without_ray(state: Path, tmp_path: Path, runners: Runners) -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"  # any `import ray` now fails
        "import jobs.runner.supervisor, jobs.ray.executor, jobs.ray.cluster, jobs.ray.actor, jobs.cli\n"
        "print('ok')"
    )
    out = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
    job_id = submit(state, pngs(tmp_path / "in", 2), "--engine", SIZE)
    finish(runners, runners.start(state, "--once", "--executor", "local", "--workers", "1"), 60)
    assert cli_json(state, "show", job_id)["status"] == "succeeded"
    assert cli(state, "list").returncode == 0


def test_runner_fails_fast_when_no_ray_cluster_answers_at_the_address(state: Path) -> None:
    pytest.importorskip("ray", reason="ray is not installed: pip install -r requirements-ray.txt")
    t0 = time.monotonic()
    proc = subprocess.run(
        [PY, "runner.py", "--state", str(state), "--once", "--executor", "ray", "--ray-address", "127.0.0.1:1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and time.monotonic() - t0 < 20, proc.stderr  # ray.init alone retries for minutes
    assert "error: no Ray cluster answers at 127.0.0.1:1" in proc.stderr and "ray start --head" in proc.stderr


def test_ray_bench_quick_compares_ray_with_the_local_executor() -> None:
    pytest.importorskip("ray", reason="ray is not installed: pip install -r requirements-ray.txt")
    proc = subprocess.run(
        [PY, "-m", "bench.ray_bench", "--quick"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "## Ray executor (quick)" in out and "| measure | ocrjobs | reference | ratio | goal | met? |" in out, out
    for row in (
        "| 1 actor vs 1 local worker: items/s |",
        "| 2 actors vs 2 local workers: items/s |",
        "| Ray, 2 actors vs 1: items/s |",
    ):
        line = next(x for x in out.splitlines() if x.startswith(row))
        rate, ref = (float(c) for c in line.split(" | ")[1:3])
        assert rate > 0 and ref > 0, line  # both sides ran the job to the end


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
