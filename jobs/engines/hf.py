"""The ``transformers`` engine: OCR with a Hugging Face model, batched, on GPU when there is one.

The runner sends up to ``max_batch`` images per call; the engine runs them in sub-batches sized
to what the GPU can hold: an out-of-memory halves the sub-batch and retries (at one image, only
that image fails), a memory gate holds a batch back while another process hogs the GPU, and
generation is bounded (``max_new_tokens``, ``max_time``, the runner's soft stop) so a runaway
decode ends by itself before the runner has to kill the worker.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from PIL import Image

from jobs.engines import hf_load, hf_memory
from jobs.engines.base import Engine, runner_threads
from jobs.engines.hf_memory import MemoryGate, Probe
from jobs.errors import EngineError

log = logging.getLogger(__name__)

AUTO_START = {"cpu": 4, "cuda": 4}
AUTO_CAP = {"cpu": 8, "cuda": 32}
DEFAULT_PROMPT = "Read all the text in the image."


class StoppedError(TimeoutError):
    """The runner asked the task to stop (its time is up) before this item was recognised."""


class TransformersEngine(Engine):
    name = "transformers"

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
        asked = str(opts.get("device", "auto"))
        self.device = hf_load.pick_device(asked if asked != "auto" else device)
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        if kind == "cpu" and (threads := runner_threads()):
            torch.set_num_threads(threads)
        self.loaded = hf_load.load(opts, self.device)
        size = _batch_option(opts.get("batch_size", "auto"))
        self.auto = size is None
        self.max_batch = AUTO_CAP[kind] if size is None else size
        self.batch = AUTO_START[kind] if size is None else size  # the sub-batch size now; OOMs shrink it
        self.max_new_tokens = int(opts.get("max_new_tokens", 128))
        default_time = 0.8 * float(opts["item_timeout"]) if "item_timeout" in opts else 60.0
        self.max_time_s = float(opts.get("max_time_s", default_time))
        self.empty_cache_every = int(opts.get("empty_cache_every", 5))
        self.gate: MemoryGate | None = hf_memory.options_gate(opts, self.stop_requested) if kind == "cuda" else None
        self.batches = 0
        self.ooms = 0
        self._peak_mib = 0.0
        self.prompt = self._prompt()
        log.info(
            "transformers: %s (%s) on %s, %s, batch %s",
            opts.get("model"),
            self.loaded.family,
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

    # -- recognition ------------------------------------------------------------------------
    def recognize(self, images: list[Image.Image]) -> list[Any]:
        """One entry per image: a result dict, or an Exception for an image that failed alone."""
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
                self.ooms += 1
                if len(chunk) > 1:
                    self.batch = (len(chunk) + 1) // 2
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
        if self.auto and size == self.batch and self.batch < self.max_batch and self.ooms == 0 and self._room_to_grow():
            self.batch = min(self.batch * 2, self.max_batch)

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
        import torch

        lo = self.loaded
        before = hf_memory.torch_memory(self.device)
        hf_memory.reset_peak(self.device)
        t0 = time.monotonic()
        inputs = self._inputs(chunk)
        with torch.inference_mode():
            gen = lo.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                max_time=self.max_time_s,
                do_sample=False,
                num_beams=1,
                return_dict_in_generate=True,
                output_scores=True,
                stopping_criteria=_stopping(self.stop_requested),
            )
        stopped = self.stop_requested()
        seq2seq = lo.family == hf_load.ENCODER_DECODER or getattr(lo.model.config, "is_encoder_decoder", False)
        start = 0 if seq2seq or "input_ids" not in inputs else inputs["input_ids"].shape[1]  # drop the prompt
        new = gen.sequences[:, start:]
        texts = lo.processor.batch_decode(new, skip_special_tokens=True)
        confs = _confidences(lo.model, gen, lo.model.generation_config.pad_token_id)
        ms = round((time.monotonic() - t0) * 1000, 1)
        after = hf_memory.torch_memory(self.device)
        if before is not None and after is not None:
            self._peak_mib = after["peak_mib"] - before["allocated_mib"]  # what this batch needed on top
        results: list[Any] = []
        for i, text in enumerate(texts):
            if stopped:
                results.append(StoppedError("stopped mid-generation: the task ran out of time"))
                continue
            res: dict[str, Any] = {
                "text": text.strip(),
                "confidence": confs[i],
                "device": self.device,
                "batch_size": len(chunk),
                "batch_ms": ms,
            }
            if before is not None:
                res["gpu_memory"] = {"before": before, "after": after}
            results.append(res)
        return results

    def _inputs(self, chunk: list[Image.Image]) -> dict[str, Any]:
        import torch

        lo = self.loaded
        images = [im.convert("RGB") for im in chunk]
        if self.prompt is None:
            batch = lo.processor(images=images, return_tensors="pt")
        else:
            batch = lo.processor(images=images, text=[self.prompt] * len(images), return_tensors="pt", padding=True)
        out = {}
        for key, value in batch.items():
            if torch.is_tensor(value):
                value = value.to(self.device, lo.dtype) if value.is_floating_point() else value.to(self.device)
            out[key] = value
        return out

    def _prompt(self) -> str | None:
        """The text prompt of an image-text-to-text model: its chat template around the job's prompt."""
        lo = self.loaded
        if lo.family == hf_load.ENCODER_DECODER:
            return None
        text = str(self.options.get("prompt", DEFAULT_PROMPT))
        if getattr(lo.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            return str(lo.processor.apply_chat_template(messages, add_generation_prompt=True))
        return text if "prompt" in self.options else None  # e.g. GOT-OCR2 builds its own prompt from the image


def _batch_option(value: Any) -> int | None:
    """``batch_size``: a whole number 1..256, or "auto" (None)."""
    if value in (None, "auto"):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 256:
        raise EngineError(f"engine option batch_size must be auto or a whole number 1..256, got {value!r}")
    return value


def _stopping(stop: Any) -> Any:
    """A stopping criterion that ends generation for the whole batch once the runner asks to stop."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), bool(stop()), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Stop()])


def _confidences(model: Any, gen: Any, pad_id: int | None) -> list[float | None]:
    """Per sequence: the geometric mean of the chosen tokens' probabilities (None if nothing generated)."""
    import torch

    n = gen.sequences.shape[0]
    if not gen.scores:
        return [None] * n
    try:
        logp = model.compute_transition_scores(gen.sequences, gen.scores, normalize_logits=True).float()
    except Exception as e:  # noqa: BLE001 - confidence is a nicety; never fail an item for it
        log.debug("no confidence: %s", e)
        return [None] * n
    tokens = gen.sequences[:, -logp.shape[1] :]
    mask = torch.isfinite(logp) & (tokens != pad_id if pad_id is not None else True)
    out: list[float | None] = []
    for row, keep in zip(logp, mask, strict=True):
        vals = row[keep]
        out.append(round(float(torch.exp(vals.mean())), 4) if vals.numel() else None)
    return out


__all__ = ["TransformersEngine", "StoppedError", "EngineError"]
