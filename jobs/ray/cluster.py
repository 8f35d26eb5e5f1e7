"""Starting the runner's Ray actors, and what the heartbeat and health say about the Ray cluster.

Deploying: every node runs the same checkout of ocrjobs in the same Python environment (Ray needs the
same Python and packages everywhere; engines such as ``package.module:Class`` must import on every
node), ``ray start --head`` on one machine and ``ray start --address HEAD:6379`` on the others
(``--num-gpus``/``--num-cpus`` as they have). Then, on the head, with the job folder on its local
disk: ``python runner.py --executor ray --ray-address HEAD:6379`` (one actor per GPU; on CPU-only
clusters ``--ray-actors N --ray-actor-cpus C``). Only the head reads and writes the job folder.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from jobs.errors import OcrJobsError
from jobs.ray.executor import MAX_RESTARTS, ActorSpec, RayWorkerHandle, require_ray

_INFO_EVERY_S = 5.0
_info_cache: dict[str, Any] = {"at": float("-inf"), "nodes": []}


def connect(address: str | None = None) -> Any:
    """Join the cluster at ``address`` (None: $RAY_ADDRESS, else a new single-machine Ray)."""
    ray = require_ray()
    if not ray.is_initialized():
        if address:
            _check_reachable(address)
        extra = {} if address else {"include_dashboard": False}
        try:
            ray.init(address=address, namespace="ocrjobs", logging_level=logging.WARNING, **extra)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise OcrJobsError(f"could not join the Ray cluster at {address or 'this machine'}: {e}") from None
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes (ray.init retries a dead address for long), if nothing listens."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in host:
        return  # "auto", ray://...: ray.init's to judge
    try:
        socket.create_connection((host, int(port)), timeout_s).close()
    except OSError as e:
        raise OcrJobsError(
            f"no Ray cluster answers at {address} ({e.strerror or e}); start one there with "
            "`ray start --head`, or fix --ray-address"
        ) from None


def make_ray_handles(
    address: str | None = None,
    actors: int | None = None,
    device: str = "auto",
    actor_cpus: float = 1.0,
    max_restarts: int = MAX_RESTARTS,
) -> list[RayWorkerHandle]:
    """Join the cluster and start the actors: one per GPU if the cluster has GPUs (and ``device`` is
    not "cpu"), else ``actors`` CPU actors (default one per node), each reserving ``actor_cpus``."""
    ray = connect(address)
    total = ray.cluster_resources()
    gpus = int(total.get("GPU", 0)) if device != "cpu" else 0
    if device == "cuda" and gpus == 0:
        raise OcrJobsError("--device cuda, but the Ray cluster has no GPU; use --device cpu or auto")
    if actor_cpus <= 0:
        raise OcrJobsError("--ray-actor-cpus must be above 0")
    base = {"max_restarts": max_restarts, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
    if gpus:
        count = actors or gpus
        if count > gpus:
            raise OcrJobsError(
                f"{count} Ray actor(s) need a GPU each, but the cluster has {gpus}; use fewer --ray-actors, "
                "or --device cpu for CPU actors"
            )
        spec = ActorSpec("cuda", {**base, "num_gpus": 1, "num_cpus": actor_cpus}, threads=max(int(actor_cpus), 1))
    else:
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= actor_cpus]
        count = actors or max(len(nodes), 1)
        spec = ActorSpec("cpu", {**base, "num_cpus": actor_cpus}, threads=max(int(actor_cpus), 1))
        if count * actor_cpus > total.get("CPU", 0):
            raise OcrJobsError(
                f"{count} Ray actor(s) x {actor_cpus:g} CPU need {count * actor_cpus:g} CPUs, but the cluster "
                f"has {total.get('CPU', 0):g}; use fewer --ray-actors or a smaller --ray-actor-cpus"
            )
    return [RayWorkerHandle(i, spec) for i in range(count)]


def ray_cluster_info(handles: list[Any]) -> dict[str, Any]:
    """Nodes (alive or not), actors and their nodes' GPU figures, for the heartbeat and health.
    Cheap: the node list is re-read at most every few seconds, actor figures come with their polls."""
    import ray

    now = time.monotonic()
    if now - _info_cache["at"] >= _INFO_EVERY_S:
        _info_cache["at"] = now
        _info_cache["nodes"] = [
            {
                "node_id": n.get("NodeID"),
                "alive": bool(n.get("Alive")),
                "host": n.get("NodeManagerHostname"),
                "address": n.get("NodeManagerAddress"),
                "cpus": n.get("Resources", {}).get("CPU", 0),
                "gpus": n.get("Resources", {}).get("GPU", 0),
            }
            for n in ray.nodes()
        ]
    actors, gpu_by_node = [], {}
    for h in handles:
        info = getattr(h, "info", {}) or {}
        ready = bool(getattr(h, "_ready", False))
        actors.append(
            {
                "slot": h.slot,
                "actor_id": h.actor_id,
                "node_id": info.get("node_id"),
                "host": info.get("host"),
                "pid": h.pid,
                "alive": h.alive() and ready,
                "engine": h.engine_name,
                "device": h.engine_device,
                "cpu_percent": info.get("cpu_percent"),
                "rss_bytes": info.get("rss_bytes"),
                "death": h.death,
            }
        )
        if info.get("node_id") and info.get("gpu") is not None:
            gpu_by_node[info["node_id"]] = info["gpu"]
    nodes = _info_cache["nodes"]
    return {
        "nodes": nodes,
        "nodes_alive": sum(1 for n in nodes if n["alive"]),
        "actors": actors,
        "actors_alive": sum(1 for a in actors if a["alive"]),
        "gpu_by_node": gpu_by_node,
    }
