"""A SegmentationResult built by hand, as the core builds one, for the tests of what is made of it
(unit/test_mask_record.py: its mask records; graph/test_node_outputs.py: the node's messages).
"""

from __future__ import annotations

import numpy as np

from lisa_ros.model.result import SegmentationResult

TEXT = "Sure, the mug [SEG] and the kettle [SEG] ."


def two_masks() -> SegmentationResult:
    logits = np.full((2, 6, 8), -1.0, np.float32)
    logits[0, 1:3, 2:5] = 1.0  # 2 x 3 at (2, 1)
    logits[1, 4:6, 0:8] = 1.0  # 2 x 8 at (0, 4)
    return SegmentationResult(
        text=TEXT,
        token_ids=[1, 2, 3],
        mask_logits=logits,
        scores=np.array([0.9123456789, 0.25], np.float32),
        phrases=["Sure, the mug", "and the kettle"],
        text_offsets=[TEXT.index("[SEG]"), TEXT.rindex("[SEG]")],
        timings={"total": 0.5},
    )
