"""LISA's training loss: text cross-entropy + 2.0 x per-mask BCE + 0.5 x per-mask Dice.

As in the authors' `model/LISA.py`: the text loss is the mean cross-entropy over every answer
token of the batch; BCE (mean over a mask's pixels) and Dice (with their scale 1000 and eps 1e-6)
are computed per mask, summed over the batch's masks and divided by their number.

One addition: pixels a dataset marks as ignored (255) count in neither mask loss, as they count in
neither metric. With no ignored pixel the values are the authors' exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .settings import LossWeights

DICE_SCALE = 1000.0
DICE_EPS = 1e-6
MASK_COUNT_EPS = 1e-8
IGNORE = 255


@dataclass
class LossTerms:
    """The weighted total (what is optimised) and its unweighted parts (what is reported)."""

    total: torch.Tensor
    text: torch.Tensor
    bce: torch.Tensor
    dice: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {
            name: float(getattr(self, name).detach()) for name in ("total", "text", "bce", "dice")
        }


def split_target(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, valid) as 0/1 floats from a dataset mask: 0 background, 1 target, 255 ignored."""
    return (mask == 1).float(), (mask != IGNORE).float()


def bce_per_mask(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """(N,) mean binary cross-entropy over each mask's (valid) pixels."""
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1)
    if valid is None:
        return loss.mean(1)
    valid = valid.flatten(1)
    return (loss * valid).sum(1) / valid.sum(1).clamp_min(1.0)


def dice_per_mask(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """(N,) the authors' Dice loss of each mask: 1 - (2 p.t + eps) / (sum p + sum t + eps), on
    values divided by 1000 (their scale, which makes eps matter only for nearly empty masks)."""
    probs = logits.sigmoid().flatten(1)
    target = target.flatten(1)
    if valid is not None:
        valid = valid.flatten(1)
        probs, target = probs * valid, target * valid
    numerator = 2 * (probs / DICE_SCALE * target).sum(-1)
    denominator = (probs / DICE_SCALE).sum(-1) + (target / DICE_SCALE).sum(-1)
    return 1 - (numerator + DICE_EPS) / (denominator + DICE_EPS)


def lisa_loss(
    answer_logits: Sequence[torch.Tensor],
    answer_ids: Sequence[torch.Tensor],
    mask_logits: Sequence[torch.Tensor],
    mask_targets: Sequence[torch.Tensor],
    weights: LossWeights | None = None,
) -> LossTerms:
    """The loss of a batch, one entry per example in each sequence.

    answer_logits[i] (A_i, V) predict answer_ids[i] (A_i,); mask_logits[i] (N_i, H_i, W_i) are
    compared with mask_targets[i] (N_i, H_i, W_i) in the dataset convention (0, 1, 255 ignored).
    An example may have no mask (N_i = 0); a batch without any mask has zero mask losses.
    """
    text = F.cross_entropy(torch.cat(list(answer_logits)), torch.cat(list(answer_ids)))
    bce_sum = text.new_zeros(())
    dice_sum = text.new_zeros(())
    count = 0
    for logits, mask in zip(mask_logits, mask_targets, strict=True):
        if logits.shape != mask.shape:
            raise ValueError(f"mask logits {tuple(logits.shape)} vs targets {tuple(mask.shape)}")
        if not len(logits):
            continue
        target, valid = split_target(mask)
        logits = logits.float()
        bce_sum = bce_sum + bce_per_mask(logits, target, valid).sum()
        dice_sum = dice_sum + dice_per_mask(logits, target, valid).sum()
        count += len(logits)
    bce = bce_sum / (count + MASK_COUNT_EPS)
    dice = dice_sum / (count + MASK_COUNT_EPS)
    weights = weights or LossWeights()
    total = weights.text * text + weights.bce * bce + weights.dice * dice
    return LossTerms(total=total, text=text, bce=bce, dice=dice)
