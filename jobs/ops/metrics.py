"""Prometheus metrics served by the runner (``--metrics-port``; off by default, 127.0.0.1 when on).

Counters and the item-duration histogram are this runner's own. The gauges describe the whole job
folder through the one health model (:func:`jobs.ops.health.check`), computed at scrape time, so
several runners sharing a folder export the same values: aggregate them with ``max``, not ``sum``
(see ops/prometheus-rules.yml). GPU gauges are this runner's host, from its last heartbeat.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobs.errors import OcrJobsError
from jobs.store.store import Store

STATUSES = ("done", "failed", "timed_out")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
HEALTH_VALUES = {"ok": 0, "degraded": 1, "down": 2}


class StoreCollector(Collector):
    """Scrape-time gauges from the job folder and the runner's latest heartbeat."""

    def __init__(self, root: Path, latest: Callable[[], dict[str, Any]]) -> None:
        self.root, self.latest = root, latest
        self._store: Store | None = None
        self._lock = threading.Lock()  # scrapes run in server threads; a Store's cache is not thread-safe

    def collect(self) -> Iterator[Metric]:
        from jobs.ops.health import check

        with self._lock:
            self._store = self._store or Store(self.root)
            report = check(self._store)

        health = GaugeMetricFamily("ocrjobs_health_status", "Health of the job folder: 0 ok, 1 degraded, 2 down")
        health.add_metric([], HEALTH_VALUES[report["status"]])
        yield health
        jobs = GaugeMetricFamily("ocrjobs_jobs", "Jobs in the folder by status", labels=["status"])
        for status, n in report["jobs"].items():
            jobs.add_metric([status], n)
        yield jobs
        yield GaugeMetricFamily(
            "ocrjobs_backlog_items", "Items not yet committed in queued and running jobs", value=report["backlog_items"]
        )
        stuck = GaugeMetricFamily("ocrjobs_stuck_jobs", "Running jobs diagnosed as stuck", labels=["diagnosis"])
        for verdict in ("stalled", "orphaned"):
            stuck.add_metric([verdict], sum(1 for s in report["stuck_jobs"] if s["diagnosis"] == verdict))
        yield stuck
        running_s = GaugeMetricFamily(
            "ocrjobs_job_running_seconds", "Seconds since a running job was last claimed", labels=["job_id"]
        )
        for job in report["running_jobs"]:
            running_s.add_metric([job["job_id"]], job["running_s"])
        yield running_s
        yield from self._runners(report)
        disk = report["disk"]
        yield GaugeMetricFamily(
            "ocrjobs_disk_free_ratio", "Free fraction of the job folder's disk", value=disk["free_percent"] / 100
        )
        yield from self._gpu()

    def _runners(self, report: dict[str, Any]) -> Iterator[Metric]:
        states = GaugeMetricFamily("ocrjobs_runners", "Runners by heartbeat state", labels=["state"])
        for state in ("alive", "stale", "dead"):
            states.add_metric([state], sum(1 for r in report["runners"] if r["state"] == state))
        yield states
        age = GaugeMetricFamily(
            "ocrjobs_runner_heartbeat_age_seconds",
            "Seconds since each runner that is not dead last wrote its heartbeat",
            labels=["runner", "host"],
        )
        for r in report["runners"]:
            if r["state"] != "dead":
                age.add_metric([r["id"], str(r.get("host"))], r["age_s"])
        yield age

    def _gpu(self) -> Iterator[Metric]:
        gpus = (self.latest().get("gpu") or {}).get("gpus") or []
        labels = ["gpu", "name"]
        used = GaugeMetricFamily("ocrjobs_gpu_memory_used_bytes", "GPU memory in use", labels=labels)
        total = GaugeMetricFamily("ocrjobs_gpu_memory_total_bytes", "GPU memory in all", labels=labels)
        util = GaugeMetricFamily("ocrjobs_gpu_utilization_ratio", "GPU busy fraction (last sample)", labels=labels)
        for g in gpus:
            key = [str(g["index"]), str(g["name"])]
            used.add_metric(key, g["memory_used_bytes"])
            total.add_metric(key, g["memory_total_bytes"])
            if g.get("utilization_percent") is not None:
                util.add_metric(key, g["utilization_percent"] / 100)
        yield from (used, total, util)


class RunnerMetrics:
    """The runner's registry: item counters, the duration histogram, the scrape-time gauges, process stats."""

    def __init__(self, root: Path, latest: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self.items = Counter(
            "ocrjobs_items_processed", "Items this runner committed, by result", ["status"], registry=self.registry
        )
        for status in STATUSES:
            self.items.labels(status)  # present at 0, so rate() ratios exist before the first failure
        self.duration = Histogram(
            "ocrjobs_item_duration_seconds",
            "Seconds a worker spent on one item (decode + recognise, retries included)",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StoreCollector(root, latest))
        ProcessCollector(registry=self.registry)
        self.endpoint: dict[str, Any] | None = None
        self._server: Any = None

    def observe(self, status: str, duration_s: float | None) -> None:
        self.items.labels(status).inc()
        if duration_s is not None:
            self.duration.observe(duration_s)

    def serve(self, host: str, port: int) -> None:
        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise OcrJobsError(
                f"cannot serve metrics on {host}:{port}: {e.strerror or e}; "
                "choose another --metrics-port, or leave it out to turn metrics off"
            ) from None
        self.endpoint = {"host": host, "port": self._server.server_port, "path": "/metrics"}

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
