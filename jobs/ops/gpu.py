"""GPU memory and utilisation through NVML (nvidia-ml-py), for heartbeats, health and metrics.

Never raises: a machine without a GPU, driver or library gets ``{"available": False, "reason": ...}``,
so a heartbeat or a health check can always include it. NVML is initialised once per process.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_nvml: Any = None  # pynvml once initialised
_unavailable: str | None = None  # or why it could not be


def _init(nvml: Any | None) -> tuple[Any, str | None]:
    """The NVML module to query (``nvml`` if given: tests pass a fake), or why there is none."""
    global _nvml, _unavailable
    if nvml is not None:
        try:
            nvml.nvmlInit()
        except Exception as e:  # noqa: BLE001 - any NVML failure just means "no GPU stats"
            return None, f"NVML could not start: {e}"
        return nvml, None
    with _lock:
        if _nvml is None and _unavailable is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml = pynvml
            except Exception as e:  # noqa: BLE001 - ImportError, NVMLError_LibraryNotFound, driver errors...
                _unavailable = f"no GPU: NVML is not available ({type(e).__name__}: {e})".replace(": )", ")")
        return _nvml, _unavailable


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def gpu_stats(nvml: Any | None = None) -> dict[str, Any]:
    """Memory (bytes) and utilisation (%) of every GPU NVML sees; ``available`` False if none."""
    lib, reason = _init(nvml)
    if lib is None:
        return {"available": False, "reason": reason, "gpus": []}
    devices = []
    try:
        for i in range(lib.nvmlDeviceGetCount()):
            handle = lib.nvmlDeviceGetHandleByIndex(i)
            mem = lib.nvmlDeviceGetMemoryInfo(handle)
            try:
                util: float | None = float(lib.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:  # noqa: BLE001 - some GPUs (MIG slices) do not report utilisation
                util = None
            devices.append(
                {
                    "index": i,
                    "name": _text(lib.nvmlDeviceGetName(handle)),
                    "memory_used_bytes": int(mem.used),
                    "memory_total_bytes": int(mem.total),
                    "memory_free_bytes": int(mem.free),
                    "utilization_percent": util,
                }
            )
    except Exception as e:  # noqa: BLE001 - a driver hiccup must not break a heartbeat
        return {"available": False, "reason": f"NVML query failed: {e}", "gpus": []}
    if not devices:
        return {"available": False, "reason": "no GPU: NVML found no devices", "gpus": []}
    return {"available": True, "reason": None, "gpus": devices}
