"""GPU memory for the transformers engine: the gate before each batch, OOM detection, and stats.

Another process (or a leak) can eat the GPU between batches; starting a batch then only ends
in an OOM or a thrashing driver. The gate waits (with backoff) for memory to come back and,
if it does not, fails that batch's items with a message saying how much was missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024

#: A probe answers (free_bytes, total_bytes) for a CUDA device, or None when it cannot tell.
Probe = Callable[[str], "tuple[int, int] | None"]


def device_index(device: str) -> int:
    _, _, idx = device.partition(":")
    return int(idx) if idx.isdigit() else 0


def default_probe(device: str) -> tuple[int, int] | None:
    """The device's free/total memory: NVML (jobs/ops/gpu.py) sees other processes' use; torch as a fallback."""
    from jobs.ops.gpu import gpu_stats

    idx = device_index(device)
    stats = gpu_stats()
    for gpu in stats.get("gpus", []):
        if gpu.get("index") == idx:
            return int(gpu["memory_free_bytes"]), int(gpu["memory_total_bytes"])
    try:
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info(idx)
            return int(free), int(total)
    except Exception:  # noqa: BLE001 - no answer just means "cannot gate"
        pass
    return None


def empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    """A CUDA out-of-memory, whichever way this torch version reports it."""
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)


def torch_memory(device: str) -> dict[str, float] | None:
    """This process's allocated/reserved MiB on ``device`` (None off GPU)."""
    if not device.startswith("cuda"):
        return None
    import torch

    idx = device_index(device)
    return {
        "allocated_mib": round(torch.cuda.memory_allocated(idx) / MIB, 1),
        "reserved_mib": round(torch.cuda.memory_reserved(idx) / MIB, 1),
        "peak_mib": round(torch.cuda.max_memory_allocated(idx) / MIB, 1),
    }


def reset_peak(device: str) -> None:
    """Start measuring a batch's peak allocation afresh (what auto batch sizing grows by)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device_index(device))


@dataclass
class MemoryGate:
    """Lets a batch start only when the GPU has ``min_free_mib`` free and is under ``max_used_frac`` used."""

    probe: Probe = default_probe
    min_free_mib: float = 500.0
    max_used_frac: float = 0.95
    max_wait_s: float = 30.0
    first_wait_s: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    stop: Callable[[], bool] = field(default=lambda: False)
    waits: int = 0  # how many times a batch had to wait (reported, and seen by tests)

    def shortfall(self, device: str) -> str | None:
        """Why a batch must not start now, or None."""
        answer = self.probe(device)
        if answer is None:
            return None  # no probe answer: let the batch try; OOM recovery still guards it
        free, total = answer
        free_mib = free / MIB
        if free_mib < self.min_free_mib:
            return f"GPU memory insufficient: {free_mib:.0f} MiB free < {self.min_free_mib:.0f} MiB required"
        used = 1 - free / total if total else 0.0
        if used > self.max_used_frac:
            return (
                f"GPU memory insufficient: {used:.0%} of {total / MIB:.0f} MiB in use "
                f"> {self.max_used_frac:.0%} allowed"
            )
        return None

    def wait(self, device: str) -> str | None:
        """Empty the cache and wait with backoff until memory is there; the reason if it never came."""
        reason = self.shortfall(device)
        if reason is None:
            return None
        waited, delay = 0.0, self.first_wait_s
        while reason is not None:
            empty_cache()
            remaining = self.max_wait_s - waited  # counted in sleeps, so a test's fake sleep needs no clock
            if remaining <= 0 or self.stop():
                return f"{reason} (waited {waited:.0f} s)"
            self.waits += 1
            step = min(delay, remaining)
            self.sleep(step)
            waited += step
            delay = min(delay * 2, 8.0)
            reason = self.shortfall(device)
        return None


def options_gate(options: dict[str, Any], stop: Callable[[], bool], probe: Probe | None = None) -> MemoryGate:
    return MemoryGate(
        probe=probe or default_probe,
        min_free_mib=float(options.get("min_free_mib", 500)),
        max_used_frac=float(options.get("max_used_frac", 0.95)),
        max_wait_s=float(options.get("memory_wait_s", 30)),
        stop=stop,
    )
