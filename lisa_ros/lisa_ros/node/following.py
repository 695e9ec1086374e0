"""Following a reasoned answer on newer frames: the target, and when followed masks no longer
stand for the reasoned ones (the follow_* parameters). The job that follows is
:class:`.jobs.FollowJob`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from std_msgs.msg import Header

from lisa_ros.model.follow_quality import MaskDrift
from lisa_ros.model.result import SegmentationResult

__all__ = ["FollowSettings", "FollowTarget"]


@dataclass(frozen=True)
class FollowSettings:
    """When followed masks no longer hold (see the follow_* parameters)."""

    min_score_ratio: float = 0.5  # followed IoU score below this share of the reasoned one
    max_area_change: float = 2.0  # area more than this factor larger or smaller
    max_shift: float = 0.2  # box centre moved by more than this share of the image diagonal

    def problem(self, drifts: Sequence[MaskDrift]) -> str | None:
        """Why the followed masks no longer stand for the reasoned ones, or None."""
        for drift in drifts:
            name = f"mask {drift.index}"
            if drift.lost:
                return f"{name} is lost"
            if drift.score < self.min_score_ratio * drift.reasoned_score:
                return (
                    f"{name}'s predicted IoU fell to {drift.score:.2f} from "
                    f"{drift.reasoned_score:.2f}"
                )
            change = self.max_area_change
            if drift.area_ratio > change or drift.area_ratio * change < 1.0:
                return f"{name}'s area changed {drift.area_ratio:.2f} times"
            if drift.centre_shift > self.max_shift:
                return f"{name} moved by {drift.centre_shift:.0%} of the image diagonal"
        return None


@dataclass(frozen=True)
class FollowTarget:
    """A reasoned answer whose targets are followed on newer frames."""

    result: SegmentationResult
    header: Header  # of the frame LISA reasoned on
    instruction: str
    from_goal: bool
