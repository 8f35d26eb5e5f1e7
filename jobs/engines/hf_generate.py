"""Bounded ``generate`` for the transformers engine: confidence without full-vocabulary scores, and
an honest account of how each row ended.

Why not ``output_scores=True`` + ``compute_transition_scores``: generate then keeps one float32
batch x vocabulary row per step, and the transition scores stack and log-softmax them again (~3
copies): for a 152k vocabulary at 32 pages x 4096 tokens that is 74 GiB a copy. Here a logits
processor appended after the caller's keeps the log-softmax of ONE step, and a stopping criterion
(called by generate right after the token is chosen) reads the chosen token's log-probability out
of it and drops it. What is kept for the whole run is one float per row and step.

Why our own time and stop criteria instead of generate's ``max_time``: so we know *why* a row did
not finish. A row that ended on EOS (or a stop string) is ``finished``; any other row is
``truncated`` (``max_new_tokens``, ``max_time`` or the runner's soft stop), and the caller must not
pass it off as complete.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: How a row ended: finished rows end on "eos" or "stop_string"; the others are truncated.
ENDINGS = ("eos", "stop_string", "max_new_tokens", "max_time", "stopped", "other")


@dataclass
class Generated:
    """One row of a batch, as the engine needs it."""

    tokens: list[int]  # the new token ids only: no prompt, no EOS, no padding after the end
    confidence: float | None  # geometric mean of the chosen tokens' probabilities (EOS included), 4 decimals
    finished: bool  # ended on EOS or a stop string
    truncated: bool  # did not finish: cut by max_new_tokens, max_time or the soft stop
    stopped: bool  # the runner's soft stop ended generation before this row finished
    ended_by: str  # one of ENDINGS


def generate(
    model: Any,
    inputs: dict[str, Any],
    *,
    max_new_tokens: int,
    max_time_s: float | None,
    stop: Callable[[], bool],
    stop_strings: list[str] | None = None,
    tokenizer: Any = None,
    **gen_kwargs: Any,
) -> list[Generated]:
    """``model.generate(**inputs)`` bounded by ``max_new_tokens``, ``max_time_s`` and ``stop()``; one
    :class:`Generated` per input row. ``gen_kwargs`` go to generate (their ``logits_processor`` and
    ``stopping_criteria`` run before ours); ``output_scores`` is refused: it is what this avoids.
    With beam search the confidence is None (the beams' scores are not per chosen token)."""
    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    if gen_kwargs.pop("output_scores", False):
        raise ValueError("hf_generate.generate computes confidence itself; do not pass output_scores=True")
    gen_kwargs.pop("max_time", None)  # ours, so that we know when it fired
    beams = int(gen_kwargs.get("num_beams") or getattr(model.generation_config, "num_beams", 1) or 1)
    eos = _eos_ids(model, gen_kwargs)
    stop_string = _stop_string_check(stop_strings, tokenizer)
    tracker = Tracker(eos, stop, max_time_s, stop_string, keep_logp=beams == 1, max_new_tokens=max_new_tokens)
    processors = LogitsProcessorList(gen_kwargs.pop("logits_processor", None) or [])
    if beams == 1:
        processors.append(tracker.processor)
    criteria = StoppingCriteriaList(gen_kwargs.pop("stopping_criteria", None) or [])
    criteria.append(tracker.criterion)
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            max_time=None,  # the model's own generation config may set one: ours replaces it
            logits_processor=processors,
            stopping_criteria=criteria,
            return_dict_in_generate=False,
            output_scores=False,
            **gen_kwargs,
        )
    sequences = out.sequences if hasattr(out, "sequences") else out
    return tracker.rows(sequences, max_new_tokens)


class Tracker:
    """State shared by the logits processor and the stopping criterion for one generate call."""

    def __init__(
        self,
        eos: list[int],
        stop: Callable[[], bool],
        max_time_s: float | None,
        stop_string: Callable[[Any], Any] | None,
        keep_logp: bool = True,
        max_new_tokens: int = 0,
    ) -> None:
        self.eos, self.stop, self.max_time_s, self.stop_string = eos, stop, max_time_s, stop_string
        self.keep_logp, self.max_new_tokens = keep_logp, max_new_tokens
        self.t0 = time.monotonic()
        self.stash: Any = None  # the last step's log-softmax (batch x vocab), until its token is chosen
        # The chosen tokens' log-probabilities, rows x steps float32, allocated once: a small tensor kept per
        # step would pin the allocator's heap between the per-step vocabulary-sized buffers (measured: RSS grew
        # by ~half a stash a step).
        self.logp: Any = None
        self.prompt_len: int | None = None
        self.end: Any = None  # per row: the step (1-based) that finished it, 0 while running
        self.how: Any = None  # per row: 1 = EOS, 2 = stop string
        self.halted: str | None = None  # "max_time" or "stopped" when we ended the batch
        processor, criterion = _classes()
        self.processor, self.criterion = processor(self), criterion(self)

    def on_scores(self, scores: Any) -> None:
        import torch

        self.stash = torch.log_softmax(scores.float(), dim=-1)

    def on_token(self, input_ids: Any) -> Any:
        import torch

        rows, device = input_ids.shape[0], input_ids.device
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1] - 1
            self.end = torch.zeros(rows, dtype=torch.long, device=device)
            self.how = torch.zeros(rows, dtype=torch.long, device=device)
            self.eos_t = torch.tensor(self.eos, dtype=torch.long, device=device)  # once, not a copy per step
            if self.keep_logp:
                size = max(self.max_new_tokens, 1) + 1  # + 1: a deferred stop check runs one step more
                self.logp = torch.full((rows, size), float("nan"), dtype=torch.float32, device=device)
        if self.stop():
            self.halted = "stopped"
        elif self.max_time_s is not None and time.monotonic() - self.t0 >= self.max_time_s:
            self.halted = "max_time"
        if not self.keep_logp:  # beam search: rows are beams here; ends are read from the sequences after
            return torch.full((rows,), bool(self.halted), dtype=torch.bool, device=device)
        chosen = input_ids[:, -1]
        step = input_ids.shape[1] - self.prompt_len
        if step > self.logp.shape[1]:  # more steps than asked for (a caller's max_length): grow, rarely
            self.logp = torch.cat([self.logp, torch.full_like(self.logp, float("nan"))], dim=1)
        if self.stash is not None and self.stash.shape[0] == rows:  # else no processor call this step: NaN
            self.logp[:, step - 1] = self.stash.gather(1, chosen[:, None]).squeeze(1)
        self.stash = None
        hit = torch.zeros(rows, dtype=torch.long, device=device)
        if self.eos:
            hit = torch.where(torch.isin(chosen, self.eos_t), 1, hit)
        if self.stop_string is not None:
            hit = torch.where((hit == 0) & self.stop_string(input_ids).to(device), 2, hit)
        new = (self.end == 0) & (hit > 0)
        self.end.masked_fill_(new, step)  # in place: nothing new kept per step
        self.how.copy_(torch.where(new, hit, self.how))
        if self.halted:
            return torch.ones(rows, dtype=torch.bool, device=device)
        return self.end > 0

    def rows(self, sequences: Any, max_new_tokens: int) -> list[Generated]:
        """Cut each row at its end and say how it ended."""
        import torch

        n = sequences.shape[0]
        start = self.prompt_len if self.prompt_len is not None else sequences.shape[1]
        new = sequences[:, start:].cpu()
        steps = new.shape[1]  # generate may undo a step it ran (deferred stop checks): trust the sequences
        if self.keep_logp and self.end is not None:
            end, how = self.end.cpu(), self.how.cpu()
        else:  # beams: the first EOS of each returned sequence
            end, how = _first_eos(new, self.eos), torch.ones(n, dtype=torch.long)
        logp = self.logp[:, :steps].cpu() if self.logp is not None else None
        out = []
        for i in range(n):
            e = int(end[i])
            finished = 0 < e <= steps
            used = e if finished else steps  # tokens whose probabilities count (EOS included)
            toks = new[i, :used].tolist()
            if finished and int(how[i]) == 1:
                toks = toks[:-1]  # the EOS marks the end; it is not text
            if finished:
                ended = "eos" if int(how[i]) == 1 else "stop_string"
            elif self.halted and not (self.halted == "max_time" and steps >= max_new_tokens):
                ended = self.halted
            elif steps >= max_new_tokens:
                ended = "max_new_tokens"
            else:  # a criterion of the caller's (or the model's generation config) ended the batch
                ended = "other"
            conf = None
            if logp is not None and used:
                vals = logp[i, :used]
                vals = vals[torch.isfinite(vals)]
                conf = round(float(torch.exp(vals.mean())), 4) if vals.numel() else None
            truncated = not finished
            out.append(Generated(toks, conf, finished, truncated, ended == "stopped", ended))
        return out


@functools.cache
def _classes() -> tuple[type, type]:
    """The transformers hooks, made on first use so importing this module stays cheap."""
    from transformers import LogitsProcessor, StoppingCriteria

    class Processor(LogitsProcessor):
        """Last in the list: sees the scores the token is chosen from (greedy: their argmax)."""

        def __init__(self, tracker: Tracker) -> None:
            self.tracker = tracker

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            self.tracker.on_scores(scores)
            return scores

    class Criterion(StoppingCriteria):
        """Called by generate right after each token is appended: read its log-prob, track ends and limits."""

        def __init__(self, tracker: Tracker) -> None:
            self.tracker = tracker

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return self.tracker.on_token(input_ids)

    return Processor, Criterion


def _first_eos(new: Any, eos: list[int]) -> Any:
    """Per row: the 1-based position of the first EOS among the new tokens, 0 if none."""
    import torch

    if not eos or new.shape[1] == 0:
        return torch.zeros(new.shape[0], dtype=torch.long)
    hit = torch.isin(new, torch.tensor(eos))
    first = hit.long().argmax(dim=1) + 1
    return torch.where(hit.any(dim=1), first, 0)


def _eos_ids(model: Any, gen_kwargs: dict[str, Any]) -> list[int]:
    config = gen_kwargs.get("generation_config") or model.generation_config
    eos = gen_kwargs.get("eos_token_id", getattr(config, "eos_token_id", None))
    if eos is None:
        return []
    if isinstance(eos, int):
        return [eos]
    return [int(x) for x in (eos.tolist() if hasattr(eos, "tolist") else eos)]


def _stop_string_check(stop_strings: list[str] | None, tokenizer: Any) -> Callable[[Any], Any] | None:
    if not stop_strings:
        return None
    if tokenizer is None:
        raise ValueError("stop strings need the model's tokenizer (pass tokenizer=)")
    from transformers import StopStringCriteria

    crit = StopStringCriteria(tokenizer=tokenizer, stop_strings=stop_strings)
    return lambda input_ids: crit(input_ids, None)


__all__ = ["Generated", "generate", "ENDINGS"]
