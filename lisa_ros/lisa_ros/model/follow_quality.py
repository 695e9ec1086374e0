"""How far followed masks have drifted from the reasoned ones: when to ask LISA again.

`LisaModel.follow` re-decodes an answer's [SEG] prompts on each new frame. Nothing re-reads the
scene, so as the view changes the prompts can end up on the wrong thing, on nothing, or on
everything. :func:`follow_drift` compares each followed mask with the mask of the reasoned answer
(the frame LISA reasoned on) and gives the numbers a caller can threshold to decide that it is time
to reason again. Torch-free: it reads two :class:`SegmentationResult` objects only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .result import SegmentationResult

__all__ = ["MaskDrift", "follow_drift"]


@dataclass(frozen=True)
class MaskDrift:
    """One followed mask against its reasoned counterpart (same index, same [SEG] prompt).

    Every field is finite except ``area_ratio`` of a mask that appeared from an empty reasoned one
    (``inf``); no field is NaN, so comparisons with thresholds always mean something.
    """

    index: int
    """Which mask (= which ``[SEG]`` of the answer)."""
    score: float
    """SAM's predicted IoU of the followed mask: its own guess of the mask's quality on the new
    frame (uncalibrated; compare it with ``reasoned_score`` rather than with a fixed number)."""
    reasoned_score: float
    """SAM's predicted IoU of the reasoned mask, for reference."""
    area_ratio: float
    """Followed area / reasoned area: 1 unchanged, < 1 the mask shrinks (target leaving, occluded,
    prompt losing it), > 1 it grows (bleeding into the background). 1 if both are empty, ``inf``
    if only the reasoned one is."""
    centre_shift: float
    """Distance between the centres of the two masks' tight boxes, as a fraction of the image
    diagonal (0: not moved; a target crossing the whole frame diagonally: about 1). 0 if both are
    empty, 1 (the most it can be) if exactly one is."""
    box_iou: float
    """Intersection over union of the two tight boxes, in [0, 1]: 1 same place and size, 0 apart.
    1 if both are empty, 0 if exactly one is."""
    reasoned_area: int
    """Pixels in the reasoned mask."""
    followed_area: int
    """Pixels in the followed mask."""

    @property
    def lost(self) -> bool:
        """The reasoned mask had pixels and the followed one has none."""
        return self.reasoned_area > 0 and self.followed_area == 0


def follow_drift(reasoned: SegmentationResult, followed: SegmentationResult) -> list[MaskDrift]:
    """One :class:`MaskDrift` per mask of `followed` (``LisaModel.follow(frame, reasoned)``) against
    the same mask of `reasoned`. Both must hold the same number of masks on images of one size
    (the camera's); ValueError otherwise."""
    if len(reasoned.mask_logits) != len(followed.mask_logits):
        raise ValueError(
            f"followed has {len(followed.mask_logits)} mask(s) and reasoned "
            f"{len(reasoned.mask_logits)}: it is not a follow of this answer"
        )
    if reasoned.mask_logits.shape[1:] != followed.mask_logits.shape[1:]:
        raise ValueError(
            f"the frames differ in size ({reasoned.mask_logits.shape[1:]} reasoned, "
            f"{followed.mask_logits.shape[1:]} followed): box shifts would not compare"
        )
    diagonal = math.hypot(*followed.mask_logits.shape[1:])
    before_boxes, after_boxes = reasoned.boxes(), followed.boxes()
    before_areas, after_areas = reasoned.areas(), followed.areas()
    drifts = []
    for index in range(len(followed.mask_logits)):
        before, after = int(before_areas[index]), int(after_areas[index])
        shift, iou = _box_change(
            before_boxes[index] if before else None, after_boxes[index] if after else None, diagonal
        )
        drifts.append(
            MaskDrift(
                index=index,
                score=float(followed.scores[index]),
                reasoned_score=float(reasoned.scores[index]),
                area_ratio=_ratio(after, before),
                centre_shift=shift,
                box_iou=iou,
                reasoned_area=before,
                followed_area=after,
            )
        )
    return drifts


def _ratio(after: int, before: int) -> float:
    if before:
        return after / before
    return 1.0 if after == 0 else math.inf


def _box_change(
    before: np.ndarray | None, after: np.ndarray | None, diagonal: float
) -> tuple[float, float]:
    """(centre distance as a fraction of `diagonal`, box IoU) of two (x, y, w, h) boxes; None
    stands for an empty mask's (no box)."""
    if before is None or after is None:
        return (0.0, 1.0) if before is None and after is None else (1.0, 0.0)
    bx, by, bw, bh = (float(v) for v in before)
    ax, ay, aw, ah = (float(v) for v in after)
    shift = math.hypot((ax + aw / 2) - (bx + bw / 2), (ay + ah / 2) - (by + bh / 2))
    overlap_w = max(0.0, min(bx + bw, ax + aw) - max(bx, ax))
    overlap_h = max(0.0, min(by + bh, ay + ah) - max(by, ay))
    overlap = overlap_w * overlap_h
    return shift / diagonal, overlap / (bw * bh + aw * ah - overlap)
