"""What one LISA answer is made of: text, generated ids, one mask per [SEG], timings.

Torch-free, like the rest of what callers keep of an answer: ``lisa-ask`` reads
:class:`MaskRecord` from here without loading the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

__all__ = ["MaskRecord", "SegmentationResult"]


@dataclass(frozen=True)
class MaskRecord:
    """What one mask is and where it came from, without its pixels.

    The one description of a mask: ``result.json`` of ``lisa-segment`` and ``lisa-ask`` and the
    ROS message ``lisa_ros_interfaces/MaskInfo`` all carry these fields, so a consumer of any of
    them reads the same facts under the same meaning.
    """

    index: int
    """Which ``[SEG]`` of the answer produced the mask (0-based); also its place in the result."""
    phrase: str
    """The answer's words between the previous ``[SEG]`` (or its start) and this one."""
    text_offset: int
    """Character offset of this mask's ``[SEG]`` in the answer."""
    bbox_xywh: tuple[int, int, int, int]
    """x, y, width, height of the mask's tight box in image pixels (zeros for an empty mask)."""
    area_px: int
    """Pixels in the mask."""
    score: float
    """SAM's predicted IoU, a float32 value (uncalibrated; useful for ranking)."""


@dataclass
class SegmentationResult:
    """One answer on one image. ``scores``, ``phrases`` and ``text_offsets`` hold one entry per
    mask (checked on construction), so callers index them by mask without length checks."""

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
    prompts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    """float32 (N, D), D = SAM's prompt dimension (256 in LISA): each mask's ``[SEG]`` state after
    ``text_hidden_fcs``, the very sparse prompt SAM's mask decoder was given for it. What
    ``LisaModel.follow`` decodes against a new frame, without CLIP or the LLM. Empty (0, 0) in a
    result built without the model (then it cannot be followed)."""

    def __post_init__(self) -> None:
        count = len(self.mask_logits)
        for name in ("scores", "phrases", "text_offsets"):
            if len(getattr(self, name)) != count:
                raise ValueError(
                    f"a SegmentationResult needs one entry of {name} per mask: "
                    f"{len(getattr(self, name))} for {count} mask(s)"
                )
        prompts = self.prompts
        if prompts.ndim != 2 or len(prompts) not in (0, count):
            raise ValueError(
                "a SegmentationResult's prompts are (N, D), one row per mask, or empty: "
                f"got shape {prompts.shape} for {count} mask(s)"
            )

    @property
    def followable(self) -> bool:
        """Whether ``LisaModel.follow`` can segment these targets in another frame: the result
        holds its prompts (one per mask), or has no mask at all."""
        return len(self.prompts) == len(self.mask_logits)

    @cached_property
    def masks(self) -> np.ndarray:
        """bool (N, H, W): a pixel belongs to a mask where its logit is positive, as in LISA.

        Computed once: boxes, areas, label image, overlay and mask messages all read it.
        """
        return self.mask_logits > 0

    def areas(self) -> np.ndarray:
        """int64 (N,): pixels in each mask."""
        # Mask by mask: count_nonzero over a whole (N, H, W) stack is several times slower.
        return np.array([np.count_nonzero(mask) for mask in self.masks], dtype=np.int64)

    def boxes(self) -> np.ndarray:
        """int64 (N, 4): x, y, width, height of each mask's tight box (zeros for an empty mask)."""
        # OpenCV scans a mask once, row by row: numpy's any(axis=0) over columns cost 0.15 ms a
        # 1280x720 mask, cv2.boundingRect 0.01.
        boxes = np.zeros((len(self.mask_logits), 4), dtype=np.int64)
        for index, mask in enumerate(self.masks):
            boxes[index] = cv2.boundingRect(mask.view(np.uint8))
        return boxes

    def mask_records(self) -> list[MaskRecord]:
        """One :class:`MaskRecord` per mask, in order: what the CLIs save and the node publishes."""
        boxes, areas = self.boxes(), self.areas()
        return [
            MaskRecord(
                index=index,
                phrase=self.phrases[index],
                text_offset=int(self.text_offsets[index]),
                bbox_xywh=(int(x), int(y), int(width), int(height)),
                area_px=int(areas[index]),
                score=float(np.float32(self.scores[index])),
            )
            for index, (x, y, width, height) in enumerate(boxes)
        ]
