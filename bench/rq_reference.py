"""The reference side of bench/store_scale.py: RQ on a private local ``redis-server``.

Started on 127.0.0.1 on a free port with a temp dir, once volatile and once with
``--appendonly yes --appendfsync always`` (the durable comparison), and stopped after.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import timed


def noop() -> None:
    """The RQ side's job: nothing (RQ stores a reference to it, never calls it here)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(tmp: Path, durable: bool) -> Iterator[int]:
    """A private redis-server on a free port and a temp dir; stopped (and waited for) on exit."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (`make system-deps` installs it)")
    import redis

    port, d = _free_port(), tmp / ("redis-aof" if durable else "redis-mem")
    d.mkdir(parents=True, exist_ok=True)
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--save", "", "--daemonize", "no"]
    args += ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(host="127.0.0.1", port=port).ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Rq:
    """The RQ side on one redis-server: N no-op jobs enqueued, then dequeued and given a result."""

    def __init__(self, tmp: Path, n: int, durable: bool, stack: contextlib.ExitStack) -> None:
        from redis import Redis
        from rq import Queue

        port = stack.enter_context(redis_server(tmp, durable))
        self.conn = Redis(host="127.0.0.1", port=port)
        self.q, self.empty = Queue("bench", connection=self.conn), Queue("empty", connection=self.conn)
        t = time.perf_counter()
        self.ids = [self.q.enqueue("bench.rq_reference.noop").id for _ in range(n)]
        self.submit_rate = n / (time.perf_counter() - t)
        self.dequeued: list[Any] = []
        self.commits: list[float] = []
        self.dequeues: list[float] = []
        self.done = 0

    def commit_chunk(self, k: int) -> None:
        from rq.job import Job
        from rq.results import Result

        for job in Job.fetch_many(self.ids[self.done : self.done + k], connection=self.conn):
            t = time.perf_counter()
            Result.create(job, Result.Type.SUCCESSFUL, ttl=600, return_value=None)
            self.commits.append(time.perf_counter() - t)
        self.done += k

    def claim_chunk(self, k: int) -> None:
        from rq import Queue

        for _ in range(k):
            t = time.perf_counter()
            got = Queue.dequeue_any([self.q], None, connection=self.conn)
            self.dequeues.append(time.perf_counter() - t)
            assert got is not None

    def rest(self) -> dict[str, Any]:
        from rq import Queue
        from rq.job import Job

        return {
            "submit_rate": self.submit_rate,
            "dequeue": self.dequeues,
            "commit": self.commits,
            "list": timed(lambda: Job.fetch_many(self.ids, connection=self.conn), 5),
            "idle": timed(lambda: Queue.dequeue_any([self.empty], None, connection=self.conn), 200),
        }
