"""How many images the transformers engine generates for at once, and which images go together.

Auto sizing starts small and doubles while the last batch's memory peak fits again. An out-of-memory
halves the batch and sets a ceiling just under the size that failed, so growth does not walk straight
back into it; after a run of good batches the ceiling is lifted (memory another process held may have
come back), and each new OOM makes that wait twice as long. One OOM never freezes the size for good.

Images of similar size are batched together: a dynamic-resolution model (Qwen-VL, PaddleOCR-VL,
DeepSeek-OCR tiles) pads every image of a batch to the largest one's token count, so mixing a
thumbnail with a full page wastes most of the batch on padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Good batches under a ceiling before it is lifted again (doubles with every OOM, up to the cap below).
REGROW_AFTER = 16
REGROW_CAP = 1024


@dataclass
class BatchSizer:
    size: int  # the sub-batch the next generate gets
    cap: int  # the engine's max_batch
    auto: bool  # grow by itself (batch_size "auto"), or keep what the job set
    ooms: int = 0
    ceiling: int = 0  # the largest size believed to fit; 0: the cap
    calm: int = 0  # good batches since the last OOM
    regrow_after: int = REGROW_AFTER

    def shrink(self, failed: int) -> bool:
        """An OOM at ``failed`` images: halve and remember; False when it failed at one image already."""
        self.ooms += 1
        self.calm = 0
        if self.ooms > 1:
            self.regrow_after = min(self.regrow_after * 2, REGROW_CAP)
        if failed <= 1:
            return False
        self.ceiling = failed - 1
        self.size = (failed + 1) // 2
        return True

    def grown(self, ran: int, room: bool) -> int:
        """After a good batch of ``ran`` images: the next size (doubling only a full batch, and only with ``room``)."""
        self.calm += 1
        if self.ceiling and self.calm >= self.regrow_after:
            self.ceiling = 0  # long calm since the OOM: try above it again
        limit = min(self.cap, self.ceiling or self.cap)
        if self.auto and ran == self.size and self.size < limit and room:
            self.size = min(self.size * 2, limit)
        return self.size


def by_size(images: list[Any]) -> list[int]:
    """Indices of ``images`` ordered by pixel count (then aspect), so neighbours pad little; stable."""
    return sorted(range(len(images)), key=lambda i: (images[i].width * images[i].height, images[i].width))
