"""Tests of lisa_ros.evaluation on small hand-counted masks.

Every expected number is counted by hand from the drawn masks and written with the authors'
formulas (per-mask ``i / (u + 1e-5)`` plus 1.0 when ``u == 0``; gIoU ``sum / (count + 1e-5)``;
cIoU ``I / (U + 1e-10)``), so a change of convention or epsilon fails a test.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lisa_ros.evaluation import (
    IGNORE_INDEX,
    MetricSums,
    SampleScore,
    SegmentationMetrics,
    intersection_and_union,
    mask_iou,
)


def grid(rows: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and target drawn together, one character a pixel.

    ``.`` neither, ``p`` predicted only, ``t`` target only, ``b`` both, ``x`` ignored (not
    predicted), ``X`` ignored and predicted.
    """
    chars = np.array([list(row) for row in rows])
    prediction = np.isin(chars, ["p", "b", "X"])
    target = np.zeros(chars.shape, np.uint8)
    target[np.isin(chars, ["t", "b"])] = 1
    target[np.isin(chars, ["x", "X"])] = IGNORE_INDEX
    return prediction, target


def strip(intersection: int, union: int, width: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A 1-row mask pair with the given intersection and union (target = the first ``union``
    pixels, prediction = the first ``intersection``)."""
    prediction = np.zeros((1, width), bool)
    prediction[0, :intersection] = True
    target = np.zeros((1, width), np.uint8)
    target[0, :union] = 1
    return prediction, target


def test_perfect_mask():
    prediction, target = grid(["....", ".bb.", ".bb.", "...."])
    assert intersection_and_union(prediction, target) == (4, 4)
    metrics = SegmentationMetrics()
    iou, _, _ = metrics.add(prediction, target)
    # The authors' epsilon keeps a perfect mask just under 1.
    assert iou == 4 / (4 + 1e-5)
    assert iou == pytest.approx(1.0, abs=1e-5) and iou < 1.0
    assert metrics.giou == iou / (1 + 1e-5)
    assert metrics.ciou == 4 / (4 + 1e-10)


def test_disjoint_mask():
    prediction, target = grid(["pp..", "pp..", "..tt", "..tt"])
    assert intersection_and_union(prediction, target) == (0, 8)
    metrics = SegmentationMetrics()
    assert metrics.add(prediction, target) == (0.0, 0, 8)
    assert metrics.giou == 0.0 and metrics.ciou == 0.0


def test_partial_overlap():
    # Target: 6 pixels (t + b); prediction: 6 pixels (p + b); both: 2.
    prediction, target = grid(["ttt.", "tbbp", ".ppp", "...."])
    assert intersection_and_union(prediction, target) == (2, 10)
    metrics = SegmentationMetrics()
    iou, _, _ = metrics.add(prediction, target)
    assert iou == 2 / (10 + 1e-5)
    assert iou == pytest.approx(0.2)
    assert metrics.ciou == 2 / (10 + 1e-10)


def test_ignore_pixels_excluded_from_both():
    # The target is the 4 b pixels; a band of ignored pixels, half of it predicted (X).
    prediction, target = grid(["XXxx", ".bb.", ".bb.", "xxxx"])
    assert intersection_and_union(prediction, target) == (4, 4)
    # Without the ignore label the same prediction would add 2 false positives.
    plain = target.copy()
    plain[plain == IGNORE_INDEX] = 0
    assert intersection_and_union(prediction, plain) == (4, 6)
    # Target pixels marked ignored are not missed either.
    prediction, target = grid(["xxxx", ".bb.", ".bb.", "..xx"])
    assert intersection_and_union(prediction, target) == (4, 4)


def test_prediction_only_over_ignore_on_empty_target():
    prediction, target = grid(["XX..", "XX..", "....", "...."])
    assert intersection_and_union(prediction, target) == (0, 0)
    assert mask_iou(0, 0) == 1.0


def test_empty_target_empty_prediction_scores_one():
    prediction, target = grid(["....", "...."])
    metrics = SegmentationMetrics()
    assert metrics.add(prediction, target) == (1.0, 0, 0)
    # The gIoU average keeps the authors' all_reduce epsilon: 1 / (1 + 1e-5).
    assert metrics.giou == 1.0 / (1 + 1e-5)
    # cIoU of nothing over nothing is 0 by the formula.
    assert metrics.ciou == 0.0


def test_empty_target_nonempty_prediction_scores_zero():
    prediction, target = grid(["pp..", "...."])
    metrics = SegmentationMetrics()
    assert metrics.add(prediction, target) == (0.0, 0, 2)
    assert metrics.giou == 0.0


def test_several_targets_in_one_sample():
    perfect = grid(["bb", "bb"])
    disjoint = grid(["pt", "tt"])
    metrics = SegmentationMetrics()
    score = metrics.add_sample(
        "two_objects", [perfect[0], disjoint[0]], np.stack([perfect[1], disjoint[1]])
    )
    assert score == SampleScore("two_objects", (4 / (4 + 1e-5) + 0.0) / 2, 4, 8)
    # Each mask counts once in gIoU, as the authors' meter.update(mean, n=masks) does.
    assert metrics.count == 2
    assert metrics.giou == (4 / (4 + 1e-5) + 0.0) / (2 + 1e-5)
    assert metrics.ciou == 4 / (8 + 1e-10)
    with pytest.raises(ValueError):
        metrics.add_sample("short", [perfect[0]], [perfect[1], disjoint[1]])
    assert metrics.count == 2


def test_ciou_and_giou_differ_on_big_and_small_masks():
    # Big: 100-pixel target, 90 of them predicted. Small: 10-pixel target, 10 pixels predicted
    # beside it.
    big_prediction = np.zeros((10, 10), bool)
    big_prediction[:9] = True
    big_target = np.ones((10, 10), np.uint8)
    small_prediction = np.zeros((2, 10), bool)
    small_prediction[1] = True
    small_target = np.zeros((2, 10), np.uint8)
    small_target[0] = 1
    metrics = SegmentationMetrics()
    assert metrics.add(big_prediction, big_target)[1:] == (90, 100)
    assert metrics.add(small_prediction, small_target)[1:] == (0, 20)
    # gIoU: (0.9 + 0) / 2; cIoU: 90 / 120.
    assert metrics.giou == (90 / (100 + 1e-5) + 0.0) / (2 + 1e-5)
    assert metrics.ciou == 90 / (120 + 1e-10)
    assert metrics.giou == pytest.approx(0.45, abs=1e-5)
    assert metrics.ciou == pytest.approx(0.75, abs=1e-9)


# Per-mask (intersection, union) whose IoUs, summed in float64 in two halves and then added,
# round differently from one sequential sum: exact shard sums are needed to match.
SHARDED = [(18, 19), (7, 29), (2, 6), (11, 39), (6, 25), (5, 21)]


def test_merged_shards_equal_one_pass():
    masks = [strip(i, u) for i, u in SHARDED]
    one_pass = SegmentationMetrics()
    for prediction, target in masks:
        one_pass.add(prediction, target)
    first, second = SegmentationMetrics(), SegmentationMetrics()
    for prediction, target in masks[:3]:
        first.add(prediction, target)
    for prediction, target in masks[3:]:
        second.add(prediction, target)

    # The test has teeth: naive float partial sums would not reproduce one pass.
    ious = [mask_iou(i, u) for i, u in SHARDED]
    sequential = 0.0
    for iou in ious:
        sequential += iou
    assert sum(ious[3:]) + sum(ious[:3]) != sequential

    # Merged in another order, via sums through JSON, and by +: all bit-identical.
    merged = SegmentationMetrics().merge(second).merge(first)
    wire = [json.loads(json.dumps(m.sums().to_dict())) for m in (second, first)]
    rebuilt = SegmentationMetrics.from_sums(
        MetricSums.from_dict(wire[0]) + MetricSums.from_dict(wire[1])
    )
    added = second.sums() + first.sums()
    for other in (merged, rebuilt, SegmentationMetrics.from_sums(added)):
        assert other.count == one_pass.count == 6
        assert other.intersection == one_pass.intersection == 49
        assert other.union == one_pass.union == 139
        assert other.giou == one_pass.giou
        assert other.ciou == one_pass.ciou
    assert one_pass.ciou == 49 / (139 + 1e-10)
    assert one_pass.giou == pytest.approx(sum(i / u for i, u in SHARDED) / 6, rel=1e-5)


def test_matches_authors_histogram_on_random_masks():
    """An independent count in the authors' way: prediction set to 255 on ignored pixels, then
    per-class histograms over values 0 and 1 of the matches, the prediction and the target."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        prediction = rng.random((13, 17)) < 0.4
        target = (rng.random((13, 17)) < 0.3).astype(np.uint8)
        target[rng.random((13, 17)) < 0.15] = IGNORE_INDEX
        output = prediction.astype(np.int64).ravel()
        flat = target.astype(np.int64).ravel()
        output[flat == IGNORE_INDEX] = IGNORE_INDEX

        def histogram(values):
            return np.bincount(values[values <= 1], minlength=2)

        matched = histogram(output[output == flat])
        union = histogram(output) + histogram(flat) - matched
        assert intersection_and_union(prediction, target) == (matched[1], union[1])


def test_rejects_bad_masks():
    prediction, target = grid(["bt", "p."])
    with pytest.raises(TypeError):
        intersection_and_union(prediction.astype(np.uint8), target)
    with pytest.raises(ValueError):
        intersection_and_union(prediction[:1], target)
    with pytest.raises(ValueError):
        intersection_and_union(prediction, target * 2)
    # A bool target is a plain 0/1 mask.
    assert intersection_and_union(prediction, target.astype(bool)) == (1, 3)


def test_empty_metrics_and_torch_free():
    metrics = SegmentationMetrics()
    assert (metrics.count, metrics.giou, metrics.ciou) == (0, 0.0, 0.0)
    code = "import sys, lisa_ros.evaluation; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
