"""The ``transformers`` engine: OCR with a Hugging Face model, batched, on GPU when there is one.

The runner sends up to ``max_batch`` images per call; the engine runs them in sub-batches sized
to what the GPU can hold: an out-of-memory halves the sub-batch and retries (at one image, only
that image fails), a memory gate holds a batch back while another process hogs the GPU, and
generation is bounded (``max_new_tokens``, ``max_time``, the runner's soft stop) so a runaway
decode ends by itself before the runner has to kill the worker.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from PIL import Image

from jobs.engines import hf_batching, hf_families, hf_generate, hf_infer, hf_load, hf_memory, hf_post, hf_prepare
from jobs.engines.base import Engine, runner_threads
from jobs.engines.hf_memory import MemoryGate, Probe
from jobs.errors import EngineError

log = logging.getLogger(__name__)

AUTO_START = {"cpu": 4, "cuda": 4}
AUTO_CAP = {"cpu": 8, "cuda": 32}


class StoppedError(TimeoutError):
    """The runner asked the task to stop (its time is up) before this item was recognised."""


class TransformersEngine(Engine):
    name = "transformers"
    uses_gpu = True  # the runner gives it one worker per visible GPU (jobs/runner/sizing.py)

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> None:
        """Refuse at submit what can never run: bad option values, a model that cannot be found. Cheap."""
        _batch_option(options.get("batch_size", "auto"))
        for key in ("max_new_tokens", "empty_cache_every"):
            if key in options and (not isinstance(options[key], int) or options[key] < 1):
                raise EngineError(f"engine option {key} must be a whole number >= 1, got {options[key]!r}")
        device = str(options.get("device", "auto")).lower()
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise EngineError(f"engine option device must be auto, cpu or cuda, got {device!r}")
        hf_load.check_model(options)

    def load(self, device: str = "auto") -> None:
        import torch

        opts = self.options
        asked = _pinned(str(opts.get("device", "auto")))
        self.device = hf_load.pick_device(asked if asked != "auto" else device)
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        if kind == "cpu" and (threads := runner_threads()):
            torch.set_num_threads(threads)
        self.loaded = hf_load.load(opts, self.device)
        fam = self.loaded.family
        size = _batch_option(opts.get("batch_size", "auto"))
        if fam.style == hf_families.INFER:
            size = 1  # its infer() reads one image file at a time
        self.max_batch = AUTO_CAP[kind] if size is None else size
        start = AUTO_START[kind] if size is None else size
        self.sizer = hf_batching.BatchSizer(size=min(start, self.max_batch), cap=self.max_batch, auto=size is None)
        # the job's limit, else the checkpoint's own (its generation_config), else the family's (line or page)
        own = getattr(getattr(self.loaded.model, "generation_config", None), "max_new_tokens", None)
        self.max_new_tokens = int(opts.get("max_new_tokens") or own or fam.max_new_tokens)
        self.task = fam.task(opts)
        self.decoder_ids: Any = None
        default_time = 0.8 * float(opts["item_timeout"]) if "item_timeout" in opts else 60.0
        self.max_time_s = float(opts.get("max_time_s", default_time))
        self.empty_cache_every = int(opts.get("empty_cache_every", 5))
        self.gate: MemoryGate | None = hf_memory.options_gate(opts, self.stop_requested) if kind == "cuda" else None
        self.batches = 0
        self._peak_mib = 0.0
        self.prompt = self._prompt()
        self.prepared = hf_prepare.Prepared()
        log.info(
            "transformers: %s (%s, task %s, prompt %r) on %s, %s, batch %s",
            opts.get("model"),
            fam.label,
            self.task,
            self.prompt,
            self.device,
            self.loaded.dtype,
            opts.get("batch_size", "auto"),
        )

    def set_memory_probe(self, probe: Probe, sleep: Any = time.sleep, max_wait_s: float | None = None) -> None:
        """Gate batches on ``probe`` even off GPU (tests use a fake probe; nothing else needs this)."""
        gate = hf_memory.options_gate(self.options, self.stop_requested, probe)
        gate.sleep = sleep
        if max_wait_s is not None:
            gate.max_wait_s = max_wait_s
        self.gate = gate

    def close(self) -> None:
        import gc

        self.loaded = None  # type: ignore[assignment]
        gc.collect()  # the model's tensors go only once nothing refers to them
        hf_memory.empty_cache()

    @property
    def batch(self) -> int:
        """The sub-batch size now: grows while memory allows, halves on OOM."""
        return self.sizer.size

    @property
    def ooms(self) -> int:
        return self.sizer.ooms

    # -- recognition ------------------------------------------------------------------------
    def recognize(self, images: list[Image.Image]) -> list[Any]:
        """One entry per image: a result dict, or an Exception for an image that failed alone.
        Images are generated in size order (little padding per batch) and answered in the order given."""
        order = hf_batching.by_size(images)
        try:
            done = self._recognize([images[i] for i in order])
        finally:
            self.prepared.forget(images)
        out: list[Any] = [None] * len(images)
        for k, i in enumerate(order):
            out[i] = done[k]
        return out

    def _recognize(self, images: list[Image.Image]) -> list[Any]:
        out: list[Any] = [None] * len(images)
        pos = 0
        while pos < len(images):
            if self.stop_requested():
                for i in range(pos, len(images)):
                    out[i] = StoppedError("stopped before recognition: the task ran out of time")
                break
            chunk = images[pos : pos + self.batch]
            if self.gate is not None and (reason := self.gate.wait(self.device)):
                for i in range(pos, pos + len(chunk)):
                    out[i] = RuntimeError(reason)
                pos += len(chunk)
                continue
            results = None
            try:
                results = self._run(chunk)
            except Exception as e:
                if not hf_memory.is_oom(e):
                    raise
            if results is None:  # out of memory; outside the except, so its traceback no longer pins tensors
                hf_memory.empty_cache()
                if self.sizer.shrink(len(chunk)):
                    log.warning("CUDA out of memory at batch %d: retrying at %d", len(chunk), self.batch)
                    continue
                out[pos] = MemoryError(
                    "CUDA out of memory on this item even alone (batch size 1); "
                    "free GPU memory, lower max_new_tokens or use a smaller model"
                )
                pos += 1
                continue
            out[pos : pos + len(chunk)] = results
            pos += len(chunk)
            self._after_batch(len(chunk))
        return out

    def _after_batch(self, size: int) -> None:
        self.batches += 1
        if self.empty_cache_every and self.batches % self.empty_cache_every == 0:
            hf_memory.empty_cache()
        self.sizer.grown(size, room=self.sizer.auto and self._room_to_grow())

    def _room_to_grow(self) -> bool:
        """Doubling a batch roughly doubles its activations: grow only if the last batch's peak fits again."""
        if self.gate is None:
            return True  # CPU: the cap alone bounds it
        answer = self.gate.probe(self.device)
        if answer is None:
            return False  # cannot see the memory: stay where it is known to fit
        return answer[0] / hf_memory.MIB - self.gate.min_free_mib > self._peak_mib

    def _run(self, chunk: list[Image.Image]) -> list[Any]:
        """Generate for one sub-batch; returns a result dict per image (or StoppedError if cut short)."""
        lo = self.loaded
        before = hf_memory.torch_memory(self.device)
        hf_memory.reset_peak(self.device)
        t0 = time.monotonic()
        if lo.family.style == hf_families.INFER:
            return [self._infer(im, t0) for im in chunk]
        inputs = self._inputs(chunk)
        rows = hf_generate.generate(
            lo.model,
            inputs,
            **self._generation_options(),
            max_time_s=self.max_time_s,
            stop=self.stop_requested,
            do_sample=False,
        )
        sizes = [im.size for im in chunk]
        decoded = hf_post.decode(lo.family, lo.processor, [r.tokens for r in rows], sizes, self.prompt or "")
        ms = round((time.monotonic() - t0) * 1000, 1)
        after = hf_memory.torch_memory(self.device)
        if before is not None and after is not None:
            self._peak_mib = after["peak_mib"] - before["allocated_mib"]  # what this batch needed on top
        results: list[Any] = []
        for row, post in zip(rows, decoded, strict=True):
            if row.stopped:  # the runner's soft stop cut it; rows that had finished are kept
                results.append(StoppedError("stopped mid-generation: the task ran out of time"))
                continue
            res: dict[str, Any] = {
                **post,
                "confidence": row.confidence,
                "truncated": row.truncated,
                "device": self.device,
                "batch_size": len(chunk),
                "batch_ms": ms,
            }
            if row.truncated:
                res["truncated_by"] = row.ended_by
            if before is not None:
                res["gpu_memory"] = {"before": before, "after": after}
            results.append(res)
        return results

    def _generation_options(self) -> dict[str, Any]:
        """The family's generation settings: length, beams, stop strings (which need the tokenizer)."""
        fam = self.loaded.family
        out: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "num_beams": fam.num_beams}
        if fam.stop_strings:
            out["stop_strings"] = list(fam.stop_strings)
            out["tokenizer"] = getattr(self.loaded.processor, "tokenizer", self.loaded.processor)
        return out

    def prepare(self, images: list[Image.Image]) -> None:
        """Run the processor now for the batches :meth:`recognize` will make of ``images`` (the worker's
        prefetch thread calls this with the next task's images while the GPU is busy with this one)."""
        lo = self.loaded
        if lo is None or lo.family.style == hf_families.INFER:
            return
        ordered = [images[i] for i in hf_batching.by_size(images)]
        size = self.batch
        chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
        self.prepared.prepare(chunks, lambda c: hf_prepare.process(lo, self.prompt, self.task, c))

    def _inputs(self, chunk: list[Image.Image]) -> dict[str, Any]:
        import torch

        lo = self.loaded
        batch = self.prepared.take(chunk)
        if batch is None:
            batch = hf_prepare.process(lo, self.prompt, self.task, chunk)
        out = {}
        for key, value in batch.items():
            if torch.is_tensor(value):
                value = value.to(self.device, lo.dtype) if value.is_floating_point() else value.to(self.device)
            out[key] = value
        if self.decoder_ids is not None:  # Donut: the task start token opens the decoder
            out["decoder_input_ids"] = self.decoder_ids.repeat(len(chunk), 1).to(self.device)
        return out

    def _prompt(self) -> str | None:
        """The prompt the family was trained on, in the form it expects (None: the model takes none)."""
        lo = self.loaded
        fam = lo.family
        text = fam.prompt(self.options)
        given = self.options.get("prompt") not in (None, "")
        tok = getattr(lo.processor, "tokenizer", lo.processor)
        if fam.style == hf_families.DECODER_PROMPT:
            token = text if given else hf_families.donut_task_token(tok, text)
            self.decoder_ids = tok(token, add_special_tokens=False, return_tensors="pt").input_ids
            return token
        if fam.style == hf_families.NONE or (fam.style == hf_families.PROCESSOR and not given):
            return None
        if fam.style in (hf_families.PLAIN, hf_families.INFER, hf_families.PROCESSOR):
            return text
        content: list[dict[str, Any]] = [{"type": "image"}]
        if fam.style == hf_families.CHAT or (fam.style == hf_families.IMAGE_ONLY and given):
            content.insert(0 if fam.text_first else 1, {"type": "text", "text": text})
        if getattr(lo.processor, "chat_template", None):
            messages = [{"role": "user", "content": content}]
            return str(lo.processor.apply_chat_template(messages, add_generation_prompt=True))
        image_token = getattr(lo.processor, "image_token", None) or ""
        return image_token + text  # no chat template: the image token, then the instruction

    def _infer(self, image: Image.Image, t0: float) -> Any:
        """DeepSeek-OCR v1: its remote code's ``infer()``, bounded like every family; parsed like DeepSeek-OCR-2."""
        lo = self.loaded
        raw, row = hf_infer.infer(
            lo.model,
            lo.processor,
            image,
            self.prompt or "",
            max_new_tokens=self.options.get("max_new_tokens"),
            max_time_s=self.max_time_s,
            stop=self.stop_requested,
        )
        if row is not None and row.stopped:
            return StoppedError("stopped mid-generation: the task ran out of time")
        post = hf_post.POSTS[lo.family.post](raw, image.size, processor=lo.processor, prompt=self.prompt)
        ms = round((time.monotonic() - t0) * 1000, 1)
        res = {**post, "confidence": None, "device": self.device, "batch_size": 1, "batch_ms": ms}
        if row is not None:  # else this remote code generated some other way: nothing is known of how it ended
            res.update(confidence=row.confidence, truncated=row.truncated)
            if row.truncated:
                res["truncated_by"] = row.ended_by
        return res


def _pinned(asked: str) -> str:
    """``cuda:N`` in a worker the runner pinned to one GPU (CUDA_VISIBLE_DEVICES holds one entry, seen as
    ``cuda:0``) means that worker's GPU: the runner, not the job, places work on GPUs."""
    pins = [p for p in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if p.strip()]
    if asked.startswith("cuda:") and len(pins) == 1:
        log.info("device %s asked for; this worker is pinned to GPU %s, seen as cuda", asked, pins[0])
        return "cuda"
    return asked


def _batch_option(value: Any) -> int | None:
    """``batch_size``: a whole number 1..256, or "auto" (None)."""
    if value in (None, "auto"):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 256:
        raise EngineError(f"engine option batch_size must be auto or a whole number 1..256, got {value!r}")
    return value


__all__ = ["TransformersEngine", "StoppedError", "EngineError"]
