"""The ROS-free LISA inference core.

    from lisa_ros.model import load_model
    lisa = load_model("xinlai/LISA-7B-v1", precision="bf16")
    result = lisa.segment(rgb_image, "where can I throw away the food scraps?")
    result.text, result.masks  # answer, one bool mask per [SEG]
"""

from .errors import LisaLoadError, LisaOutOfMemoryError
from .lisa import LisaModel
from .loading import build_model, load_model
from .result import SegmentationResult

__all__ = ["LisaLoadError", "LisaOutOfMemoryError", "LisaModel", "SegmentationResult", "build_model", "load_model"]
