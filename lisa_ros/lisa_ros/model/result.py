"""What one LISA answer is made of: text, generated ids, one mask per [SEG], timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass
class SegmentationResult:
    text: str
    """The answer only, `[SEG]` tokens included (no prompt, no `</s>`)."""
    token_ids: list[int]
    """The generated ids in order, EOS included when generation ended on it."""
    mask_logits: np.ndarray
    """float32 (N, H, W) at the image's size, one per `[SEG]` in the answer."""
    scores: np.ndarray
    """float32 (N,): SAM's predicted IoU of each mask (uncalibrated; useful for ranking)."""
    phrases: list[str] = field(default_factory=list)
    """Per mask: the answer's words between the previous `[SEG]` (or its start) and this one."""
    text_offsets: list[int] = field(default_factory=list)
    """Per mask: character offset of its `[SEG]` in `text`."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: clip, sam_encoder, prefill, decode, mask_decoder, total (and more)."""

    @cached_property
    def masks(self) -> np.ndarray:
        """bool (N, H, W): a pixel belongs to a mask where its logit is positive, as in LISA.

        Computed once: boxes, areas, label image, overlay and mask messages all read it.
        """
        return self.mask_logits > 0

    def areas(self) -> np.ndarray:
        """int64 (N,): pixels in each mask."""
        return self.masks.sum(axis=(1, 2))

    def boxes(self) -> np.ndarray:
        """int64 (N, 4): x, y, width, height of each mask's tight box (zeros for an empty mask)."""
        boxes = np.zeros((len(self.mask_logits), 4), dtype=np.int64)
        for index, mask in enumerate(self.masks):
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            if rows.size:
                boxes[index] = (cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
        return boxes
