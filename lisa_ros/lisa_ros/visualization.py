"""Drawing LISA results: masks blended over the image, their outlines, and the answer text.

ROS-free (numpy + OpenCV only) so that ``lisa-segment``, the ROS node and ``lisa-ask`` draw the
same picture. Everything works on whole arrays: the node calls :func:`draw_overlay` for every
published frame, so the cost must stay at a few milliseconds for 640x480 and 1280x720 images.

Mask ``k`` is always drawn in ``mask_colors(k + 1)[k]``, and each ``[SEG]`` in the answer text
is written in the colour of the mask it produced, so a reader can tell which words belong to
which region.
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["SEG_TOKEN", "draw_overlay", "label_image", "mask_colors"]

SEG_TOKEN = "[SEG]"

# Hand-picked, clearly distinct colours (RGB) for the first masks; LISA answers rarely hold more.
# Further masks get hues spaced by the golden angle, which keeps neighbours apart for any count.
_PALETTE = np.array(
    [
        (255, 56, 56),  # red
        (50, 205, 50),  # green
        (30, 144, 255),  # blue
        (255, 200, 0),  # yellow
        (200, 60, 255),  # purple
        (0, 220, 220),  # cyan
        (255, 120, 0),  # orange
        (255, 105, 180),  # pink
        (140, 255, 120),  # light green
        (120, 120, 255),  # periwinkle
        (170, 110, 40),  # brown
        (0, 128, 128),  # teal
    ],
    dtype=np.uint8,
)
_GOLDEN_RATIO_CONJUGATE = 0.618033988749895

_TEXT_COLOR = (255, 255, 255)
_UNMATCHED_SEG_COLOR = (160, 160, 160)  # a [SEG] without a mask (e.g. a truncated answer)
_BAND_DARKENING = 0.3  # the text band keeps this fraction of the image's brightness
_MAX_TEXT_FRACTION = 0.4  # the text band never covers more than this share of the image height
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MIN_TEXT_IMAGE_SIZE = 32  # below this (pixels, either side) no legible text fits: none is drawn


def mask_colors(n: int) -> np.ndarray:
    """Return ``(n, 3)`` uint8 RGB colours, one per mask; colour ``k`` never depends on ``n``."""
    if n < 0:
        raise ValueError(f"the number of colours must be >= 0, got {n}")
    colors = np.empty((n, 3), dtype=np.uint8)
    fixed = min(n, len(_PALETTE))
    colors[:fixed] = _PALETTE[:fixed]
    for k in range(fixed, n):
        hue = ((k - len(_PALETTE)) * _GOLDEN_RATIO_CONJUGATE + 0.05) % 1.0
        value = 1.0 if (k // 2) % 2 == 0 else 0.8  # alternate brightness to separate close hues
        colors[k] = np.round(np.array(colorsys.hsv_to_rgb(hue, 0.85, value)) * 255)
    return colors


def label_image(masks: np.ndarray) -> np.ndarray:
    """Flatten ``(N, H, W)`` bool masks into an ``(H, W)`` uint8 label image.

    0 is background and ``k`` (1-based) marks mask ``k - 1``; where masks overlap, the later mask
    wins, as it does in the overlay. This is the ``mono8`` label image the ROS node publishes.
    """
    masks = _check_masks(masks)
    if masks.shape[0] > 255:
        raise ValueError(f"a uint8 label image holds at most 255 masks, got {masks.shape[0]}")
    # Mask k-1 contributes k where it is set; the maximum over masks is then the latest mask
    # covering each pixel. One pass over the stack: indexing mask by mask cost ~10x more.
    numbers = np.arange(1, masks.shape[0] + 1, dtype=np.uint8)[:, None, None]
    return (numbers * masks.view(np.uint8)).max(axis=0, initial=0)


def draw_overlay(
    image_rgb: np.ndarray,
    masks: np.ndarray,
    text: str,
    *,
    alpha: float = 0.5,
    draw_text: bool = True,
) -> np.ndarray:
    """Draw ``masks`` over ``image_rgb`` in distinct colours, with outlines and the answer text.

    Args:
        image_rgb: ``(H, W, 3)`` uint8 RGB image; it is not modified.
        masks: ``(N, H, W)`` bool masks (``N`` may be 0); later masks are drawn over earlier ones.
        text: the answer; each ``[SEG]`` in it is written in the colour of its mask.
        alpha: opacity of the mask colour inside a mask (0: invisible, 1: opaque).
        draw_text: write ``text`` on a dark band at the bottom of the image. Skipped for images
            too small to hold a legible line.

    Returns:
        A new ``(H, W, 3)`` uint8 RGB image. Pixels outside the masks and outside the text band
        keep their values: outlines are drawn on the inner side of each mask's border.
    """
    image_rgb = _check_image(image_rgb)
    masks = _check_masks(masks)
    if masks.shape[1:] != image_rgb.shape[:2]:
        raise ValueError(
            f"masks of size {masks.shape[1:]} do not match the image size {image_rgb.shape[:2]}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha}")

    overlay = image_rgb.copy()
    if masks.shape[0] > 0:
        _blend_masks(overlay, label_image(masks), mask_colors(masks.shape[0]), alpha)
    if draw_text and text:
        _draw_text_band(overlay, text, mask_colors(masks.shape[0]))
    return overlay


# --- masks -----------------------------------------------------------------------------------


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an RGB uint8 image of shape (H, W, 3), got {image.dtype} {image.shape}"
        )
    if 0 in image.shape[:2]:
        raise ValueError(f"the image is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


def _check_masks(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected masks of shape (N, H, W), got shape {masks.shape}")
    if masks.dtype != np.bool_:
        raise ValueError(
            f"expected bool masks, got {masks.dtype}: threshold mask logits first (logits > 0)"
        )
    return masks


def _outline_thickness(height: int, width: int) -> int:
    return max(1, round(min(height, width) / 360))


def _blend_masks(canvas: np.ndarray, labels: np.ndarray, colors: np.ndarray, alpha: float) -> None:
    """Blend each label's colour into ``canvas`` in place and draw each region's inner outline."""
    lut = np.zeros((1, 256, 3), dtype=np.uint8)
    lut[0, 1 : len(colors) + 1] = colors
    color_layer = cv2.LUT(cv2.merge([labels, labels, labels]), lut)
    blended = cv2.addWeighted(canvas, 1.0 - alpha, color_layer, alpha, 0.0)
    inside = labels > 0
    cv2.copyTo(blended, inside.view(np.uint8), canvas)  # in place; much faster than np.copyto

    # A pixel is on an outline when a differing label lies within `thickness` pixels. Erosion and
    # dilation treat the image border as neutral, so masks touching the border are not outlined
    # there, and only pixels inside a mask change.
    thickness = _outline_thickness(*labels.shape)
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), dtype=np.uint8)
    outline = (cv2.erode(labels, kernel) != labels) | (cv2.dilate(labels, kernel) != labels)
    outline &= inside
    cv2.copyTo(color_layer, outline.view(np.uint8), canvas)


# --- text ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Word:
    text: str
    color: tuple[int, int, int]
    width: int
    space_before: bool = True  # False for a piece glued to the previous one, as in "[SEG]."


@dataclass(frozen=True)
class _Font:
    scale: float
    thickness: int
    line_height: int
    baseline: int
    space_width: int
    margin: int


def _font_for(height: int, width: int) -> _Font:
    """Pick a font size readable at the image's size (about 1/30 of the shorter side per line)."""
    scale = max(0.4, min(height, width) / 800)
    thickness = max(1, round(scale * 1.5))
    (_, text_height), baseline = cv2.getTextSize("Ag", _FONT, scale, thickness)
    space_width = cv2.getTextSize(" ", _FONT, scale, thickness)[0][0]
    margin = max(2, text_height // 2)
    return _Font(scale, thickness, text_height + baseline + margin // 2, baseline, space_width, margin)


def _printable(text: str) -> str:
    """Hershey fonts draw ASCII only: show anything else as '?' rather than garbage."""
    return "".join(c if " " <= c <= "~" or c == "\n" else "?" for c in text)


def _words(text: str, colors: np.ndarray, font: _Font) -> list[list[_Word]]:
    """Split the answer into paragraphs of words; the k-th ``[SEG]`` takes mask k's colour."""
    paragraphs: list[list[_Word]] = []
    seg_index = 0
    for paragraph in _printable(text).split("\n"):
        words: list[_Word] = []
        for token in paragraph.split():
            # Keep "[SEG]" apart from glued punctuation ("[SEG]." -> "[SEG]", ".").
            pieces = [piece for piece in re.split(r"(\[SEG\])", token) if piece]
            for position, piece in enumerate(pieces):
                if piece == SEG_TOKEN:
                    color = (
                        tuple(int(c) for c in colors[seg_index])
                        if seg_index < len(colors)
                        else _UNMATCHED_SEG_COLOR
                    )
                    seg_index += 1
                else:
                    color = _TEXT_COLOR
                width = cv2.getTextSize(piece, _FONT, font.scale, font.thickness)[0][0]
                words.append(_Word(piece, color, width, space_before=position == 0))
        paragraphs.append(words)
    return paragraphs


def _wrap(paragraphs: list[list[_Word]], max_width: int, font: _Font) -> list[list[tuple[int, _Word]]]:
    """Greedy line filling; returns lines of (x offset, word). Words wider than a line are cut."""
    lines: list[list[tuple[int, _Word]]] = []
    for words in paragraphs:
        line: list[tuple[int, _Word]] = []
        x = 0
        for word in words:
            gap = font.space_width if line and word.space_before else 0
            if line and x + gap + word.width > max_width:
                lines.append(line)
                line, x, gap = [], 0, 0
            if word.width > max_width:
                word = _cut_to_width(word, max_width, font)
            line.append((x + gap, word))
            x += gap + word.width
        lines.append(line)
    return lines


def _cut_to_width(word: _Word, max_width: int, font: _Font) -> _Word:
    text = word.text
    while len(text) > 1:
        text = text[:-1]
        width = cv2.getTextSize(text + "~", _FONT, font.scale, font.thickness)[0][0]
        if width <= max_width:
            return _Word(text + "~", word.color, width)
    return _Word(text, word.color, min(word.width, max_width))


def _draw_text_band(canvas: np.ndarray, text: str, colors: np.ndarray) -> None:
    """Write ``text`` on a darkened band at the bottom of ``canvas`` (in place)."""
    height, width = canvas.shape[:2]
    if min(height, width) < _MIN_TEXT_IMAGE_SIZE:
        return
    font = _font_for(height, width)
    lines = _wrap(_words(text, colors, font), width - 2 * font.margin, font)
    max_lines = max(1, int((height * _MAX_TEXT_FRACTION - font.margin) // font.line_height))
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _with_ellipsis(lines[-1], width - 2 * font.margin, font)

    band_height = min(height, len(lines) * font.line_height + font.margin)
    band = canvas[height - band_height :]
    band[:] = (band * _BAND_DARKENING).astype(np.uint8)
    for row, line in enumerate(lines):
        y = height - band_height + font.margin // 2 + (row + 1) * font.line_height - font.baseline
        for x, word in line:
            cv2.putText(
                canvas, word.text, (font.margin + x, y), _FONT, font.scale, word.color,
                font.thickness, cv2.LINE_AA,
            )


def _with_ellipsis(line: list[tuple[int, _Word]], max_width: int, font: _Font) -> list[tuple[int, _Word]]:
    """Mark a line as truncated, dropping words at its end until "..." fits."""
    ellipsis_width = cv2.getTextSize("...", _FONT, font.scale, font.thickness)[0][0]
    while line and line[-1][0] + line[-1][1].width + ellipsis_width > max_width:
        line = line[:-1]
    end = line[-1][0] + line[-1][1].width if line else 0
    return [*line, (end, _Word("...", _TEXT_COLOR, ellipsis_width))]
