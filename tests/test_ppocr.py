"""The ppocr engine (transformers' PP-OCR det + rec) on tiny random models (CPU, no hub): loading, DB boxes
and CTC text from forced model outputs, a job through the real CLI and runner, refusals at submit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from jobs.engines import ppocr_ops
from jobs.engines.hf import StoppedError
from jobs.engines.ppocr import DET_TYPES, REC_TYPES, PPOCREngine
from jobs.errors import SubmitError
from jobs.intake.submit import JobSpec
from tests.conftest import Runners, cli, cli_json
from tests.hf_tiny_ppocr import CHARACTERS, build_det, build_rec


@pytest.fixture(scope="session")
def tiny_ppocr(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ppocr-models")
    return {"det": build_det(root / "det"), "rec": build_rec(root / "rec")}


@pytest.fixture(scope="module")
def loaded(tiny_ppocr: dict[str, Path]) -> Iterator[PPOCREngine]:
    e = PPOCREngine(det_model=str(tiny_ppocr["det"]), rec_model=str(tiny_ppocr["rec"]), device="cpu")
    e.load("auto")
    yield e
    e.close()


def test_loads_through_the_real_loader_and_batches_pages_of_any_size(loaded: PPOCREngine) -> None:
    assert loaded.device == "cpu" and loaded.max_batch == 4
    assert loaded.det_model.config.model_type == "pp_ocrv5_mobile_det"
    assert loaded.rec_model.config.model_type == "pp_ocrv5_mobile_rec"
    assert loaded.rec_settings.characters == CHARACTERS and not loaded.rec_settings.bgr
    sizes = [(200, 60), (120, 90), (200, 60)]
    results = loaded.recognize([Image.new("RGB", size, "white") for size in sizes])
    assert len(results) == 3
    for (w, h), res in zip(sizes, results, strict=True):
        # the tiny detector scores every pixel 0.73: one region, the whole page, in page pixels
        assert [b["box"] for b in res["boxes"]] == [[[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]]], res
        assert res["text"] == res["boxes"][0]["text"] and set(res["text"]) <= set(CHARACTERS[1:]) and res["text"]
        assert 0 < res["confidence"] <= 1 and res["device"] == "cpu"


# The page: three coloured blocks on white; the forced detector map marks them at half the page's scale.
BLOCKS = {  # colour: (map rows, map cols), the text the forced recogniser reads for that colour
    "blue": ((9, 19), (10, 60), "ab"),
    "red": ((8, 18), (90, 150), "hello"),
    "green": ((50, 62), (10, 120), "bad"),
}
RGB = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255)}


def _forced_det(pixel_values: torch.Tensor) -> Any:
    assert tuple(pixel_values.shape[2:]) == (96, 160), "a 320x192 page at det_limit_side_len 160: half size"
    prob = torch.zeros(pixel_values.shape[0], 1, 96, 160)
    for (r0, r1), (c0, c1), _ in BLOCKS.values():
        prob[:, :, r0:r1, c0:c1] = 0.9
    return SimpleNamespace(last_hidden_state=prob)


def _forced_rec(pixel_values: torch.Tensor) -> Any:
    """One-hot CTC steps spelling the text of the crop's colour, with repeats and a blank between 'l's."""
    probs = torch.full((pixel_values.shape[0], 16, len(CHARACTERS)), 0.01)
    probs[:, :, 0] = 0.9
    for n, crop in enumerate(pixel_values):
        colour = ("red", "green", "blue")[int(crop.mean(dim=(1, 2)).argmax())]
        steps, previous = [0], ""
        for ch in BLOCKS[colour][2]:
            steps += ([0] if ch == previous else []) + [CHARACTERS.index(ch)] * 2
            previous = ch
        for t, idx in enumerate(steps):
            probs[n, t, :] = 0.01
            probs[n, t, idx] = 0.9
    return SimpleNamespace(last_hidden_state=probs)


def test_forced_outputs_give_boxes_in_page_pixels_and_text_in_reading_order(
    loaded: PPOCREngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = Image.new("RGB", (320, 192), "white")
    draw = ImageDraw.Draw(page)
    for colour, ((r0, r1), (c0, c1), _) in BLOCKS.items():
        draw.rectangle([2 * c0, 2 * r0, 2 * c1 - 1, 2 * r1 - 1], fill=RGB[colour])
    monkeypatch.setattr(loaded, "det_model", _forced_det)
    monkeypatch.setattr(loaded, "rec_model", _forced_rec)
    monkeypatch.setattr(loaded.det_settings, "limit_side_len", 160)
    (res,) = loaded.recognize([page])
    assert res["text"] == "ab hello\nbad"  # blue and red share a line (left to right), green is below
    assert [b["text"] for b in res["boxes"]] == ["ab", "hello", "bad"]
    assert res["confidence"] == pytest.approx(0.9) and all(b["confidence"] == 0.9 for b in res["boxes"])
    for box, ((r0, r1), (c0, c1), _) in zip(res["boxes"], [BLOCKS[c] for c in ("blue", "red", "green")], strict=True):
        (x0, y0), (x1, y1) = box["box"][0], box["box"][2]
        assert box["box"] == [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]  # upright blocks: TL, TR, BR, BL
        # the block in page pixels (x2), grown by DB's unclip by a few pixels on each side
        assert 2 * c0 - 16 <= x0 <= 2 * c0 and 2 * c1 <= x1 <= 2 * c1 + 16, box
        assert 2 * r0 - 16 <= y0 <= 2 * r0 and 2 * r1 <= y1 <= 2 * r1 + 16, box


def test_a_soft_stop_ends_the_call_early(loaded: PPOCREngine) -> None:
    pages = [Image.new("RGB", (120, 40), "white")] * 2
    for after, stage in ((0, "detection"), (1, "recognition")):  # polls before each det and each rec batch
        polls = iter(range(100))
        loaded.set_stop_check(lambda after=after, polls=polls: next(polls) >= after)
        try:
            results = loaded.recognize(pages)
        finally:
            loaded.set_stop_check(lambda: False)
        assert [type(r) for r in results] == [StoppedError, StoppedError]
        assert str(results[0]) == f"stopped before {stage}: the task ran out of time"


def test_out_of_memory_splits_the_batch(loaded: PPOCREngine, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = loaded.rec_model

    def rec(pixel_values: torch.Tensor) -> Any:
        sizes.append(len(pixel_values))
        if len(pixel_values) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(pixel_values=pixel_values)

    monkeypatch.setattr(loaded, "rec_model", rec)
    monkeypatch.setattr(loaded, "crop_batch", 5)
    crops = [np.full((30, 60 + 10 * k, 3), 255, np.uint8) for k in range(5)]
    reads = loaded._read(crops)
    assert sizes == [5, 2, 3, 1, 2] and all(r is not None and r[0] for r in reads)
    monkeypatch.setattr(loaded, "rec_model", lambda pixel_values: (_ for _ in ()).throw(ValueError("broken")))
    with pytest.raises(ValueError, match="broken"):  # anything else is the engine's error, not split
        loaded._read(crops)


def test_gpu_plan_and_version_pinning_cover_ppocr(tiny_ppocr: dict[str, Path], tmp_path: Path) -> None:
    from jobs.runner import pinning, sizing

    assert sizing.job_wants_gpu({"engine": "ppocr"}, "auto")
    assert not sizing.job_wants_gpu({"engine": "ppocr", "engine_options": {"device": "cpu"}}, "auto")
    rec = tmp_path / "rec"
    rec.mkdir()
    for f in tiny_ppocr["rec"].iterdir():
        (rec / f.name).write_bytes(f.read_bytes())
    options = {"det_model": str(tiny_ppocr["det"]), "rec_model": str(rec)}
    before = pinning.engine_identity("ppocr", options)
    assert before["det_model"]["model_sha256"] and before["rec_model"]["model_sha256"]
    (rec / "config.json").write_text((rec / "config.json").read_text().replace('"depth": 1', '"depth": 2'))
    after = pinning.engine_identity("ppocr", options)
    assert after["det_model"] == before["det_model"] and after["rec_model"] != before["rec_model"]


def test_a_rotated_region_is_cropped_upright() -> None:
    page = np.full((200, 200, 3), 255, np.uint8)
    corners = np.array([[60, 40], [150, 130], [130, 150], [40, 60]], np.float32)  # a 127 x 28 bar at 45 degrees
    import cv2

    cv2.fillPoly(page, [corners.astype(np.int32)], (0, 0, 0))
    strip = ppocr_ops.crop(page, corners)
    assert strip.shape[:2] == (28, 127)
    assert strip[4:-4, 4:-4].mean() < 40  # the bar fills the strip: it was straightened, not boxed
    tall = ppocr_ops.crop(page, np.array([[0, 0], [20, 0], [20, 90], [0, 90]], np.float32))
    assert tall.shape[:2] == (20, 90)  # vertical text is turned to read along the strip


def test_a_job_through_the_cli_and_a_real_runner(
    tiny_ppocr: dict[str, Path], state: Path, tmp_path: Path, runners: Runners
) -> None:
    pngs = []
    for i, size in enumerate([(160, 48), (96, 64), (160, 48)]):
        im = Image.new("RGB", size, "white")
        ImageDraw.Draw(im).text((4, 8), f"line {i}", fill="black")
        im.save(tmp_path / f"p{i}.png")
        pngs.append(str(tmp_path / f"p{i}.png"))
    options = [f"det_model={tiny_ppocr['det']}", f"rec_model={tiny_ppocr['rec']}", "batch_size=2"]
    job = cli_json(state, "submit", *pngs, "--engine", "ppocr", *[a for o in options for a in ("--engine-option", o)])
    spec = json.loads((state / "jobs" / job["id"] / "job.json").read_text())["spec"]
    assert spec["engine"] == "ppocr"
    assert spec["engine_options"] == {
        "det_model": str(tiny_ppocr["det"]),
        "rec_model": str(tiny_ppocr["rec"]),
        "batch_size": 2,
    }
    runners.run_once(state, "--device", "cpu", "--workers", "1", timeout=180)
    shown = cli_json(state, "show", job["id"])
    assert shown["status"] == "succeeded", shown
    results = [json.loads(p.read_text()) for p in sorted((state / "jobs" / job["id"] / "results").glob("*.json"))]
    assert len(results) == 3
    for res in results:
        assert res["status"] == "done" and res["device"] == "cpu", res
        assert isinstance(res["text"], str) and len(res["boxes"]) == 1, res
        assert len(res["boxes"][0]["box"]) == 4 and res["text"] == res["boxes"][0]["text"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rec_model": "REC"}, "the ppocr engine needs det_model: --engine-option det_model=FOLDER"),
        ({"det_model": "DET", "rec_model": "NOPE"}, "ppocr rec_model folder NOPE does not exist"),
        (
            {"det_model": "REC", "rec_model": "REC"},
            "ppocr det_model REC is a PP-OCR recognition model ('pp_ocrv5_mobile_rec'), not a PP-OCR detection "
            f"model; det_model must be one of: {', '.join(DET_TYPES)}",
        ),
        ({"det_model": "DET", "rec_model": "BARE"}, "has no character_list in preprocessor_config.json"),
        ({"det_model": "DET", "rec_model": "REC", "box_thresh": 0.5}, "ppocr: unknown option(s) box_thresh; it takes"),
        ({"det_model": "DET", "rec_model": "REC", "unclip_ratio": "big"}, "unclip_ratio must be a number from 0 to 10"),
    ],
)
def test_submit_refuses_what_cannot_run(
    tiny_ppocr: dict[str, Path], tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((tiny_ppocr["rec"] / "config.json").read_text())
    where = {
        "DET": str(tiny_ppocr["det"]),
        "REC": str(tiny_ppocr["rec"]),
        "BARE": str(bare),
        "NOPE": str(tmp_path / "nope"),
    }
    options = {k: where.get(v, v) if isinstance(v, str) else v for k, v in options.items()}
    for name, path in where.items():
        message = message.replace(f" {name} ", f" {path} ")
    with pytest.raises(SubmitError) as info:
        JobSpec(engine="ppocr", engine_options=options).validate()
    assert message in str(info.value)


def test_cli_refuses_a_detector_given_as_the_recogniser(
    tiny_ppocr: dict[str, Path], state: Path, tmp_path: Path
) -> None:
    png = tmp_path / "a.png"
    Image.new("RGB", (64, 32), "white").save(png)
    det = str(tiny_ppocr["det"])
    proc = cli(
        state,
        "submit",
        str(png),
        "--engine",
        "ppocr",
        "--engine-option",
        f"det_model={det}",
        "--engine-option",
        f"rec_model={det}",
        check=False,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == (
        f"error: ppocr rec_model {det} is a PP-OCR detection model ('pp_ocrv5_mobile_det'), not a PP-OCR recognition "
        f"model; rec_model must be one of: {', '.join(REC_TYPES)}"
    )
    assert cli_json(state, "list") == []


def test_the_port_matches_transformers_post_processing() -> None:
    import cv2
    from transformers.models.pp_ocrv5_server_det import image_processing_pp_ocrv5_server_det as upstream_det
    from transformers.models.pp_ocrv5_server_rec import image_processing_pp_ocrv5_server_rec as upstream_rec

    det = upstream_det.PPOCRV5ServerDetImageProcessor()
    rng = np.random.default_rng(0)
    boxes = 0
    for _ in range(60):  # upright and rotated blobs of random scores, on noise, for random page sizes
        prob = rng.uniform(0, 0.2, (64, 96)).astype(np.float32)
        for _ in range(rng.integers(1, 5)):
            r, c = rng.integers(0, 59), rng.integers(0, 91)
            prob[r : r + rng.integers(3, 20), c : c + rng.integers(3, 60)] += rng.uniform(0.4, 0.8)
        rect = (
            (rng.uniform(20, 70), rng.uniform(15, 50)),
            (rng.uniform(10, 50), rng.uniform(4, 12)),
            rng.uniform(-60, 60),
        )
        cv2.fillPoly(prob, [cv2.boxPoints(rect).astype(np.int32)], float(rng.uniform(0.5, 1)))
        w, h = int(rng.integers(50, 400)), int(rng.integers(50, 400))
        theirs, _ = det._boxes_from_bitmap(prob, prob > 0.3, w, h, 0.6, 1.5, 3, 1000)
        ours = ppocr_ops.boxes_from_map(prob, w, h, ppocr_ops.DetSettings())
        assert np.array(ours).reshape(-1, 4, 2).tolist() == theirs.reshape(-1, 4, 2).astype(float).tolist()
        boxes += len(ours)
    assert boxes > 60
    rec = upstream_rec.PPOCRV5ServerRecImageProcessor()
    rec.character_list = CHARACTERS
    probs = torch.softmax(torch.from_numpy(rng.normal(0, 3, (8, 20, len(CHARACTERS))).astype(np.float32)), -1)
    theirs = rec.post_process_text_recognition(SimpleNamespace(last_hidden_state=probs))
    ours = ppocr_ops.ctc_decode(probs.numpy(), CHARACTERS)
    assert [t for t, _ in ours] == [r["text"] for r in theirs] and any(t for t, _ in ours)
    assert [s for _, s in ours] == pytest.approx([r["score"] for r in theirs])


def test_a_pp_ocrv6_pipeline_runs_and_its_recogniser_reads_crops_as_bgr(tmp_path: Path) -> None:
    """PP-OCRv6 recognisers were trained on BGR (their processor flips the channels; v5's does not)."""
    import numpy as np

    from jobs.engines import ppocr_ops
    from tests.hf_tiny_ppocr import build_det_v6, build_rec_v6

    det, rec = build_det_v6(tmp_path / "det6"), build_rec_v6(tmp_path / "rec6")
    v6 = PPOCREngine(det_model=str(det), rec_model=str(rec), device="cpu")
    v6.load("auto")
    try:
        assert v6.det_model.config.model_type == "pp_ocrv6_small_det"
        im = Image.new("RGB", (160, 48), "white")
        ImageDraw.Draw(im).text((4, 8), "line 1", fill="black")
        (out,) = v6.recognize([im])
        assert [b["box"] for b in out["boxes"]] == [[[0.0, 0.0], [160.0, 0.0], [160.0, 48.0], [0.0, 48.0]]], out
        assert out["text"] and set(out["text"]) <= set("abcdehilo ") and out["boxes"], out
        settings = v6.rec_settings
        assert settings.bgr
        red = np.zeros((48, 96, 3), np.uint8)
        red[:, :, 0] = 255  # pure red, as RGB
        batch = ppocr_ops.rec_batch([red], settings)
        assert batch[0, 2, 0, 0] > batch[0, 0, 0, 0]  # red is the last channel the model sees: BGR
    finally:
        v6.close()
