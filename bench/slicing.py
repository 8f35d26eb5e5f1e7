"""Side-by-side timing on a shared, noisy machine: two sides take turns in short time slices.

Running side A, then side B, lets a burst of other work (another test suite, a build) land on
one side only; onnxruntime's spinning intra-op threads turn such a burst into a 2-5x slowdown,
far more than the few percent a comparison wants to see. Here each side's processes run in their
own process group and the sides alternate every ``slice_s`` seconds (SIGCONT one group, SIGSTOP
the other), so both see the same machine; each side's time is the sum of its slices. CPU seconds
come from ``wait4`` of each command (its waited-for children, a runner's workers, included).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import REPO


@dataclass
class Side:
    """Commands run one after the other; ``seconds`` and ``cpu`` add up over them."""

    name: str
    commands: list[list[str]]
    log_dir: Path
    seconds: float = 0.0
    cpu: float = 0.0
    outputs: list[Path] = field(default_factory=list)  # each command's stdout + stderr
    proc: subprocess.Popen[bytes] | None = None

    @property
    def done(self) -> bool:
        return self.proc is None and not self.commands

    def start(self) -> None:
        out = self.log_dir / f"{self.name}-{len(self.outputs)}.log"
        self.outputs.append(out)
        with open(out, "wb") as f:
            self.proc = subprocess.Popen(
                self.commands.pop(0), cwd=REPO, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
            )

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def reap(self) -> bool:
        """True once the running command has exited (its CPU counted); raises if it failed."""
        assert self.proc is not None
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if not pid:
            return False
        self.cpu += usage.ru_utime + usage.ru_stime
        self.proc.returncode = rc = os.waitstatus_to_exitcode(status)
        self.proc = None
        if rc != 0:
            raise RuntimeError(f"{self.name}: a command exited {rc}:\n{self.outputs[-1].read_text(errors='replace')}")
        return True

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
            self.proc = None


def run_sliced(sides: list[Side], slice_s: float = 1.0, timeout: float = 3600) -> None:
    """Run every side to completion, taking turns of ``slice_s``; a side left alone runs straight on."""
    deadline = time.monotonic() + timeout
    try:
        while not all(s.done for s in sides):
            for side in sides:
                if side.done:
                    continue
                alone = sum(not s.done for s in sides) == 1
                t0 = time.monotonic()
                if side.proc is None:
                    side.start()
                else:
                    side.signal(signal.SIGCONT)
                end = t0 + slice_s
                while not side.reap():
                    now = time.monotonic()
                    if now > deadline:
                        raise TimeoutError(f"{side.name} did not finish in {timeout:.0f} s")
                    if not alone and now >= end:
                        side.signal(signal.SIGSTOP)
                        break
                    time.sleep(0.002)
                side.seconds += time.monotonic() - t0
    finally:
        for side in sides:
            side.kill()
