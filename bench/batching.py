"""``python -m bench.batching [--quick] [--families a,b] [--model PATH] [--device cpu|cuda] [--batch-size N]``:
batched vs one image at a time through the transformers engine, per OCR family.

Without ``--model`` each family with a tiny random builder (tests/hf_tiny.py, tests/hf_tiny_vlm.py) is
built in a temporary folder and run on CPU (goal: batched >= 2x the items/s of batch 1); a family the
engine refuses here (its processor needs torchvision, which is not installed) is listed with the
engine's own reason. With a real model folder on a GPU the goal is >= 4x. Every run goes through the
code the runner uses (TransformersEngine.recognize) with no option but model, batch_size and
max_new_tokens, on the same images; a warm-up call precedes each timing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Row, goal_table, table

GOAL = {"cpu": 2.0, "cuda": 4.0}
#: name -> (the engine's family, builder module, builder). The qwen builders are both the qwen_vl family.
BUILDERS: dict[str, tuple[str, str, str]] = {
    "trocr": ("trocr", "tests.hf_tiny", "build_trocr_bare"),
    "donut": ("donut", "tests.hf_tiny", "build_donut"),
    "nougat": ("nougat", "tests.hf_tiny", "build_nougat"),
    "got_ocr2": ("got_ocr2", "tests.hf_tiny", "build_got_ocr2"),
    "florence2": ("florence2", "tests.hf_tiny", "build_florence2"),
    "deepseek_ocr2": ("deepseek_ocr2", "tests.hf_tiny_vlm", "build_deepseek_ocr2"),
    "paddleocr_vl": ("paddleocr_vl", "tests.hf_tiny_vlm", "build_paddleocr_vl"),
    "glm_ocr": ("glm_ocr", "tests.hf_tiny_vlm", "build_glm_ocr"),
    "lighton_ocr": ("lighton_ocr", "tests.hf_tiny_vlm", "build_lighton_ocr"),
    "qwen2_5_vl": ("qwen_vl", "tests.hf_tiny_vlm", "build_qwen2_5_vl"),
    "qwen3_vl": ("qwen_vl", "tests.hf_tiny_vlm", "build_qwen3_vl"),
    "unlimited_ocr": ("unlimited_ocr", "tests.hf_tiny_vlm", "build_unlimited_ocr"),
    "qianfan_ocr": ("qianfan_ocr", "tests.hf_tiny_vlm", "build_qianfan_ocr"),
    "minicpm_ocr": ("minicpm_ocr", "tests.hf_tiny_vlm", "build_minicpm_ocr"),
}
QUICK = ("trocr", "lighton_ocr")  # one encoder-decoder, one decoder-only VLM: both fast


def _lines(n: int) -> list[Any]:
    """Line images all of one size: a batch pads nothing, so batching alone is measured."""
    from PIL import Image, ImageDraw

    out = []
    for i in range(n):
        im = Image.new("RGB", (384, 48), "white")
        ImageDraw.Draw(im).text((6, 16), f"Invoice {1000 + i}: total {i * 7.5:.2f} EUR", fill="black")
        out.append(im)
    return out


def _engine(model: str, device: str, batch: int, max_new_tokens: int) -> Any:
    from jobs.engines.hf import TransformersEngine

    engine = TransformersEngine(model=model, batch_size=batch, max_new_tokens=max_new_tokens)
    engine.load(device)
    return engine


@contextlib.contextmanager
def _counting(seen: dict[str, list[int]]) -> Iterator[None]:
    """Record each generated row's new tokens and prompt length: the two sides must generate alike."""
    from jobs.engines import hf_generate

    real = hf_generate.generate

    def counted(model: Any, inputs: dict[str, Any], **kw: Any) -> Any:
        rows = real(model, inputs, **kw)
        seen["new"].extend(len(r.tokens) for r in rows)
        ids = inputs.get("input_ids")
        seen["prompt"].extend([int(ids.shape[-1])] * len(rows) if ids is not None else [])
        return rows

    hf_generate.generate = counted
    try:
        yield
    finally:
        hf_generate.generate = real


def _time(engine: Any, images: list[Any]) -> tuple[float, int, dict[str, list[int]]]:
    """Seconds for one recognize() over all images (in the engine's batches), failures, tokens seen."""
    seen: dict[str, list[int]] = {"new": [], "prompt": []}
    with _counting(seen):
        t0 = time.perf_counter()
        out = engine.recognize(images)
        seconds = time.perf_counter() - t0
    return seconds, sum(1 for r in out if not isinstance(r, dict)), seen


def _mean(xs: list[int]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _compare(
    model: str, device: str, batch: int, images: list[Any], max_new_tokens: int, rounds: int, prefill: bool = False
) -> dict:
    """Batched and batch-1 runs interleaved, best of ``rounds`` each: a neighbour's load spike on a
    shared machine then hits both sides, not just whichever ran second. ``prefill``: two more sides, batch
    1 and batched with one new token each: how much of batch 1's time is the encoder / prompt, and how
    much batching speeds that part up."""
    engines = {
        "batched": _engine(model, device, batch, max_new_tokens),
        "single": _engine(model, device, 1, max_new_tokens),
    }
    if prefill:
        engines["prefill"] = _engine(model, device, 1, 1)
        engines["prefill_batched"] = _engine(model, device, batch, 1)
    for e in engines.values():
        e.recognize(images[: e.max_batch])  # warm-up: lazy init, kernels, allocator
    best = {k: float("inf") for k in engines}
    failed = dict.fromkeys(engines, 0)
    seen: dict[str, dict[str, list[int]]] = {}
    for _ in range(rounds):
        for k, e in engines.items():
            seconds, bad, seen[k] = _time(e, images)
            best[k], failed[k] = min(best[k], seconds), failed[k] + bad
    out: dict[str, Any] = {
        k: {
            "batch": e.max_batch,
            "images": len(images),
            "seconds": best[k],
            "per_s": len(images) / best[k],
            "failed": failed[k],
            "new_tokens": _mean(seen[k]["new"]),
            "prompt_tokens": _mean(seen[k]["prompt"]),
        }
        for k, e in engines.items()
    }
    loaded = engines["batched"].loaded
    family, model_type = loaded.family, getattr(loaded.model.config, "model_type", "")
    out["family"] = family.label if len(family.model_types) < 2 else f"{family.label}: {model_type}"
    out["device"], out["dtype"] = engines["batched"].device, str(engines["batched"].loaded.dtype).removeprefix("torch.")
    out["ratio"] = out["batched"]["per_s"] / out["single"]["per_s"]
    if prefill:
        out["prefill_share"] = best["prefill"] / best["single"]
        out["prefill_ratio"] = best["prefill"] / best["prefill_batched"]
    for e in engines.values():
        e.close()
    return out


def _page_model(family: str) -> bool:
    from jobs.engines import hf_families

    return hf_families.BY_NAME[family].max_new_tokens > 64


def _judged(r: dict[str, Any]) -> dict[str, Any]:
    """The run a family is judged on: at page length for a page model, with the encoder's share of that
    longer batch-1 time (same prefill time, longer run); else the line-length run."""
    page = r.get("page")
    if page is None:
        return r
    share = r["prefill_share"] * r["single"]["seconds"] / page["single"]["seconds"]
    return {**r, **{k: page[k] for k in ("batched", "single", "ratio")}, "prefill_share": share}


def _refused(family: str) -> str | None:
    """The engine's own reason it would refuse this family here (a missing module), or None."""
    from jobs.engines import hf_families
    from jobs.errors import EngineError

    fam = hf_families.BY_NAME[family]
    try:
        hf_families.check(fam, {})
    except EngineError as e:
        return str(e).removeprefix(f"{fam.label} ").split(": install")[0]
    return None


def measure(
    work: Path,
    quick: bool = False,
    model: str | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    images: int | None = None,
    max_new_tokens: int = 16,
    threads: int | None = 1,
    families: list[str] | None = None,
    page_tokens: int = 128,
) -> dict[str, Any]:
    """Items/s at ``batch_size`` (default 8 on CPU, 16 on GPU) and at 1, on the same images: for
    ``model`` alone if given, else per family (``families``, default all; ``QUICK`` with ``quick``).

    Per family, every model is measured at ``max_new_tokens`` (a line's answer); a page model (its family
    allows more than a line model's 64 new tokens by default) also at ``page_tokens``, still far under a
    page's answer, and is judged there: it is what a page model spends its time on."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    batch = batch_size or (16 if kind == "cuda" else 8)
    n = images or ((2 if quick else 4) * batch)
    rounds = 2 if quick else 3
    common = {
        "threads": 0,
        "max_new_tokens": max_new_tokens,
        "page_tokens": page_tokens,
        "rounds": rounds,
        "goal": GOAL[kind],
    }
    try:
        common["threads"] = torch.get_num_threads()
        if model is not None:
            return {**common, "model": model, **_compare(model, device, batch, _lines(n), max_new_tokens, rounds)}
        names = families or list(QUICK if quick else BUILDERS)
        unknown = [f for f in names if f not in BUILDERS]
        if unknown:
            raise ValueError(f"unknown families {unknown}; known: {', '.join(BUILDERS)}")
        rows, skipped = [], {}
        for name in names:
            family, module, builder = BUILDERS[name]
            if reason := _refused(family):
                skipped[name] = reason
                continue
            folder = getattr(importlib.import_module(module), builder)(work / name)
            r = _compare(str(folder), device, batch, _lines(n), max_new_tokens, rounds, prefill=True)
            if not quick and _page_model(family):
                r["page"] = _compare(str(folder), device, batch, _lines(n), page_tokens, rounds)
            rows.append({"name": name, **r})
        return {**common, "families": rows, "skipped": skipped, "batch": batch, "images": n}
    finally:
        torch.set_num_threads(before)


def _why(r: dict[str, Any], goal: float) -> str:
    """A missed goal's reason, from what was measured."""
    s, b = r["single"], r["batched"]
    if s["new_tokens"] is not None and b["new_tokens"] is not None and b["new_tokens"] > s["new_tokens"] + 0.5:
        return f"the batched run generated {b['new_tokens']:.1f} new tokens per item vs {s['new_tokens']:.1f}"
    share, speed = r.get("prefill_share"), r.get("prefill_ratio")
    if share and speed and share * r["ratio"] / speed >= 0.5:  # the encoder is most of the batched time
        prompt = f" ({s['prompt_tokens']:.0f} prompt tokens per image)" if s["prompt_tokens"] else ""
        why = (
            f"encoder + prefill{prompt} are {share:.0%} of the batch-1 time and batched they run at only "
            f"{speed:.2f}x the batch-1 speed: most of the batched time"
        )
        cap = speed / share  # Amdahl, with decoding free; stated only where the measured ratio agrees with it
        if cap < goal and r["ratio"] <= cap * 1.05:
            why += f"; even with free decoding batching could give at most {cap:.2f}x"
        return why
    return "the device is busy or too small a model to gain"


def _family_report(m: dict[str, Any], quick: bool) -> str:
    goal = m["goal"]
    rows = []
    for line in m["families"]:
        r = _judged(line)
        ok = r["ratio"] >= goal and r["batched"]["failed"] == r["single"]["failed"] == 0
        met = "met" if ok else f"**missed** ({_why(r, goal) if r['ratio'] < goal else 'items failed'})"
        b, s = r["batched"], r["single"]
        tokens = "-" if b["new_tokens"] is None else f"{b['new_tokens']:.1f} / {s['new_tokens']:.1f}"
        cells = [f"{b['per_s']:.1f}", f"{s['per_s']:.1f}", f"{r['ratio']:.2f}x", f">= {goal:.0f}x", met]
        short = f"{line['ratio']:.2f}x" if "page" in line else "(judged there)"
        prefill = f"{line['prefill_share']:.0%}, {line['prefill_ratio']:.2f}x"
        rows.append([r["family"], str(b["batch"]), tokens, *cells, short, prefill])
    head = [
        "family",
        "batch",
        "new tokens",
        "batched items/s",
        "batch-1 items/s",
        "ratio",
        f"goal (>= {goal:.0f}x)",
        "met?",
        f"ratio at {m['max_new_tokens']} new tokens",
    ]
    notes = (
        f"Tiny random models (tests/hf_tiny.py, tests/hf_tiny_vlm.py: 1 layer, hidden 16-32), each loaded by "
        f"TransformersEngine with only model, batch_size and max_new_tokens (the family's prompt, task and "
        f"processor settings are its defaults); {m['images']} line images 384x48, all one size; "
        f"device {m['families'][0]['device'] if m['families'] else '-'}, torch threads {m['threads']}, greedy, best "
        f"of {m['rounds']} interleaved rounds, warm-up excluded. The tiny models never end on their own, so "
        "'new tokens' (per item, batched / batch-1) is the limit: a line model (TrOCR) is judged at "
        f"{m['max_new_tokens']}, a line's answer; a page model at {m.get('page_tokens', '-')}, still far under "
        f"a page's answer (its default limit is 768-4,096), with its ratio at {m['max_new_tokens']} beside it. "
        f"'prefill' (at {m['max_new_tokens']} new tokens) is the time of batch 1 with one new token over "
        "batch 1 with all of them (the encoder / vision tower and prompt's share), then the batched vs batch-1 "
        f"ratio of those one-token runs. Where the ratio at {m['max_new_tokens']} new tokens is low, the encoder "
        "is why (Amdahl): these families' vision side works at a fixed, high resolution whatever the line's size "
        "(SAM at 1024 px, InternVL tiles, olmOCR's 1288 px pages), which in a 1-layer model on one CPU thread is "
        "most of a short answer's time and runs no faster batched; on a GPU the encoder runs the batch in "
        "parallel (bench/gpu_check.sh, not run here)."
        + (" Quick run: few images." if quick else "")
    )
    skipped = {}
    for name, reason in m["skipped"].items():
        skipped.setdefault(reason, []).append(name)
    not_run = "".join(
        f"\n\nNot run: {', '.join(names)}: the engine refuses them here ({reason})."
        for reason, names in skipped.items()
    )
    body = table([*head, "prefill"], rows)
    return "## Batching (transformers engine), per family\n\n" + body + "\n\n" + notes + not_run + "\n"


def report(m: dict[str, Any], quick: bool = False) -> str:
    if "families" in m:
        return _family_report(m, quick)
    b, s = m["batched"], m["single"]
    ratio, goal = m["ratio"], m["goal"]
    rows = [
        Row(
            f"images/s, batch {b['batch']} vs batch 1 ({b['images']} line images)",
            f"{b['per_s']:.1f}",
            f"{s['per_s']:.1f}",
            f"{ratio:.1f}x",
            f">= {goal:.0f}x",
            ratio >= goal,
            "" if ratio >= goal else "the device is busy or too small a model to gain",
        ),
        Row("seconds for all images", f"{b['seconds']:.2f}", f"{s['seconds']:.2f}"),
        Row("failed items", str(b["failed"]), str(s["failed"]), goal="0", met=b["failed"] == s["failed"] == 0),
    ]
    notes = (
        f"Model: {m['model']} ({m['family']}); device {m['device']} ({m['dtype']}), torch threads {m['threads']}, "
        f"max_new_tokens {m['max_new_tokens']}, greedy, best of {m['rounds']} interleaved rounds. "
        "Engine level (TransformersEngine.recognize, as the runner calls it), warm-up excluded; "
        "'ocrjobs' is the batched run, 'reference' one image per call." + (" Quick run: few images." if quick else "")
    )
    return "## Batching (transformers engine)\n\n" + goal_table(rows) + "\n\n" + notes + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.batching", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"few images, families {','.join(QUICK)}")
    p.add_argument("--families", help=f"comma-separated, of: {','.join(BUILDERS)} (default: all)")
    p.add_argument("--model", help="one model folder instead of the tiny per-family models")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, help="the batched run's size (default 8 on CPU, 16 on GPU)")
    p.add_argument("--images", type=int, help="how many line images (default 4 batches, 2 with --quick)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else None
    if families and (unknown := [f for f in families if f not in BUILDERS]):
        p.error(f"unknown families: {', '.join(unknown)}; known: {', '.join(BUILDERS)}")
    with tempfile.TemporaryDirectory(prefix="ocrjobs-bench-batching-") as tmp:
        m = measure(
            Path(tmp),
            args.quick,
            args.model,
            args.device,
            args.batch_size,
            args.images,
            args.max_new_tokens,
            args.threads or None,
            families,
        )
    print(report(m, args.quick))
    return 0  # a missed goal is in the table, with its reason; the run itself worked


if __name__ == "__main__":
    raise SystemExit(main())
