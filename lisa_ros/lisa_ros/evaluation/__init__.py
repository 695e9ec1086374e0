"""Evaluation of reasoning segmentation as the LISA authors evaluate it.

The metrics (:mod:`.metrics`: gIoU and cIoU, numpy only, re-exported here) and the runner that puts
a dataset through the model and writes the report (:mod:`.runner`: the engine of ``lisa-eval`` and
of ``lisa-finetune``'s held-out evaluation).
"""

from .metrics import (
    IGNORE_INDEX,
    MetricSums,
    SampleScore,
    SegmentationMetrics,
    intersection_and_union,
    mask_iou,
)

__all__ = [
    "IGNORE_INDEX",
    "MetricSums",
    "SampleScore",
    "SegmentationMetrics",
    "intersection_and_union",
    "mask_iou",
]
