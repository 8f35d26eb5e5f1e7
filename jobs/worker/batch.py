"""One task, one batch: decode its items, recognise them together, make one result per item.

A bad input fails its own item only (kind ``input``, never retried). The engine sees the good
images in one ``recognize`` call; an exception from that call is retried with exponential backoff
and jitter (tenacity) and then fails the batch's items, while an ``Exception`` returned in one
slot fails that item alone (e.g. out of GPU memory at batch size 1).

An engine that is broken rather than unlucky (:class:`BrokenEngine`: its first call since it loaded
raised an error that says the code, not the image, is wrong, or any call answered with the wrong number
of results) fails its whole job with one message: charging each item with it would fail, or with a
crash set aside as poison, every item of the job one by one.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs.errors import InputError
from jobs.store.status import ErrorKind, ItemStatus

log = logging.getLogger(__name__)
#: Errors that say the engine's code is wrong (a missing method, a bad signature, a stub), not the image.
BROKEN_KINDS: tuple[type[BaseException], ...] = (AttributeError, TypeError, NotImplementedError, NameError, ImportError)


class BrokenEngine(Exception):
    """The engine cannot do any item of this job; the message names the engine and its error."""


class _WrongCount(RuntimeError):
    pass


def item_jobs(task: dict[str, Any]) -> list[tuple[str | None, Path]]:
    """(job id, job folder) of each item, in order. A shared batch (jobs/runner/fairshare.py) says which
    job each run of items belongs to in ``parts``, written by the runner; an item's own keys come from
    a manifest in the shared folder and are never trusted to say which job folder to read from."""
    parts = task.get("parts")
    if not parts:
        return [(None, Path(task.get("job_dir", ".")))] * len(task["items"])
    out = [(str(p["job_id"]), Path(p["job_dir"])) for p in parts for _ in range(int(p["count"]))]
    if len(out) != len(task["items"]):
        raise ValueError(f"task {task.get('task_id')}: its parts count {len(out)} items, it has {len(task['items'])}")
    return out


def decode_task(task: dict[str, Any]) -> list[Any]:
    """Each item's image, or the exception that kept it from being read (kept, not raised)."""
    from jobs.intake.decode import load_item
    from jobs.intake.textlayer import text_layer_result

    out: list[Any] = []
    for item, (_, job_dir) in zip(task["items"], item_jobs(task), strict=True):
        try:  # a PDF page whose text layer covers it is read from it: a finished result, no image
            done = text_layer_result(job_dir, item, task["dpi"], task.get("pdf_text", "auto"))
            out.append(done if done is not None else load_item(job_dir, item, task["dpi"]))
        except Exception as e:  # noqa: BLE001 - a decode failure is that item's result
            out.append(e)
    return out


def _failed(base: dict[str, Any], kind: ErrorKind, message: str, attempts: int, ms: float) -> dict[str, Any]:
    return {
        **base,
        "status": ItemStatus.FAILED.value,
        "text": "",
        "confidence": None,
        "attempts": attempts,
        "error": {"kind": kind.value, "message": message},
        "processing_time_ms": round(ms, 1),
    }


def recognize_task(
    engine: Any,
    task: dict[str, Any],
    images: list[Any],
    on_attempt: Callable[[int], None],
    stop_check: Callable[[], bool],
    device: str = "cpu",
    proven: bool = True,
) -> list[dict[str, Any]]:
    """One result per item of ``task``, in order. ``device``: the engine's, for engines that do not say
    (``engine.device`` is optional). ``proven``: the engine already recognised something since it loaded;
    until it has, an error of :data:`BROKEN_KINDS` raises :class:`BrokenEngine` (as a wrong result count
    always does) instead of failing the items."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

    from jobs.engines.registry import normalize

    t0 = time.monotonic()
    items = task["items"]
    bases = [
        {
            "index": it["index"],
            "source": it["source"],
            "page": it.get("page"),
            "device": str(getattr(engine, "device", device)),
            **({"job_id": job_id} if job_id is not None else {}),  # a shared batch: whose item it is
        }
        for it, (job_id, _) in zip(items, item_jobs(task), strict=True)
    ]
    results: list[dict[str, Any] | None] = [None] * len(items)
    good = []
    for n, image in enumerate(images):
        if isinstance(image, InputError):
            results[n] = _failed(bases[n], ErrorKind.INPUT, str(image), 0, 0.0)
        elif isinstance(image, dict):  # read from the PDF's text layer (decode_task): the engine never sees it
            results[n] = {**bases[n], "device": "cpu", **image, "status": ItemStatus.DONE.value, "error": None}
            results[n].update(attempts=0, batch_size=1)
        elif isinstance(image, BaseException):
            results[n] = _failed(bases[n], ErrorKind.INPUT, f"{type(image).__name__}: {image}", 0, 0.0)
        else:
            good.append(n)
    attempts = 0
    out: list[Any] = []
    error: BaseException | None = None
    if good:
        retrying = Retrying(
            stop=stop_after_attempt(task["retries"] + 1),
            wait=wait_exponential_jitter(multiplier=task.get("backoff_s", 0.5), max=8),
            retry=retry_if_exception(
                lambda e: (
                    not isinstance(e, (InputError, _WrongCount))
                    and not (not proven and isinstance(e, BROKEN_KINDS))
                    and not stop_check()
                )
            ),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    on_attempt(attempts)
                    out = engine.recognize([images[n] for n in good])
                    if len(out) != len(good):
                        raise _WrongCount(f"recognize() returned {len(out)} results for {len(good)} images")
        except _WrongCount as e:
            raise BrokenEngine(_broken(task, e)) from e
        except BROKEN_KINDS as e:
            if not proven:
                raise BrokenEngine(_broken(task, e)) from e
            log.warning("items %s failed: %s", [items[n]["index"] for n in good], traceback.format_exc(limit=3))
            error = e
        except Exception as e:  # noqa: BLE001 - an engine error fails this batch's items only
            log.warning("items %s failed: %s", [items[n]["index"] for n in good], traceback.format_exc(limit=3))
            error = e
    ms = (time.monotonic() - t0) * 1000
    share = ms / max(len(good), 1)  # what one item cost, for per-item rates and charts
    for k, n in enumerate(good):
        rec = error if error is not None else out[k]
        if isinstance(rec, BaseException):
            kind = ErrorKind.INPUT if isinstance(rec, InputError) else ErrorKind.ENGINE
            results[n] = _failed(bases[n], kind, f"{type(rec).__name__}: {rec}", attempts, share)
            continue
        try:
            rec = normalize(rec)
        except TypeError as e:
            results[n] = _failed(bases[n], ErrorKind.ENGINE, str(e), attempts, share)
            continue
        results[n] = {
            "batch_size": len(good),  # unless the engine says what it really ran (it may split a batch)
            **rec,
            **bases[n],
            "method": "ocr",
            "status": ItemStatus.DONE.value,
            "error": None,
            "attempts": attempts,
            "processing_time_ms": round(share, 1),
        }
    return [r for r in results if r is not None]


def _broken(task: dict[str, Any], e: BaseException) -> str:
    what = e if isinstance(e, _WrongCount) else f"recognize() raised {type(e).__name__}: {e}"
    return (
        f"engine {task['engine']!r} is broken: {what}; the job was failed without charging its items "
        "(fix the engine, then `retry` the job)"
    )
