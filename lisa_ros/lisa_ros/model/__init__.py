"""The ROS-free LISA inference core.

    from lisa_ros.model import load_model
    lisa = load_model("xinlai/LISA-7B-v1", precision="bf16")
    result = lisa.segment(rgb_image, "where can I throw away the food scraps?")
    result.text, result.masks  # answer, one bool mask per [SEG]
    followed = lisa.follow(next_frame, result)  # the same targets, SAM only (no CLIP, no LLM)
    follow_drift(result, followed)  # per mask: score, area ratio, box shift -> reason again?
    lisa.segment(rgb_image, question, on_mask=act_on)  # each mask as soon as its [SEG] is written

Where things are: ``lisa.LisaModel``, the predictor (tokenizer, image cache, generation with [SEG]
capture, ``segment``, ``follow``) around ``network.LisaNet``, the ``nn.Module`` that owns LISA's
parts and its differentiable steps (what fine-tuning trains); ``loading`` (``load_model``,
checkpoints, adapters, quantisation); ``teacher_forcing`` (the pass with a given answer that
validation uses); pre-/post-processing, prompts and token layouts in modules of their own.

The package imports lazily (PEP 562, as transformers does): the names below that need torch are
imported when first used, so the torch-free parts (``options``, ``prompt``, ``errors``,
``result``, ``follow_quality``) serve the ROS parameters, the CLIs and the drawing code without
seconds of imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import LisaLoadError, LisaOutOfMemoryError
from .follow_quality import MaskDrift, follow_drift
from .result import SegmentationResult

if TYPE_CHECKING:
    from .lisa import LisaModel, free_device_memory
    from .loading import build_model, load_model
    from .network import LisaNet

__all__ = [
    "LisaLoadError",
    "LisaModel",
    "LisaNet",
    "LisaOutOfMemoryError",
    "MaskDrift",
    "SegmentationResult",
    "build_model",
    "follow_drift",
    "free_device_memory",
    "load_model",
]

# Public name -> the submodule that defines it and imports torch.
_LAZY = {
    "LisaModel": ".lisa",
    "LisaNet": ".network",
    "build_model": ".loading",
    "free_device_memory": ".lisa",
    "load_model": ".loading",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
