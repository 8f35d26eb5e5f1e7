"""Peak memory of the transformers engine's confidence: today's way (``output_scores=True`` +
``compute_transition_scores``) against jobs/engines/hf_generate.py (the chosen tokens'
log-probabilities, gathered step by step), at 1024 new tokens. Goal (issue 16): <= 1/10.

Each way runs in its own fresh process on a tiny random causal LM with a 50,000-token vocabulary
(hidden 32, one layer: the logits are what costs memory, not the model), greedy, EOS disabled so
every row runs to max_new_tokens. A thread samples the process RSS every 2 ms; the peak above the
RSS just before ``generate`` is the measure, minus the same for plain generation (no confidence),
so what is left is the confidence computation's own cost. torch's CPU allocations are invisible to
tracemalloc, hence RSS.
    python -m bench.hf_confidence [--quick] [--tokens N] [--batch N] [--vocab N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from bench.common import REPO, Row, goal_table

GOAL = 0.1
MB = 2**20

CHILD = r"""
import json, sys, threading, time
import psutil, torch
from jobs.engines.hf_generate import generate  # first: importing jobs lets torchvision import (torchvision_ops)
from transformers import LlamaConfig, LlamaForCausalLM

mode, batch, tokens, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=tokens + 64,
                  pad_token_id=0, bos_token_id=1, eos_token_id=None)
model = LlamaForCausalLM(cfg).eval()
model.generation_config.eos_token_id = None
model.generation_config.pad_token_id = 0
ids = torch.randint(3, vocab, (batch, 8))
proc = psutil.Process()

def run(n):
    kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1)
    if mode == "new":
        rows = generate(model, {"input_ids": ids}, max_time_s=None, stop=lambda: False, **kw)
        return [r.confidence for r in rows], len(rows[0].tokens)
    with torch.inference_mode():
        gen = model.generate(input_ids=ids, return_dict_in_generate=True, output_scores=mode == "old", **kw)
    if mode == "plain":
        return None, gen.sequences.shape[1] - ids.shape[1]
    logp = model.compute_transition_scores(gen.sequences, gen.scores, normalize_logits=True).float()
    return [round(float(torch.exp(r.mean())), 4) for r in logp], logp.shape[1]

run(4)  # warm-up: lazy inits, allocator arenas
peak, done = [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.002)
before = proc.memory_info().rss
t = threading.Thread(target=sample, daemon=True); t.start()
t0 = time.perf_counter()
confs, steps = run(tokens)
seconds = time.perf_counter() - t0
done.set(); t.join()
peak[0] = max(peak[0], proc.memory_info().rss)
print(json.dumps({"mode": mode, "peak": peak[0] - before, "seconds": seconds, "steps": steps, "confs": confs}))
"""


def _child(mode: str, batch: int, tokens: int, vocab: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(batch), str(tokens), str(vocab)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def theory(batch: int, tokens: int, vocab: int) -> tuple[int, int]:
    """Bytes held at the peak, by construction. Old: the per-step scores generate keeps (batch x vocab
    float32 a step), then stacked and log-softmaxed by compute_transition_scores: 3 copies. New: one
    step's log-softmax kept until its token is chosen, the transient log-softmax of the next, and one
    float per row and step."""
    step = batch * vocab * 4
    return 3 * step * tokens, 2 * step + batch * tokens * 4


def measure(quick: bool = False, tokens: int | None = None, batch: int | None = None, vocab: int = 50_000) -> dict:
    tokens = tokens or (256 if quick else 1024)
    batch = batch or (2 if quick else 4)
    runs = {mode: _child(mode, batch, tokens, vocab) for mode in ("plain", "old", "new")}
    same = all(abs(a - b) <= 1e-4 for a, b in zip(runs["old"]["confs"], runs["new"]["confs"], strict=True))
    return {"batch": batch, "tokens": tokens, "vocab": vocab, "runs": runs, "same": same}


def _mb(n: float) -> str:
    return f"{n / MB:,.1f} MB" if n < 10 * 2**30 else f"{n / 2**30:,.1f} GiB"


def report(m: dict[str, Any], quick: bool = False) -> str:
    runs, b, t, v = m["runs"], m["batch"], m["tokens"], m["vocab"]
    base = runs["plain"]["peak"]
    old, new = max(runs["old"]["peak"] - base, 0), max(runs["new"]["peak"] - base, 0)
    ratio = new / old if old else float("nan")
    t_old, t_new = theory(b, t, v)
    big_old, big_new = theory(32, 4096, 152_064)
    rows = [
        Row(
            f"peak RSS above plain generate, batch {b} x {t} new tokens, vocab {v:,}",
            _mb(new),
            _mb(old),
            f"{ratio:.4f}x",
            f"<= {GOAL}x",
            ratio <= GOAL,
        ),
        Row("bytes held at the peak, by construction (same run)", _mb(t_new), _mb(t_old), f"{t_new / t_old:.4f}x"),
        Row("bytes held at the peak, 32 pages x 4096 tokens, vocab 152,064", _mb(big_new), _mb(big_old)),
        Row(
            "confidence equal to the old way (within 1e-4)",
            "yes" if m["same"] else "no",
            goal="yes",
            met=m["same"],
        ),
        Row("seconds to generate", f"{runs['new']['seconds']:.1f}", f"{runs['old']['seconds']:.1f}"),
    ]
    notes = (
        f"'ocrjobs' is jobs/engines/hf_generate.py, 'reference' today's `output_scores=True` + "
        f"`compute_transition_scores`. Tiny random causal LM (hidden 32, 1 layer), greedy, every row "
        f"{t} tokens (EOS off), torch 1 thread, each way in a fresh process; plain generate peaked "
        f"{_mb(base)} above its start and is subtracted from both." + (" Quick run: fewer tokens." if quick else "")
    )
    return "## Confidence memory (transformers engine)\n\n" + goal_table(rows) + "\n\n" + notes + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hf_confidence", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="256 tokens, batch 2")
    p.add_argument("--tokens", type=int, help="new tokens per row (default 1024)")
    p.add_argument("--batch", type=int, help="rows (default 4)")
    p.add_argument("--vocab", type=int, default=50_000)
    args = p.parse_args(argv)
    print(report(measure(args.quick, args.tokens, args.batch, args.vocab), args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
