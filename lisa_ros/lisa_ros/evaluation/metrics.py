"""gIoU and cIoU of reasoning segmentation, computed as the LISA authors compute them, numpy only.

The numbers follow the authors' evaluation (github.com/dvlab-research/LISA), read in
``train_ds.py`` ``validate()`` and ``utils/utils.py`` ``intersectionAndUnionGPU`` and
``AverageMeter``:

* **Per mask.** ``intersectionAndUnionGPU(output, target, K=2, ignore_index=255)`` first sets the
  prediction to 255 wherever the target is 255, then histograms values in ``[0, 1]``, so ignore
  pixels count in neither the intersection, the prediction nor the target, for either class. The
  authors report class 1 (the object), which is what :func:`intersection_and_union` returns::

      intersection = |pred & target==1|
      union        = |pred & target!=255| + |target==1| - intersection

  A prediction over ignore pixels therefore costs nothing.
* **gIoU.** Each mask scores ``intersection / (union + 1e-5)``, plus 1.0 when ``union == 0``
  (``acc_iou[union_i == 0] += 1.0``, "no-object target": an empty target predicted empty scores
  1.0; an empty target with a non-empty prediction scores 0). A sample with several target masks
  adds ``mean(iou) * n_masks`` to the meter, i.e. every mask weighs the same, and after
  ``all_reduce`` the meter's average is ``sum / (count + 1e-5)``. So::

      giou = sum(per-mask iou) / (count + 1e-5)

  (the ``1e-5`` makes a dataset of perfect empty masks score ``1 / (1 + 1e-5)``, not 1.0; we keep
  it so our numbers are the authors').
* **cIoU.** ``iou_class = intersection_meter.sum / (union_meter.sum + 1e-10)``, class 1::

      ciou = sum(intersection) / (sum(union) + 1e-10)

Differences, on purpose: the authors accumulate in float32 on the GPU; here pixel counts are exact
integers and the per-mask IoU is float64, so our values agree with theirs to float32 rounding
(relative ~1e-7), not bit for bit. The sum of per-mask IoUs is kept exactly (as a
:class:`fractions.Fraction` of the float64 values), so that summing shards in any grouping and
order gives bit-identical metrics: :meth:`SegmentationMetrics.sums` of each shard, added with
``+`` (or :meth:`SegmentationMetrics.merge`), equal one pass over all masks. The authors zip
predictions with targets (silently dropping extras); :meth:`SegmentationMetrics.add_sample`
refuses a count mismatch instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

IGNORE_INDEX = 255
"""Target value of pixels that count for nothing (the authors' ``ignore_index``)."""

IOU_EPS = 1e-5
"""The authors' epsilon in a mask's IoU and in the gIoU average (``AverageMeter.all_reduce``)."""

CIOU_EPS = 1e-10
"""The authors' epsilon in cIoU (``intersection_meter.sum / (union_meter.sum + 1e-10)``)."""


def intersection_and_union(prediction: np.ndarray, target: np.ndarray) -> tuple[int, int]:
    """Intersection and union, in pixels, of the object (class 1) of one mask.

    ``prediction`` is a bool (H, W) mask; ``target`` an (H, W) integer (or bool) mask of 0
    (background), 1 (object) and :data:`IGNORE_INDEX` (ignored). Ignored pixels count in neither
    number, whatever the prediction says there.
    """
    prediction = np.asarray(prediction)
    target = np.asarray(target)
    if prediction.dtype != np.bool_:
        raise TypeError(f"prediction must be a bool mask, not {prediction.dtype}")
    if prediction.ndim != 2 or prediction.shape != target.shape:
        raise ValueError(
            f"prediction {prediction.shape} and target {target.shape} must be the same (H, W)"
        )
    if target.dtype != np.bool_:
        if not np.issubdtype(target.dtype, np.integer):
            raise TypeError(f"target must be an integer mask, not {target.dtype}")
        if not np.isin(target, (0, 1, IGNORE_INDEX)).all():
            raise ValueError(f"target values must be 0, 1 or {IGNORE_INDEX}")
    obj = target == 1
    counted = target != IGNORE_INDEX
    intersection = int(np.count_nonzero(prediction & obj))
    predicted = int(np.count_nonzero(prediction & counted))
    union = predicted + int(np.count_nonzero(obj)) - intersection
    return intersection, union


def mask_iou(intersection: int, union: int) -> float:
    """One mask's IoU by the authors' convention: ``i / (u + 1e-5)``, plus 1.0 when ``u == 0``."""
    iou = intersection / (union + IOU_EPS)
    if union == 0:
        iou += 1.0
    return iou


@dataclass(frozen=True)
class SampleScore:
    """One sample's score for a report: the mean IoU of its masks and their summed pixel counts."""

    name: str
    iou: float
    intersection: int
    union: int


@dataclass(frozen=True)
class MetricSums:
    """Partial sums of a (shard of a) dataset; ``a + b`` is the sums of both, exactly.

    ``iou_sum`` is the exact sum of the per-mask IoUs (each a float64, summed as fractions), so
    the result does not depend on how masks were grouped or ordered. :meth:`to_dict` and
    :meth:`from_dict` carry it through JSON as the string ``"numerator/denominator"``.
    """

    iou_sum: Fraction = Fraction(0)
    count: int = 0
    intersection: int = 0
    union: int = 0

    def __add__(self, other: MetricSums) -> MetricSums:
        if not isinstance(other, MetricSums):
            return NotImplemented
        return MetricSums(
            self.iou_sum + other.iou_sum,
            self.count + other.count,
            self.intersection + other.intersection,
            self.union + other.union,
        )

    @property
    def giou(self) -> float:
        """Per-mask mean IoU: ``sum / (count + 1e-5)``, the authors' meter (0 if none)."""
        return float(self.iou_sum) / (self.count + IOU_EPS)

    @property
    def ciou(self) -> float:
        """Total intersection over total union, ``I / (U + 1e-10)`` (0 if empty)."""
        return self.intersection / (self.union + CIOU_EPS)

    def to_dict(self) -> dict[str, int | str]:
        return {
            "iou_sum": f"{self.iou_sum.numerator}/{self.iou_sum.denominator}",
            "count": self.count,
            "intersection": self.intersection,
            "union": self.union,
        }

    @classmethod
    def from_dict(cls, data: dict) -> MetricSums:
        return cls(
            Fraction(data["iou_sum"]),
            int(data["count"]),
            int(data["intersection"]),
            int(data["union"]),
        )


class SegmentationMetrics:
    """Accumulates gIoU and cIoU over target masks, the authors' way (see the module docstring)."""

    def __init__(self) -> None:
        self._sums = MetricSums()

    def add(self, prediction: np.ndarray, target: np.ndarray) -> tuple[float, int, int]:
        """Scores one predicted mask against its target; returns (iou, intersection, union)."""
        intersection, union = intersection_and_union(prediction, target)
        iou = mask_iou(intersection, union)
        self._sums += MetricSums(Fraction(iou), 1, intersection, union)
        return iou, intersection, union

    def add_sample(
        self,
        name: str,
        predictions: Sequence[np.ndarray] | np.ndarray,
        targets: Sequence[np.ndarray] | np.ndarray,
    ) -> SampleScore:
        """Scores a sample's masks (one prediction per target, in order), each as :meth:`add`.

        The sample's :class:`SampleScore` holds the mean of its masks' IoUs (the authors' per
        sample ``acc_iou / n``) and the sums of their intersections and unions.
        """
        if len(predictions) != len(targets) or len(targets) == 0:
            raise ValueError(
                f"{name}: {len(predictions)} predictions for {len(targets)} targets; "
                "need one per target and at least one"
            )
        ious, intersection, union = [], 0, 0
        for prediction, target in zip(predictions, targets, strict=True):
            iou, i, u = self.add(prediction, target)
            ious.append(iou)
            intersection += i
            union += u
        return SampleScore(name, sum(ious) / len(ious), intersection, union)

    @property
    def count(self) -> int:
        """Number of masks added."""
        return self._sums.count

    @property
    def intersection(self) -> int:
        return self._sums.intersection

    @property
    def union(self) -> int:
        return self._sums.union

    @property
    def giou(self) -> float:
        return self._sums.giou

    @property
    def ciou(self) -> float:
        return self._sums.ciou

    def sums(self) -> MetricSums:
        """The partial sums: add another shard's with ``+``, rebuild with :meth:`from_sums`."""
        return self._sums

    @classmethod
    def from_sums(cls, sums: MetricSums) -> SegmentationMetrics:
        metrics = cls()
        metrics._sums = sums
        return metrics

    def merge(self, other: SegmentationMetrics | MetricSums) -> SegmentationMetrics:
        """Adds another shard's masks to this one (in place); returns self."""
        self._sums += other.sums() if isinstance(other, SegmentationMetrics) else other
        return self
