"""The transformers engine's batch sizing and grouping: an OOM shrinks the batch without freezing it for
good, and images of similar size share a batch while results keep the caller's order."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image, ImageDraw

from jobs.engines.hf import TransformersEngine
from jobs.engines.hf_batching import BatchSizer, by_size
from tests.hf_tiny import build_ved


def test_an_oom_sets_a_ceiling_and_long_calm_lifts_it() -> None:
    s = BatchSizer(size=4, cap=32, auto=True)
    assert [s.grown(s.size, room=True) for _ in range(3)] == [8, 16, 32]
    assert s.shrink(32) and (s.size, s.ceiling) == (16, 31)
    assert s.grown(16, room=True) == 31  # grows again, but not back into the size that failed
    for _ in range(s.regrow_after):
        s.grown(s.size, room=True)
    assert (s.ceiling, s.size) == (0, 32)  # after a long calm the failed size is tried again
    assert s.shrink(32) and s.regrow_after == 32  # a second OOM: twice the wait before the next try


def test_a_set_batch_size_never_grows_and_one_image_cannot_shrink() -> None:
    s = BatchSizer(size=3, cap=3, auto=False)
    assert s.grown(3, room=True) == 3
    assert not s.shrink(1) and s.ooms == 1


def test_by_size_groups_similar_images() -> None:
    sizes = [(800, 600), (40, 20), (820, 600), (42, 20)]
    ims = [Image.new("RGB", wh) for wh in sizes]
    assert by_size(ims) == [1, 3, 0, 2]


@pytest.fixture(scope="module")
def ved(tmp_path_factory: pytest.TempPathFactory) -> TransformersEngine:
    e = TransformersEngine(model=str(build_ved(tmp_path_factory.mktemp("ved") / "m")), max_new_tokens=6, batch_size=2)
    e.load("cpu")
    return e


def _line(w: int, h: int, text: str) -> Image.Image:
    im = Image.new("RGB", (w, h), "white")
    ImageDraw.Draw(im).text((2, 2), text, fill="black")
    return im


def test_mixed_sizes_are_batched_by_size_and_answered_in_order(ved: TransformersEngine) -> None:
    ims = [_line(400, 60, "big a"), _line(60, 20, "s a"), _line(410, 60, "big b"), _line(62, 20, "s b")]
    chunks: list[list[tuple[int, int]]] = []
    real = ved._run

    def run(chunk: list[Any]) -> list[Any]:
        chunks.append([im.size for im in chunk])
        return real(chunk)

    ved._run = run  # type: ignore[method-assign]
    try:
        out = ved.recognize(ims)
    finally:
        del ved._run
    assert chunks == [[(60, 20), (62, 20)], [(400, 60), (410, 60)]]
    single = [ved.recognize([im])[0]["text"] for im in ims]
    assert [r["text"] for r in out] == single


def test_batches_prepared_on_another_thread_are_used_once(ved: TransformersEngine) -> None:
    """prepare() (the worker's prefetch thread) runs the processor ahead; recognize() then only generates,
    with the same results as without it, and nothing prepared is left behind."""
    import threading

    ims = [_line(96 + 8 * i, 24, f"line {i}") for i in range(4)]
    plain = [r["text"] for r in ved.recognize(ims)]
    calls: list[str] = []
    real = ved.loaded.processor.__class__.__call__

    def counting(self: Any, *a: Any, **kw: Any) -> Any:
        calls.append(threading.current_thread().name)
        return real(self, *a, **kw)

    type(ved.loaded.processor).__call__ = counting  # type: ignore[method-assign]
    try:
        t = threading.Thread(target=ved.prepare, args=(ims,), name="prefetch")
        t.start()
        t.join()
        hits = ved.prepared.hits
        out = [r["text"] for r in ved.recognize(ims)]
    finally:
        type(ved.loaded.processor).__call__ = real  # type: ignore[method-assign]
    assert out == plain
    assert calls == ["prefetch", "prefetch"] and ved.prepared.hits - hits == 2  # 4 images at batch 2
    assert ved.prepared._batches == []
