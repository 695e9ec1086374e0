"""LISA's loss against values computed by hand (torch only, no model)."""

from __future__ import annotations

import math

import pytest
import torch

from lisa_ros.training.losses import (
    LossWeights,
    bce_per_mask,
    dice_per_mask,
    lisa_loss,
)

LN2 = math.log(2.0)


def test_bce_of_an_undecided_mask_is_ln2():
    logits = torch.zeros(1, 2, 2)
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert bce_per_mask(logits, target).item() == pytest.approx(LN2)


def test_bce_by_hand():
    # pixels: logit 2 / target 1 -> log(1 + e^-2); logit -1 / target 1 -> log(1 + e^1);
    # logit 0 / target 0 -> ln 2; logit 3 / target 0 -> log(1 + e^3)
    logits = torch.tensor([[[2.0, -1.0], [0.0, 3.0]]])
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    expected = (
        math.log1p(math.exp(-2)) + math.log1p(math.exp(1)) + LN2 + math.log1p(math.exp(3))
    ) / 4
    assert bce_per_mask(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_dice_by_hand_with_the_authors_scale():
    # p = 0.5 everywhere, 1 target pixel of 2: numerator 2 * 0.5 / 1000 = 1e-3,
    # denominator (0.5 + 0.5) / 1000 + 1 / 1000 = 2e-3
    logits = torch.zeros(1, 1, 2)
    target = torch.tensor([[[1.0, 0.0]]])
    expected = 1 - (1e-3 + 1e-6) / (2e-3 + 1e-6)
    assert dice_per_mask(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_dice_of_a_perfect_confident_mask_is_near_zero_and_of_an_empty_pair_zero():
    target = torch.tensor([[[1.0, 0.0, 1.0]]])
    logits = (target * 2 - 1) * 50  # sigmoid -> exactly the target
    assert dice_per_mask(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    nothing = torch.full((1, 1, 3), -50.0)
    assert dice_per_mask(nothing, torch.zeros(1, 1, 3)).item() == pytest.approx(0.0, abs=1e-6)


def test_ignored_pixels_count_in_neither_mask_loss():
    logits = torch.tensor([[[0.0, 5.0, -7.0]]])
    mask = torch.tensor([[[1, 0, 255]]], dtype=torch.uint8)
    terms = lisa_loss([torch.zeros(1, 3)], [torch.tensor([0])], [logits], [mask])
    # only the first two pixels: BCE (ln 2 + log(1 + e^5)) / 2; Dice on p = (0.5, sigmoid 5)
    assert terms.bce.item() == pytest.approx((LN2 + math.log1p(math.exp(5))) / 2, rel=1e-6)
    p1 = 1 / (1 + math.exp(-5))
    dice = 1 - (2 * 0.5 / 1000 + 1e-6) / ((0.5 + p1) / 1000 + 1 / 1000 + 1e-6)
    assert terms.dice.item() == pytest.approx(dice, rel=1e-5)


def test_lisa_loss_weights_and_normalises_like_the_authors():
    # text: two examples, 3 answer tokens in all, uniform logits over 4 ids -> CE = ln 4
    answer_logits = [torch.zeros(2, 4), torch.zeros(1, 4)]
    answer_ids = [torch.tensor([1, 2]), torch.tensor([3])]
    # masks: the first example has 2 masks, the second 1; all logits 0 -> BCE ln 2 each
    masks = [torch.zeros(2, 2, 2), torch.zeros(1, 2, 2)]
    targets = [torch.ones(2, 2, 2, dtype=torch.uint8), torch.zeros(1, 2, 2, dtype=torch.uint8)]
    terms = lisa_loss(answer_logits, answer_ids, masks, targets, LossWeights())
    dice_full = 1 - (2 * 0.5 * 4 / 1000 + 1e-6) / ((0.5 * 4 + 4) / 1000 + 1e-6)
    dice_empty = 1 - (0 + 1e-6) / (0.5 * 4 / 1000 + 1e-6)
    expected_dice = (2 * dice_full + dice_empty) / (3 + 1e-8)
    assert terms.text.item() == pytest.approx(math.log(4), rel=1e-6)
    assert terms.bce.item() == pytest.approx(3 * LN2 / (3 + 1e-8), rel=1e-6)
    assert terms.dice.item() == pytest.approx(expected_dice, rel=1e-5)
    expected_total = math.log(4) + 2.0 * terms.bce.item() + 0.5 * terms.dice.item()
    assert terms.total.item() == pytest.approx(expected_total, rel=1e-6)
    custom = lisa_loss(answer_logits, answer_ids, masks, targets, LossWeights(0.0, 1.0, 0.0))
    assert custom.total.item() == pytest.approx(terms.bce.item(), rel=1e-6)


def test_a_batch_without_masks_has_zero_mask_losses():
    terms = lisa_loss(
        [torch.zeros(1, 4)],
        [torch.tensor([0])],
        [torch.zeros(0, 3, 3)],
        [torch.zeros(0, 3, 3, dtype=torch.uint8)],
    )
    assert terms.bce.item() == 0.0 and terms.dice.item() == 0.0
    assert terms.total.item() == pytest.approx(math.log(4), rel=1e-6)


def test_mismatched_masks_are_refused():
    with pytest.raises(ValueError, match="mask logits"):
        lisa_loss(
            [torch.zeros(1, 4)],
            [torch.tensor([0])],
            [torch.zeros(1, 3, 3)],
            [torch.zeros(1, 3, 4, dtype=torch.uint8)],
        )
