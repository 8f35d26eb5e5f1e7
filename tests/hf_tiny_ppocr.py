"""Tiny random PP-OCRv5 mobile detection and recognition models, saved like the real ones (no hub).

Built from transformers' config classes with the smallest settings that still build, written with
``save_pretrained`` plus the ``preprocessor_config.json`` the real checkpoints ship (written as JSON:
the image processor classes need torchvision, which a CPU test machine lacks). The recogniser's
backbone uses the real rec strides ((2, 1) downsampling, so a 48-pixel line ends one row high), and its
alphabet is a dozen characters, the blank scored down so that it reads something. The detector's last
layer is set to a constant, so a random detector "sees" one text region covering the page and the
whole pipeline runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Index 0 is the CTC blank, as in PaddleOCR's dictionaries (blank + characters + space).
CHARACTERS = ["blank", *"abcdehilo", " "]

# (kernel, in, out, stride, squeeze-excitation) per block; PP-LCNetV3's rec layout, one block a stage.
REC_BLOCKS = [
    [[3, 16, 32, 1, False]],
    [[3, 32, 64, 1, False]],
    [[3, 64, 128, [2, 1], False]],
    [[3, 128, 256, [1, 2], False]],
    [[5, 256, 512, [2, 1], True], [5, 512, 512, [2, 1], False]],
]


#: The detectors' preprocessor_config.json (v5 and v6 detectors share PPOCRV5ServerDetImageProcessor).
_DET_PREPROCESSOR = {
    "image_processor_type": "PPOCRV5ServerDetImageProcessor",
    "limit_side_len": 960,
    "limit_type": "max",
    "max_side_limit": 4000,
    "image_mean": [0.406, 0.456, 0.485],
    "image_std": [0.225, 0.224, 0.229],
}


def build_det(dest: Path, page_prob: float = 0.73) -> Path:
    """A PP-OCRv5 mobile detector (PP-LCNetV3 at scale 0.25): every pixel scores ``page_prob``."""
    import torch
    from transformers import PPOCRV5MobileDetConfig, PPOCRV5MobileDetForObjectDetection

    torch.manual_seed(0)
    cfg = PPOCRV5MobileDetConfig(
        neck_out_channels=16,
        backbone_config={
            "model_type": "pp_lcnet_v3",
            "scale": 0.25,
            "divisor": 16,
            "out_features": ["stage2", "stage3", "stage4", "stage5"],
            "out_indices": [2, 3, 4, 5],
        },
    )
    return _save_det(PPOCRV5MobileDetForObjectDetection(cfg).eval(), dest, page_prob)


def build_det_v6(dest: Path, page_prob: float = 0.73) -> Path:
    """A PP-OCRv6 small detector (PP-LCNetV4 backbone, 20 k parameters): every pixel scores ``page_prob``.

    transformers' default PP-OCRv6 detector config does not run (its backbone is the recogniser's, one
    output at stride [2, 1], while the neck wants four pyramid levels of other widths), so the backbone
    here gives four levels at strides 4-32 whose widths are the neck's ``layer_list_out_channels``."""
    import torch
    from transformers import PPOCRV6SmallDetConfig, PPOCRV6SmallDetForObjectDetection

    torch.manual_seed(0)
    widths = [16, 24, 32, 48]
    cfg = PPOCRV6SmallDetConfig(
        neck_out_channels=16,
        layer_list_out_channels=widths,
        backbone_config={
            "model_type": "pp_lcnet_v4",
            "stem_channels": [3, 8, 16],
            "block_configs": [
                [[3, 16, 16, 1, False]],
                [[3, 16, 24, 2, False]],
                [[3, 24, 32, 2, True]],
                [[3, 32, 48, 2, False]],
            ],
            "depths": [1, 1, 1, 1],
            "stage_out_channels": widths,
            "out_features": ["stage1", "stage2", "stage3", "stage4"],
            "out_indices": [1, 2, 3, 4],
        },
    )
    return _save_det(PPOCRV6SmallDetForObjectDetection(cfg).eval(), dest, page_prob)


def _save_det(model: Any, dest: Path, page_prob: float) -> Path:
    """Save a detector whose head scores every pixel ``page_prob`` (its last layer: zero weights, that bias)."""
    import torch

    with torch.no_grad():
        final = model.head.conv_final
        final.weight.zero_()
        final.bias.fill_(float(torch.logit(torch.tensor(page_prob))))
    model.save_pretrained(dest)
    _write(dest / "preprocessor_config.json", _DET_PREPROCESSOR)
    return dest


def build_rec(dest: Path) -> Path:
    """A PP-OCRv5 mobile recogniser (1 SVTR block, hidden 16) over :data:`CHARACTERS`."""
    import torch
    from transformers import PPOCRV5MobileRecConfig, PPOCRV5MobileRecForTextRecognition

    torch.manual_seed(0)
    cfg = PPOCRV5MobileRecConfig(
        head_out_channels=len(CHARACTERS),
        hidden_size=16,
        depth=1,
        num_attention_heads=2,
        backbone_config={
            "model_type": "pp_lcnet_v3",
            "scale": 0.25,
            "divisor": 16,
            "block_configs": REC_BLOCKS,
            "out_features": ["stage5"],
        },
    )
    model = PPOCRV5MobileRecForTextRecognition(cfg).eval()
    with torch.no_grad():  # random weights would read blank everywhere: favour characters, so text comes out
        model.head.head.weight.mul_(8.0)
        model.head.head.bias[0] = -4.0
    model.save_pretrained(dest)
    return _rec_processor(dest, "PPOCRV5ServerRecImageProcessor")


def build_rec_v6(dest: Path) -> Path:
    """A PP-OCRv6 tiny recogniser (transformers' default size, ~2.9 M parameters) over :data:`CHARACTERS`.

    Pairs with :func:`build_det_v6` for a whole v6 pipeline."""
    import torch
    from transformers import PPOCRV6TinyRecConfig, PPOCRV6TinyRecForTextRecognition

    torch.manual_seed(0)
    model = PPOCRV6TinyRecForTextRecognition(PPOCRV6TinyRecConfig(head_out_channels=len(CHARACTERS))).eval()
    with torch.no_grad():  # as build_rec: favour characters over the blank
        model.head.fc2.weight.mul_(8.0)
        model.head.fc2.bias[0] = -4.0
    model.save_pretrained(dest)
    return _rec_processor(dest, "PPOCRV6SmallRecImageProcessor")


def _rec_processor(dest: Path, processor_type: str) -> Path:
    """The recogniser's preprocessor_config.json: a 48-pixel line, normalised to [-1, 1], its alphabet."""
    _write(
        dest / "preprocessor_config.json",
        {
            "image_processor_type": processor_type,
            "size": {"height": 48, "width": 320},
            "max_image_width": 3200,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "character_list": CHARACTERS,
        },
    )
    return dest


def _write(path: Path, data: dict[str, object]) -> None:
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
