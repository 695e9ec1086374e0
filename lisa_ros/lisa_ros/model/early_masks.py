"""Masks handed over while the answer is still being written (`LisaModel.segment(on_mask=...)`).

A robot acts on the mask, not on the prose: an explanatory checkpoint answers "Sure, [SEG]. <a
sentence or two>", so the first target is known tens of tokens before the answer ends. The state
that predicted a [SEG] is final when the [SEG] is generated, so its mask is decoded right then,
and the final result takes these masks as they are instead of decoding them again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .prompt import seg_phrases
from .result import SegmentationResult

MaskCallback = Callable[[SegmentationResult], None]


@dataclass(frozen=True)
class DecodedMask:
    """One [SEG]'s mask, as the result holds it."""

    logits: np.ndarray  # float32 (H, W)
    score: np.float32  # SAM's predicted IoU
    prompt: np.ndarray  # float32 (D,): the sparse prompt it was decoded from


def stack_masks(
    masks: Sequence[DecodedMask], image_hw: tuple[int, int], prompt_dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask logits (N, H, W), scores (N,), prompts (N, D)): a result's mask fields."""
    if not masks:
        return (
            np.zeros((0, *image_hw), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, prompt_dim), np.float32),
        )
    return (
        np.stack([mask.logits for mask in masks]),
        np.array([mask.score for mask in masks], np.float32),
        np.stack([mask.prompt for mask in masks]),
    )


class EarlyMasks:
    """Called with the answer so far at each step that generates a [SEG] (`generation.OnToken`):
    decodes that [SEG]'s mask and hands `on_mask` a result with every mask decoded so far."""

    def __init__(
        self,
        *,
        decode: Callable[[int], DecodedMask],
        answer_text: Callable[[list[int]], str],
        on_mask: MaskCallback,
        elapsed: Callable[[], float],
        image_hw: tuple[int, int],
        prompt_dim: int,
    ) -> None:
        self._decode = decode
        self._answer_text = answer_text
        self._on_mask = on_mask
        self._elapsed = elapsed
        self._image_hw = image_hw
        self._prompt_dim = prompt_dim
        self.masks: dict[int, DecodedMask] = {}
        """The decoded masks by the step that generated their [SEG]."""
        self.first_mask: float | None = None
        """Seconds from the start of `segment` to the first decoded mask."""

    def __call__(self, answer_ids: list[int]) -> None:
        step = len(answer_ids) - 1
        self.masks[step] = self._decode(step)
        elapsed = self._elapsed()
        if self.first_mask is None:
            self.first_mask = elapsed
        self._on_mask(self._partial(answer_ids, elapsed))

    def _partial(self, answer_ids: list[int], elapsed: float) -> SegmentationResult:
        """The answer so far; its timings: "first_mask", and "elapsed" (to this mask)."""
        masks = [self.masks[step] for step in sorted(self.masks)]
        logits, scores, prompts = stack_masks(masks, self._image_hw, self._prompt_dim)
        text = self._answer_text(answer_ids)
        phrases, offsets = seg_phrases(text)
        return SegmentationResult(
            text=text,
            token_ids=list(answer_ids),
            mask_logits=logits,
            scores=scores,
            phrases=phrases[: len(masks)],
            text_offsets=offsets[: len(masks)],
            timings={"first_mask": self.first_mask, "elapsed": elapsed},
            prompts=prompts,
        )
