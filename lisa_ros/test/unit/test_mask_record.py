"""One record per mask: what SegmentationResult guarantees, and result.json's mask entries.

ROS-free and model-free: results are built by hand, as the core builds them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hand_made_results import TEXT, two_masks

from lisa_ros.cli.files import result_record
from lisa_ros.model.result import MaskRecord, SegmentationResult
from lisa_ros.visualization import mask_colors


@pytest.mark.parametrize("field", ["scores", "phrases", "text_offsets"])
def test_a_result_holds_one_score_phrase_and_offset_per_mask(field):
    full = two_masks()
    with pytest.raises(ValueError, match=f"one entry of {field} per mask: 1 for 2 mask"):
        replace(full, **{field: getattr(full, field)[:1]})


def test_mask_records_describe_each_mask():
    result = two_masks()
    assert result.mask_records() == [
        MaskRecord(0, "Sure, the mug", 14, (2, 1, 3, 2), 6, float(np.float32(0.9123456789))),
        MaskRecord(1, "and the kettle", 35, (0, 4, 8, 2), 16, 0.25),
    ]
    np.testing.assert_array_equal(result.areas(), result.masks.reshape(2, -1).sum(axis=1))


def test_boxes_are_tight_around_scattered_pixels_and_zero_for_an_empty_mask():
    logits = np.full((3, 5, 7), -1.0, np.float32)
    logits[0, 0, 3] = logits[0, 4, 6] = logits[0, 2, 4] = 1.0  # three pixels, corner included
    logits[2] = 1.0  # the whole image
    result = SegmentationResult(
        "[SEG] [SEG] [SEG]", [1], logits, np.zeros(3, np.float32), ["", "", ""], [0, 6, 12]
    )
    np.testing.assert_array_equal(result.boxes(), [(3, 0, 4, 5), (0, 0, 0, 0), (0, 0, 7, 5)])
    single = SegmentationResult("[SEG]", [1], np.ones((1, 1, 1), np.float32), np.ones(1), [""], [0])
    np.testing.assert_array_equal(single.boxes(), [(0, 0, 1, 1)])


def test_an_answer_without_masks_has_no_records():
    nothing = np.zeros((0, 6, 8), np.float32)
    empty = SegmentationResult("I cannot see it.", [4], nothing, np.zeros(0, np.float32))
    assert empty.mask_records() == [] and empty.areas().shape == (0,)


def test_result_json_describes_each_mask_with_its_file_and_colour():
    result = two_masks()
    record = result_record({"model": "tiny"}, result.text, result.mask_records(), result.timings)

    assert list(record) == ["model", "text", "masks", "timings_s"]
    assert record["text"] == TEXT and record["timings_s"] == {"total": 0.5}
    first, second = record["masks"]
    assert first == {
        "index": 0,
        "file": "mask_0.png",
        "phrase": "Sure, the mug",
        "text_offset": 14,
        "bbox_xywh": [2, 1, 3, 2],
        "area_px": 6,
        "score": 0.9123457,  # the float32's shortest decimal, as both CLIs write it
        "overlay_color_rgb": mask_colors(2)[0].tolist(),
    }
    assert second["file"] == "mask_1.png"
    assert second["overlay_color_rgb"] == mask_colors(2)[1].tolist()
    assert np.float32(first["score"]) == result.scores[0]
