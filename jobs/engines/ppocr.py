"""The ``ppocr`` engine: PaddleOCR's classic detect -> crop -> recognise pipeline on transformers'
PP-OCRv5/v6 models (torch), so a GPU runs the fast line pipeline too. Same result shape as ``rapid``.

Options: ``det_model`` and ``rec_model`` (folders saved with ``save_pretrained``, e.g.
PaddlePaddle/PP-OCRv5_server_det_safetensors and ..._rec_safetensors), ``device`` (auto, cpu, cuda),
``batch_size`` (crops per recogniser call), and the detector's ``det_limit_side_len``, ``det_threshold``,
``box_threshold``, ``unclip_ratio``; ``text_score`` drops lines read with a lower confidence.
Submit reads only the two folders' JSON files: no weights are loaded there.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from jobs.engines.base import Engine, runner_threads
from jobs.engines.hf import StoppedError
from jobs.errors import EngineError

log = logging.getLogger(__name__)

DET_TYPES = ("pp_ocrv5_mobile_det", "pp_ocrv5_server_det", "pp_ocrv6_medium_det", "pp_ocrv6_small_det")
REC_TYPES = ("pp_ocrv5_mobile_rec", "pp_ocrv5_server_rec", "pp_ocrv6_small_rec", "pp_ocrv6_tiny_rec")
#: Options that set a DetSettings field. ``lang`` is accepted (and ignored) for symmetry with the other engines.
FLOATS = {"det_threshold": "threshold", "box_threshold": "box_threshold", "unclip_ratio": "unclip_ratio"}
KNOWN = {"det_model", "rec_model", "device", "batch_size", "det_limit_side_len", "text_score", "lang", *FLOATS}
#: Pages per recognize() call (the detector batches pages of one size) and crops per recogniser call.
PAGES = {"cpu": 4, "cuda": 16}
CROPS = {"cpu": 16, "cuda": 64}


class PPOCREngine(Engine):
    name = "ppocr"
    #: Gets the runner's GPU plan (one worker per GPU); as a built-in it is listed in sizing.GPU_ENGINES.
    uses_gpu = True

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> None:
        """Refuse at submit what can never run: unknown options, bad values, folders that are not a
        PP-OCR detector / recogniser. Reads JSON files only."""
        unknown = sorted(set(options) - KNOWN)
        if unknown:
            raise EngineError(f"ppocr: unknown option(s) {', '.join(unknown)}; it takes {', '.join(sorted(KNOWN))}")
        device = str(options.get("device", "auto")).lower()
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise EngineError(f"engine option device must be auto, cpu or cuda, got {device!r}")
        for key in FLOATS:
            if key in options:
                _number(options, key, 0.0, 10.0 if key == "unclip_ratio" else 1.0)
        if "text_score" in options:
            _number(options, "text_score", 0.0, 1.0)
        for key in ("batch_size", "det_limit_side_len"):
            if key in options:
                _whole(options, key, 32 if key == "det_limit_side_len" else 1)
        check_folder(options, "det_model")
        rec = check_folder(options, "rec_model")
        _characters(rec, Path(str(options["rec_model"])).expanduser())

    def load(self, device: str = "auto") -> None:
        import torch
        from transformers import AutoModelForObjectDetection, AutoModelForTextRecognition

        from jobs.engines import hf_load, ppocr_ops

        self.validate_options(self.options)
        opts = self.options
        asked = str(opts.get("device", "auto"))
        self.device = hf_load.pick_device(asked if asked != "auto" else device)
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        if kind == "cpu" and (threads := runner_threads()):
            torch.set_num_threads(threads)
        det_dir, rec_dir = (Path(str(opts[k])).expanduser() for k in ("det_model", "rec_model"))
        rec_cfg = _read_json(rec_dir / "config.json")
        self.det_settings = ppocr_ops.DetSettings(**_det_overrides(det_dir, opts))
        self.rec_settings = _rec_settings(rec_dir, rec_cfg)
        # fp32 everywhere: the models are small, and the DB thresholds were tuned on fp32 probability maps.
        kw: dict[str, Any] = {"local_files_only": True, "dtype": torch.float32}
        try:
            self.det_model = AutoModelForObjectDetection.from_pretrained(str(det_dir), **kw).to(self.device).eval()
            self.rec_model = AutoModelForTextRecognition.from_pretrained(str(rec_dir), **kw).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise EngineError(f"ppocr: the models cannot be loaded: {' '.join(str(e).split())[:300]}") from None
        self.max_batch = PAGES[kind]
        self.crop_batch = int(opts.get("batch_size", CROPS[kind]))
        self.min_score = float(opts.get("text_score", 0.0))
        log.info("ppocr: det %s, rec %s on %s", det_dir, rec_dir, self.device)

    def close(self) -> None:
        from jobs.engines import hf_memory

        self.det_model = self.rec_model = None
        hf_memory.empty_cache()

    # -- recognition ------------------------------------------------------------------------
    def recognize(self, images: list[Image.Image]) -> list[Any]:
        """Detect on every page (pages of one size in one batch), recognise all their lines together
        (crops batched across pages), then compose each page in reading order."""
        from jobs.engines import ppocr_ops
        from jobs.engines.rapid import compose

        pages = [ppocr_ops.as_rgb(im) for im in images]
        out: list[Any] = [None] * len(pages)
        boxes = self._detect(pages, out)
        crops = [(i, box, ppocr_ops.crop(pages[i], box)) for i, page_boxes in boxes.items() for box in page_boxes]
        lines: dict[int, list[dict[str, Any]]] = {i: [] for i in boxes}
        for (i, box, _), read in zip(crops, self._read([c for _, _, c in crops]), strict=True):
            if read is None:
                out[i] = StoppedError("stopped before recognition: the task ran out of time")
                lines.pop(i, None)
            elif i in lines and read[0].strip() and read[1] >= self.min_score:
                pts = [[float(x), float(y)] for x, y in box]
                lines[i].append({"box": pts, "text": read[0].strip(), "confidence": round(read[1], 4)})
        for i, found in lines.items():
            rec = compose(found)
            out[i] = {"text": rec.text, "confidence": rec.confidence, "boxes": rec.boxes, "device": self.device}
        return out

    def _detect(self, pages: list[np.ndarray], out: list[Any]) -> dict[int, list[np.ndarray]]:
        """Boxes per page index; a page stopped before detection gets a StoppedError in ``out``."""

        from jobs.engines import ppocr_ops

        s = self.det_settings
        groups: dict[tuple[int, int], list[int]] = {}
        for i, page in enumerate(pages):
            groups.setdefault(ppocr_ops.det_size(page.shape[0], page.shape[1], s), []).append(i)
        found: dict[int, list[np.ndarray]] = {}
        for members in groups.values():
            for start in range(0, len(members), self.max_batch):
                chunk = members[start : start + self.max_batch]
                if self.stop_requested():
                    for i in chunk:
                        out[i] = StoppedError("stopped before detection: the task ran out of time")
                    continue
                maps = self._forward(self.det_model, np.stack([ppocr_ops.det_input(pages[i], s) for i in chunk]))
                for i, prob in zip(chunk, maps[:, 0], strict=True):
                    found[i] = ppocr_ops.boxes_from_map(prob, pages[i].shape[1], pages[i].shape[0], s)
        return found

    def _read(self, crops: list[np.ndarray]) -> list[tuple[str, float] | None]:
        """(text, score) per crop; None for crops left unread because the runner asked to stop. Crops
        are read in order of aspect ratio so that a batch pads little (as PaddleOCR does)."""

        from jobs.engines import ppocr_ops

        order = sorted(range(len(crops)), key=lambda k: crops[k].shape[1] / max(crops[k].shape[0], 1))
        reads: list[tuple[str, float] | None] = [None] * len(crops)
        for start in range(0, len(order), self.crop_batch):
            if self.stop_requested():
                break
            chunk = order[start : start + self.crop_batch]
            probs = self._forward(self.rec_model, ppocr_ops.rec_batch([crops[k] for k in chunk], self.rec_settings))
            for k, read in zip(chunk, ppocr_ops.ctc_decode(probs, self.rec_settings.characters), strict=True):
                reads[k] = read
        return reads

    def _forward(self, model: Any, batch: np.ndarray) -> np.ndarray:
        """The model's output for a batch, as float32 on the host. Out of GPU memory, the batch is split
        in halves (down to one input, whose OOM is raised: the runner then retries items one by one)."""
        import torch

        from jobs.engines import hf_memory

        try:
            with torch.inference_mode():
                return (
                    model(pixel_values=torch.from_numpy(batch).to(self.device)).last_hidden_state.float().cpu().numpy()
                )
        except Exception as e:
            if len(batch) == 1 or not hf_memory.is_oom(e):
                raise
        hf_memory.empty_cache()  # outside the except: its traceback no longer pins the batch's tensors
        log.warning("ppocr: CUDA out of memory at %d inputs; splitting the batch", len(batch))
        half = len(batch) // 2
        return np.concatenate([self._forward(model, batch[:half]), self._forward(model, batch[half:])])


def check_folder(options: dict[str, Any], key: str) -> dict[str, Any]:
    """The folder's config.json, which must name a PP-OCR model of the right kind; EngineError otherwise."""
    kinds = DET_TYPES if key == "det_model" else REC_TYPES
    role = "detection" if key == "det_model" else "recognition"
    raw = options.get(key)
    if not isinstance(raw, str) or not raw.strip():
        raise EngineError(f"the ppocr engine needs {key}: --engine-option {key}=FOLDER (a PP-OCR {role} model)")
    folder = Path(raw.strip()).expanduser()
    if not folder.is_dir():
        raise EngineError(f"ppocr {key} folder {raw} does not exist")
    if not (folder / "config.json").is_file():
        raise EngineError(f"ppocr {key} folder {raw} has no config.json (save it with save_pretrained)")
    cfg = _read_json(folder / "config.json")
    model_type = cfg.get("model_type")
    if model_type not in kinds:
        swapped = model_type in (REC_TYPES if key == "det_model" else DET_TYPES)
        what = f"a PP-OCR {'recognition' if key == 'det_model' else 'detection'} model" if swapped else "a model"
        raise EngineError(
            f"ppocr {key} {raw} is {what} ({model_type!r}), not a PP-OCR {role} model; "
            f"{key} must be one of: {', '.join(kinds)}"
        )
    return cfg


def _characters(rec_cfg: dict[str, Any], folder: Path) -> list[str]:
    """The recogniser's alphabet (``character_list`` in preprocessor_config.json, blank first)."""
    chars = _processor(folder).get("character_list")
    if not isinstance(chars, list) or not chars or not all(isinstance(c, str) for c in chars):
        raise EngineError(
            f"ppocr rec_model folder {folder} has no character_list in preprocessor_config.json: "
            "the recogniser's characters are unknown"
        )
    classes = rec_cfg.get("head_out_channels")
    if isinstance(classes, int) and len(chars) < classes:
        raise EngineError(
            f"ppocr rec_model folder {folder}: preprocessor_config.json lists {len(chars)} characters "
            f"but the model scores {classes} classes"
        )
    return chars


def _processor(folder: Path) -> dict[str, Any]:
    path = folder / "preprocessor_config.json"
    return _read_json(path) if path.is_file() else {}


def _det_overrides(folder: Path, opts: dict[str, Any]) -> dict[str, Any]:
    from jobs.engines import ppocr_ops

    keys = {k: k for k in ("limit_side_len", "limit_type", "max_side_limit")} | {"image_mean": "mean"}
    out = ppocr_ops.settings_from(_processor(folder), ppocr_ops.DetSettings, keys | {"image_std": "std"})
    if "det_limit_side_len" in opts:
        out["limit_side_len"] = int(opts["det_limit_side_len"])
    out.update({field: float(opts[key]) for key, field in FLOATS.items() if key in opts})
    return out


def _rec_settings(folder: Path, rec_cfg: dict[str, Any]) -> Any:
    """Input size, normalisation and alphabet of the recogniser, from its preprocessor_config.json."""
    from jobs.engines import ppocr_ops

    raw = _processor(folder)
    keys = {"max_image_width": "max_width", "image_mean": "mean", "image_std": "std"}
    kw = ppocr_ops.settings_from(raw, ppocr_ops.RecSettings, keys)
    size = raw.get("size")
    if isinstance(size, dict) and isinstance(size.get("height"), int) and isinstance(size.get("width"), int):
        kw.update(height=size["height"], width=size["width"])
    # PP-OCRv6 recognisers read BGR: their processor flips the channels, v5's does not.
    bgr = str(rec_cfg.get("model_type", "")).startswith("pp_ocrv6")
    return ppocr_ops.RecSettings(**kw, bgr=bgr, characters=_characters(rec_cfg, folder))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EngineError(f"{path} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise EngineError(f"{path} is not a JSON object")
    return data


def _number(options: dict[str, Any], key: str, low: float, high: float) -> None:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise EngineError(f"engine option {key} must be a number from {low:g} to {high:g}, got {value!r}")


def _whole(options: dict[str, Any], key: str, low: int) -> None:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise EngineError(f"engine option {key} must be a whole number >= {low}, got {value!r}")
