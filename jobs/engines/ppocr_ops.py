"""The array work around the PP-OCR models: resize and normalise, DB boxes from the probability map,
perspective crops, CTC decoding. Plain numpy + OpenCV.

transformers' own PP-OCR image processors need ``torchvision`` (a TorchvisionBackend) and work on
torch tensors; these are their steps on numpy, with the same defaults, reading the same
``preprocessor_config.json`` keys (tests/test_ppocr.py checks the post-processing against theirs).
Detection follows ``PPOCRV5ServerDetImageProcessor`` (resize to a multiple of 32 under ``limit_side_len``,
BGR input, DB post-processing with unclip); recognition follows PaddleOCR's own batching (each crop keeps
its aspect ratio at the model's height and is padded to the batch's widest), since the transformers
processor stretches every crop of a batch to one width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image


@dataclass
class DetSettings:
    limit_side_len: int = 960
    limit_type: str = "max"
    max_side_limit: int = 4000
    mean: tuple[float, ...] = (0.406, 0.456, 0.485)
    std: tuple[float, ...] = (0.225, 0.224, 0.229)
    threshold: float = 0.3  # a pixel is text above this probability
    box_threshold: float = 0.6  # a region is kept when its mean probability is above this
    unclip_ratio: float = 1.5  # how far a shrunk DB region is grown back to the text's extent
    min_size: int = 3
    max_candidates: int = 1000


@dataclass
class RecSettings:
    height: int = 48
    width: int = 320
    max_width: int = 3200
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    bgr: bool = False  # PP-OCRv6 recognisers read BGR (their processor flips the channels)
    characters: list[str] = field(default_factory=list)  # index 0 is the CTC blank


def det_size(height: int, width: int, s: DetSettings) -> tuple[int, int]:
    """The detector's input size for a page: the processor's ``get_image_size`` (multiples of 32)."""
    if s.limit_type == "max":
        ratio = s.limit_side_len / max(height, width) if max(height, width) > s.limit_side_len else 1.0
    elif s.limit_type == "min":
        ratio = s.limit_side_len / min(height, width) if min(height, width) < s.limit_side_len else 1.0
    else:  # resize_long
        ratio = s.limit_side_len / max(height, width)
    h, w = int(height * ratio), int(width * ratio)
    if s.max_side_limit and max(h, w) > s.max_side_limit:
        r = s.max_side_limit / max(h, w)
        h, w = int(h * r), int(w * r)
    return max(round(h / 32) * 32, 32), max(round(w / 32) * 32, 32)


def det_input(rgb: np.ndarray, s: DetSettings) -> np.ndarray:
    """One page as the detector's (3, H, W) float32 input: resized, normalised, channels B, G, R."""
    h, w = det_size(rgb.shape[0], rgb.shape[1], s)
    resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    norm = (resized - np.asarray(s.mean, np.float32)) / np.asarray(s.std, np.float32)
    return np.ascontiguousarray(norm[:, :, ::-1].transpose(2, 0, 1))


def boxes_from_map(prob: np.ndarray, page_w: int, page_h: int, s: DetSettings) -> list[np.ndarray]:
    """DB post-processing: the text regions of one probability map as 4-point boxes (TL, TR, BR, BL)
    in page pixels. A port of the processor's ``post_process_object_detection``."""
    bitmap = (prob > s.threshold).astype(np.uint8) * 255
    found = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    contours = found[1] if len(found) == 3 else found[0]
    sx, sy = page_w / prob.shape[1], page_h / prob.shape[0]
    out = []
    for contour in contours[: s.max_candidates]:
        points, short = _mini_box(contour)
        if short < s.min_size or _box_score(prob, points) < s.box_threshold:
            continue
        grown, short = _mini_box(_unclip(points, s.unclip_ratio).reshape(-1, 1, 2))
        if short < s.min_size + 2:
            continue
        grown[:, 0] = np.clip(np.round(grown[:, 0] * sx), 0, page_w)
        grown[:, 1] = np.clip(np.round(grown[:, 1] * sy), 0, page_h)
        out.append(grown)
    return out


def _mini_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    rect = cv2.minAreaRect(contour)
    pts = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = (pts[0], pts[1]) if pts[1][1] > pts[0][1] else (pts[1], pts[0])  # (top, bottom)
    right = (pts[2], pts[3]) if pts[3][1] > pts[2][1] else (pts[3], pts[2])
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32), min(rect[1])


def _box_score(prob: np.ndarray, box: np.ndarray) -> float:
    h, w = prob.shape
    xmin = int(np.clip(math.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(math.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(math.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(math.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = box - np.array([xmin, ymin], dtype=np.float32)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    """Grow a polygon outwards by area * ratio / perimeter (the processor's ``_unclip``, no pyclipper)."""
    poly = box.reshape(-1, 2).astype(np.float32)
    perimeter = cv2.arcLength(poly, True)
    if perimeter <= 0:
        return poly
    offset = cv2.contourArea(poly) * ratio / perimeter
    x, y = poly[:, 0], poly[:, 1]
    ccw = (x @ np.roll(y, -1) - y @ np.roll(x, -1)) > 0.0
    edges = np.roll(poly, -1, axis=0) - poly
    dirs = edges / np.maximum(np.linalg.norm(edges, axis=1, keepdims=True), 1e-6)
    normals = np.stack([dirs[:, 1], -dirs[:, 0]], 1) if ccw else np.stack([-dirs[:, 1], dirs[:, 0]], 1)
    shifted = poly + offset * normals
    prev_shifted, prev_dirs = np.roll(shifted, 1, axis=0), np.roll(dirs, 1, axis=0)
    cross = prev_dirs[:, 0] * dirs[:, 1] - prev_dirs[:, 1] * dirs[:, 0]
    parallel = np.abs(cross) < 1e-6
    delta = shifted - prev_shifted
    t = (delta[:, 0] * dirs[:, 1] - delta[:, 1] * dirs[:, 0]) / np.where(parallel, 1.0, cross)
    out = prev_shifted + prev_dirs * t[:, None]
    if parallel.any():
        fallback = poly + 0.5 * offset * (np.roll(normals, 1, axis=0) + normals)
        out[parallel] = fallback[parallel]
    return out.astype(np.float32)


def crop(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The region inside a (possibly rotated) 4-point box as an upright strip; a tall one is turned
    90 degrees so vertical text reads along the strip (PaddleOCR's ``get_rotate_crop_image``)."""
    pts = box.astype(np.float32)
    w = int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3])))
    h = int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2])))
    w, h = max(w, 1), max(h, 1)
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(pts, target)
    strip = cv2.warpPerspective(rgb, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if h / w >= 1.5:
        strip = np.rot90(strip)
    return np.ascontiguousarray(strip)


def rec_batch(crops: list[np.ndarray], s: RecSettings) -> np.ndarray:
    """Crops as one (N, 3, height, width) float32 batch: each keeps its aspect ratio, zero-padded right."""
    ratio = max([s.width / s.height] + [c.shape[1] / max(c.shape[0], 1) for c in crops])
    width = min(int(math.ceil(s.height * ratio)), s.max_width)
    out = np.zeros((len(crops), 3, s.height, width), dtype=np.float32)
    mean, std = np.asarray(s.mean, np.float32), np.asarray(s.std, np.float32)
    for i, c in enumerate(crops):
        w = min(width, max(1, int(math.ceil(s.height * c.shape[1] / max(c.shape[0], 1)))))
        im = cv2.resize(c, (w, s.height), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        im = (im - mean) / std
        if s.bgr:
            im = im[:, :, ::-1]
        out[i, :, :, :w] = im.transpose(2, 0, 1)
    return out


def ctc_decode(probs: np.ndarray, characters: list[str]) -> list[tuple[str, float]]:
    """Greedy CTC: the best class per step, repeats collapsed, blanks (0) dropped; the score is the mean
    probability of the kept steps (the processor's ``post_process_text_recognition``)."""
    out = []
    best, score = probs.argmax(-1), probs.max(-1)
    for ids, p in zip(best, score, strict=True):
        keep = np.ones(len(ids), dtype=bool)
        keep[1:] = ids[1:] != ids[:-1]
        keep &= ids != 0
        text = "".join(characters[i] if i < len(characters) else "" for i in ids[keep])
        out.append((text, float(p[keep].mean()) if keep.any() else 0.0))
    return out


def as_rgb(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def settings_from(raw: dict[str, Any], cls: type[Any], keys: dict[str, str]) -> dict[str, Any]:
    """Keyword arguments for ``cls`` from a preprocessor_config.json's values (only those present)."""
    out: dict[str, Any] = {}
    for src, dst in keys.items():
        if src in raw and raw[src] is not None:
            value = raw[src]
            out[dst] = tuple(value) if isinstance(value, list) and dst in ("mean", "std") else value
    return out
