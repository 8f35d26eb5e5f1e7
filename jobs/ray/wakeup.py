"""A Ray handle's ``conn``: a pipe the supervisor's ``multiprocessing.connection.wait`` can select on.

The supervisor sleeps on its workers' pipes between ticks and wakes the moment one has something.
An actor's answers arrive as ObjectRefs, which cannot be selected on, so a watcher thread blocks in
``ray.wait`` on the handle's outstanding poll and writes a byte when it is answered: a result is
acted on within milliseconds, not at the next 0.1 s tick (an engine that does nothing: ~100 ms a task
without it, ~7 ms with it and one-round-trip polls; a local worker takes ~1.5 ms).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any


class Wakeup:
    def __init__(self, ray: Any) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self.closed = False
        self._ray = ray
        self._cv = threading.Condition()
        self._ref: Any = None
        threading.Thread(target=self._watch, daemon=True, name="ray-wakeup").start()

    def fileno(self) -> int:
        return self._r

    def watch(self, ref: Any) -> None:
        """The handle's new outstanding poll (or None): ring when it is answered."""
        with self._cv:
            self._ref = ref
            self._cv.notify()

    def drain(self) -> None:
        """Called by the handle's ``messages()``: the supervisor is awake, the byte has done its job."""
        try:
            while os.read(self._r, 512):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        with self._cv:
            if self.closed:
                return
            self.closed = True
            self._cv.notify()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _watch(self) -> None:
        rung = None
        while True:
            with self._cv:
                self._cv.wait_for(lambda r=rung: self.closed or (self._ref is not None and self._ref is not r), 1.0)
                if self.closed:
                    return
                ref = self._ref
            if ref is None or ref is rung:
                continue
            try:
                ready, _ = self._ray.wait([ref], timeout=0.25)
            except Exception:  # noqa: BLE001 - Ray shutting down, or a ref gone: the handle finds out itself
                time.sleep(0.05)
                continue
            if ready:
                rung = ref
                try:
                    os.write(self._w, b"\0")
                except OSError:
                    return
