"""Image pre-processing for LISA's two image paths, bit-compatible with the authors' code.

The LLM sees the image through CLIP's processor (shortest side to 224, centre crop), SAM through
`ResizeLongestSide(1024)` + normalisation on the 0-255 scale + zero padding. Both resize with PIL,
as torchvision does for PIL images in the reference, so the pixels match exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .sam import PIXEL_MEAN, PIXEL_STD


def validate_image(image: np.ndarray) -> None:
    """LISA takes an RGB uint8 HxWx3 array; anything else silently gives wrong colours or shapes."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB with shape (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")


def longest_side_size(height: int, width: int, target: int) -> tuple[int, int]:
    """(h, w), longer side at `target`, rounded as segment-anything's ResizeLongestSide does."""
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_longest_side(image: np.ndarray, target: int) -> np.ndarray:
    height, width = longest_side_size(image.shape[0], image.shape[1], target)
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def sam_input(image: np.ndarray, image_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """SAM's (1, 3, S, S) float32 input and the (h, w) of the resized image inside its padding."""
    resized = resize_longest_side(image, image_size)
    pixels = torch.from_numpy(np.array(resized)).permute(2, 0, 1).float()
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1)
    pixels = (pixels - mean) / std
    height, width = resized.shape[:2]
    padded = F.pad(pixels, (0, image_size - width, 0, image_size - height))
    return padded.unsqueeze(0), (height, width)


def postprocess_masks(
    low_res_logits: torch.Tensor,
    image_size: int,
    resize_hw: tuple[int, int],
    original_hw: tuple[int, int],
) -> torch.Tensor:
    """SAM's upsample -> crop padding -> resize to the original image, in float32."""
    logits = F.interpolate(
        low_res_logits.float(), (image_size, image_size), mode="bilinear", align_corners=False
    )
    logits = logits[..., : resize_hw[0], : resize_hw[1]]
    return F.interpolate(logits, original_hw, mode="bilinear", align_corners=False)
