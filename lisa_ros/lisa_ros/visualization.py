"""Drawing LISA results: masks over the image, their outlines, their phrases and the answer text.

ROS-free and torch-free (numpy + OpenCV) so that ``lisa-segment``, the ROS node and ``lisa-ask``
draw the same picture. Everything works on whole arrays: the node calls :func:`draw_overlay` for
every published frame, so the cost must stay at a few milliseconds for 640x480 and 1280x720 images.

What a person should see at a glance, on any scene (a red mask over an orange book in a red tote
included):

- the background outside the masks dimmed and partly desaturated, so every mask stands out by
  brightness even when its colour is close to what lies under it or around it;
- each mask tinted in its colour, with a two-tone outline: a dark line just outside the mask (seen
  on light and colourful surroundings) and a line in the mask's full colour just inside it (seen
  on dark ones);
- each mask's phrase (the words before its ``[SEG]``) on a small label in the mask's colour, next
  to the top of the mask;
- the answer on a dark box hugging its text, in the corner where it covers the fewest mask pixels.

Mask ``k`` is always drawn in ``mask_colors(k + 1)[k]``, and each ``[SEG]`` in the answer text
is written in the colour of the mask it produced, so a reader can tell which words belong to
which region.

Its length: one picture (masks, outlines, labels, the answer box and where they go), drawn alike by
the CLIs and the node; split, its parts would only call each other.
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from lisa_ros.model.prompt import SEG_TOKEN, seg_phrases

__all__ = [
    "SEG_TOKEN",
    "draw_overlay",
    "label_image",
    "mask_colors",
    "mask_label",
    "mask_phrases",
    "mask_title",
]

_SEG_APART = re.compile(f"({re.escape(SEG_TOKEN)})")  # splits "[SEG]." into "[SEG]", "."

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
_DARK = (0, 0, 0)  # outer outline, label borders and dark label text
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # RGB to grey (ITU-R BT.601, as OpenCV's RGB2GRAY)
_UNMATCHED_SEG_COLOR = (160, 160, 160)  # a [SEG] without a mask (e.g. a truncated answer)
_BAND_DARKENING = 0.3  # the answer box keeps this fraction of the image's brightness
_MAX_TEXT_FRACTION = 0.3  # the answer box never covers more than this share of the image height
_MAX_LABEL_FRACTION = 0.3  # a phrase label is at most this share of the image width
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MIN_TEXT_IMAGE_SIZE = 32  # below this (pixels, either side) no legible text fits: none is drawn
# below this, phrase labels would hide the masks they name: none is drawn
_MIN_LABEL_IMAGE_SIZE = 160
_THRESHOLD_COLOR_MASKS = 4  # up to this many masks, _color_layer thresholds instead of a LUT

# LISA's fixed answer templates ("Sure, [SEG].", "It is [SEG].", "Sure, it is [SEG].", "Sure, the
# segmentation result is [SEG].") and the "and" that joins several masks say nothing about a mask:
# they are left out of its label.
_FILLER = re.compile(
    r"^\W*(?:sure\b\W*)?(?:(?:it is|it's|the segmentation result is)\b\W*)?(?:(?:and|or)\b\W*)?",
    re.IGNORECASE,
)
_ARTICLES = {"the", "a", "an", "this", "that", "these", "those", "its", "their", "my", "your"}


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


def label_image(masks: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Flatten ``(N, H, W)`` bool masks into an ``(H, W)`` uint8 label image (written into
    ``out`` when given, e.g. a message's pixels).

    0 is background and ``k`` (1-based) marks mask ``k - 1``; where masks overlap, the later mask
    wins, as it does in the overlay. This is the ``mono8`` label image the ROS node publishes.
    """
    masks = _check_masks(masks)
    if masks.shape[0] > 255:
        raise ValueError(f"a uint8 label image holds at most 255 masks, got {masks.shape[0]}")
    # Mask k-1 contributes k where it is set; the maximum over masks is then the latest mask
    # covering each pixel. One pass over the stack: indexing mask by mask cost ~10x more.
    numbers = np.arange(1, masks.shape[0] + 1, dtype=np.uint8)[:, None, None]
    return (numbers * masks.view(np.uint8)).max(axis=0, initial=0, out=out)


def mask_phrases(text: str) -> list[str]:
    """Per ``[SEG]`` in ``text``: the words since the previous ``[SEG]``, which name its mask.

    ``SegmentationResult.phrases`` for an answer text (``lisa_ros.model.prompt.seg_phrases``).
    """
    return seg_phrases(text)[0]


def mask_label(phrase: str) -> str:
    """The words of a mask's phrase that name it, on one line: LISA's fixed answer words ("Sure,",
    "it is", a joining "and") and the punctuation around them left out, so "Sure, it is the red
    box" is labelled "the red box" and "It is" nothing. The overlay's labels and the node's RViz
    markers both say this, so the 2D and the 3D view name a mask alike.
    """
    return _FILLER.sub("", " ".join(phrase.split())).strip(" ,.;:")


def mask_title(index: int, phrase: str) -> str:
    """How the CLIs name mask ``index`` in a line of text: ``mask 0 "the red box"``, by the same
    words as the overlay's label (just ``mask 1`` when the phrase has none)."""
    label = mask_label(phrase)
    return f'mask {index} "{label}"' if label else f"mask {index}"


def draw_overlay(
    image_rgb: np.ndarray,
    masks: np.ndarray,
    text: str,
    *,
    alpha: float = 0.5,
    draw_text: bool = True,
    phrases: Sequence[str] | None = None,
    draw_labels: bool = True,
    dim_background: float = 0.6,
) -> np.ndarray:
    """Draw ``masks`` over ``image_rgb`` in distinct colours, with outlines, labels and the answer.

    Args:
        image_rgb: ``(H, W, 3)`` uint8 RGB image; it is not modified.
        masks: ``(N, H, W)`` bool masks (``N`` may be 0); later masks are drawn over earlier ones.
        text: the answer; each ``[SEG]`` in it is written in the colour of its mask.
        alpha: opacity of the mask colour inside a mask (0: invisible, 1: opaque).
        draw_text: write ``text`` on a dark box in the corner of the image where it covers the
            fewest mask pixels. Skipped for images too small to hold a legible line.
        phrases: the words naming each mask (``SegmentationResult.phrases``); ``None``: taken
            from ``text`` with the same rule (:func:`mask_phrases`).
        draw_labels: write each mask's phrase on a label in its colour next to the mask. LISA's
            fixed answer words ("Sure", "it is", a joining "and") are left out; a mask whose
            phrase is then empty gets no label. Skipped for images under 160 pixels a side.
        dim_background: share of brightness and colour kept outside the masks when some mask
            is not empty (1: untouched, 0: black), so that the masks stand out on any scene.

    Returns:
        A new ``(H, W, 3)`` uint8 RGB image.
    """
    image_rgb = _check_image(image_rgb)
    masks = _check_masks(masks)
    if masks.shape[1:] != image_rgb.shape[:2]:
        raise ValueError(
            f"masks of size {masks.shape[1:]} do not match the image size {image_rgb.shape[:2]}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha}")
    if not 0.0 <= dim_background <= 1.0:
        raise ValueError(f"dim_background must be within [0, 1], got {dim_background}")

    colors = mask_colors(masks.shape[0])
    height, width = image_rgb.shape[:2]
    labels = label_image(masks)
    inside = labels > 0
    if inside.any():
        overlay = _dimmed(image_rgb, dim_background)
        _draw_masks(overlay, image_rgb, labels, inside, colors, alpha)
    else:  # nothing to show: the image as it is, not a darker one
        overlay = image_rgb.copy()

    if min(height, width) < _MIN_TEXT_IMAGE_SIZE:
        return overlay
    font = _font_for(height, width)
    taken: list[_Rect] = []  # boxes already drawn, that labels should not cover
    if draw_text and text:
        answer_box = _draw_answer(overlay, text, colors, inside, font)
        if answer_box is not None:
            taken.append(answer_box)
    if draw_labels and masks.shape[0] > 0 and min(height, width) >= _MIN_LABEL_IMAGE_SIZE:
        if phrases is None:
            phrases = mask_phrases(text)
        _draw_labels(overlay, masks, phrases, colors, font, taken)
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
    """Width of each of the outline's two lines, for the image's shorter side: 1 px below 360,
    2 at 480, 3 at 720, 4 at 1080."""
    return max(1, round(min(height, width) / 240))


def _dimmed(image: np.ndarray, keep: float) -> np.ndarray:
    """``image`` with ``keep`` of its brightness and of its colour (the rest goes to grey).

    One colour transform: ``keep * (keep * rgb + (1 - keep) * grey)`` with ``grey`` the BT.601
    luma, which costs a third of a grey conversion followed by a blend.
    """
    if keep >= 1.0:
        return image.copy()
    matrix = keep * keep * np.eye(3) + keep * (1.0 - keep) * np.tile(_LUMA_WEIGHTS, (3, 1))
    return cv2.transform(image, matrix)


def _draw_masks(
    canvas: np.ndarray,
    image: np.ndarray,
    labels: np.ndarray,
    inside: np.ndarray,
    colors: np.ndarray,
    alpha: float,
) -> None:
    """Tint each label of ``image`` into ``canvas`` in place and outline it (``inside``:
    labels > 0).

    Works on the rectangle around all masks (plus the outline's reach), not the whole image.
    """
    height, width = labels.shape
    thickness = _outline_thickness(height, width)
    x, y, w, h = cv2.boundingRect(inside.view(np.uint8))
    # every pixel whose outline test looks at a mask pixel is in the rectangle
    reach = thickness + 1
    rows = slice(max(0, y - reach), min(height, y + h + reach))
    cols = slice(max(0, x - reach), min(width, x + w + reach))
    labels, inside, image, canvas = (
        labels[rows, cols],
        inside[rows, cols],
        image[rows, cols],
        canvas[rows, cols],
    )

    color_layer = _color_layer(labels, colors)
    blended = cv2.addWeighted(image, 1.0 - alpha, color_layer, alpha, 0.0)
    cv2.copyTo(blended, inside.view(np.uint8), canvas)  # in place; much faster than np.copyto

    # Inner line: pixels of a mask with a differing label within `thickness` pixels, in the mask's
    # full colour. Outer line: background pixels with a mask within `thickness` pixels, dark.
    # Both are where the labels around a pixel differ: where the morphological gradient (dilated
    # minus eroded labels) is not 0. Erosion and dilation treat the image border as neutral: a
    # mask touching the border is not outlined along it. (numpy compares here: OpenCV reads a
    # 1x1 array beside a number as a second number.)
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), dtype=np.uint8)
    edge = cv2.morphologyEx(labels, cv2.MORPH_GRADIENT, kernel) != 0
    cv2.copyTo(color_layer, (edge & inside).view(np.uint8), canvas)
    outer = np.greater(edge, inside)  # on the edge, not inside
    cv2.subtract(canvas, canvas, dst=canvas, mask=outer.view(np.uint8))  # _DARK, in place


def _color_layer(labels: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Each pixel of ``labels`` in its mask's colour (label ``k``: ``colors[k - 1]``), black for 0.

    For the few masks LISA answers with, a threshold per mask and channel costs half of a look-up
    per channel (two masks at 1280x720: 0.28 ms against 0.54); the look-up wins from about five
    masks on.
    """
    if len(colors) > _THRESHOLD_COLOR_MASKS:
        lut = np.zeros((3, 256), dtype=np.uint8)
        lut[:, 1 : len(colors) + 1] = colors.T
        return cv2.merge([cv2.LUT(labels, channel) for channel in lut])
    # Label k adds, on every pixel labelled k or more, the step from colour k - 1 to colour k;
    # summed modulo 256 (uint8 wraps), a pixel labelled k holds colour k exactly.
    planes = [np.zeros_like(labels) for _ in range(3)]
    steps = np.diff(colors.astype(np.int16), axis=0, prepend=0) % 256
    for label, step in enumerate(steps, start=1):
        for plane, value in zip(planes, step, strict=True):
            _, rise = cv2.threshold(labels, label - 0.5, int(value), cv2.THRESH_BINARY)
            np.add(plane, rise, out=plane)
    return cv2.merge(planes)


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


@dataclass(frozen=True)
class _Rect:
    x: int
    y: int
    width: int
    height: int

    def overlaps(self, other: _Rect) -> bool:
        return (
            self.x < other.x + other.width
            and other.x < self.x + self.width
            and self.y < other.y + other.height
            and other.y < self.y + self.height
        )


def _font_for(height: int, width: int) -> _Font:
    """Pick a font size readable at the image's size (about 1/30 of the shorter side per line)."""
    scale = max(0.4, min(height, width) / 800)
    thickness = max(1, round(scale * 1.5))
    (_, text_height), baseline = cv2.getTextSize("Ag", _FONT, scale, thickness)
    space_width = cv2.getTextSize(" ", _FONT, scale, thickness)[0][0]
    margin = max(2, text_height // 2)
    return _Font(
        scale, thickness, text_height + baseline + margin // 2, baseline, space_width, margin
    )


def _printable(text: str) -> str:
    """Hershey fonts draw ASCII only: show anything else as '?' rather than garbage."""
    return "".join(c if " " <= c <= "~" or c == "\n" else "?" for c in text)


def _text_width(text: str, font: _Font) -> int:
    return cv2.getTextSize(text, _FONT, font.scale, font.thickness)[0][0]


def _words(text: str, colors: np.ndarray, font: _Font) -> list[list[_Word]]:
    """Split the answer into paragraphs of words; the k-th ``[SEG]`` takes mask k's colour."""
    paragraphs: list[list[_Word]] = []
    seg_index = 0
    for paragraph in _printable(text).split("\n"):
        words: list[_Word] = []
        for token in paragraph.split():
            # Keep "[SEG]" apart from glued punctuation ("[SEG]." -> "[SEG]", ".").
            pieces = [piece for piece in _SEG_APART.split(token) if piece]
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
                words.append(
                    _Word(piece, color, _text_width(piece, font), space_before=position == 0)
                )
        paragraphs.append(words)
    return paragraphs


def _wrap(
    paragraphs: list[list[_Word]], max_width: int, font: _Font
) -> list[list[tuple[int, _Word]]]:
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
        width = _text_width(text + "~", font)
        if width <= max_width:
            return _Word(text + "~", word.color, width)
    return _Word(text, word.color, min(word.width, max_width))


def _draw_answer(
    canvas: np.ndarray, text: str, colors: np.ndarray, inside: np.ndarray, font: _Font
) -> _Rect | None:
    """Write ``text`` on a darkened box hugging it, where it hides the fewest mask pixels.

    The box is at most ``_MAX_TEXT_FRACTION`` of the image high (the full answer is on the node's
    ``~/text``). The text is laid out on lines as wide as the image, then on lines half as wide
    (a taller box that fits beside a mask); each box is tried in the corners bottom-left, top-left,
    bottom-right, top-right. The first with the fewest mask pixels under it wins, so with no mask
    in the way the answer sits at the bottom left on as few lines as possible. Returns the box.
    """
    height, width = canvas.shape[:2]
    words = _words(text, colors, font)
    max_lines = max(1, int((height * _MAX_TEXT_FRACTION - font.margin) // font.line_height))
    candidates: list[tuple[_Rect, list[list[tuple[int, _Word]]]]] = []
    for line_width in (width - 2 * font.margin, width // 2 - 2 * font.margin):
        if line_width < _text_width("M" * 8, font) and candidates:
            break  # too narrow to be worth it
        lines = _wrap(words, line_width, font)
        if len(lines) > max_lines:
            if candidates:
                break  # the narrow layout would cut the answer short: keep the wide one only
            lines = lines[:max_lines]
            lines[-1] = _with_ellipsis(lines[-1], line_width, font)
        lines_width = max((x + word.width for line in lines for x, word in line), default=0)
        if lines_width == 0:
            return None  # only blanks
        box_width = min(width, lines_width + 2 * font.margin)
        box_height = min(height, len(lines) * font.line_height + font.margin)
        left, right, top, bottom = 0, width - box_width, 0, height - box_height
        for x, y in ((left, bottom), (left, top), (right, bottom), (right, top)):
            candidates.append((_Rect(x, y, box_width, box_height), lines))
    hidden = [
        np.count_nonzero(inside[r.y : r.y + r.height, r.x : r.x + r.width]) for r, _ in candidates
    ]
    box, lines = candidates[int(np.argmin(hidden))]

    region = canvas[box.y : box.y + box.height, box.x : box.x + box.width]
    region[:] = cv2.convertScaleAbs(region, alpha=_BAND_DARKENING)
    for row, line in enumerate(lines):
        y = box.y + font.margin // 2 + (row + 1) * font.line_height - font.baseline
        for x, word in line:
            cv2.putText(
                canvas,
                word.text,
                (box.x + font.margin + x, y),
                _FONT,
                font.scale,
                word.color,
                font.thickness,
                cv2.LINE_AA,
            )
    return box


def _with_ellipsis(
    line: list[tuple[int, _Word]], max_width: int, font: _Font
) -> list[tuple[int, _Word]]:
    """Mark a line as truncated, dropping words at its end until "..." fits."""
    ellipsis_width = _text_width("...", font)
    while line and line[-1][0] + line[-1][1].width + ellipsis_width > max_width:
        line = line[:-1]
    end = line[-1][0] + line[-1][1].width if line else 0
    return [*line, (end, _Word("...", _TEXT_COLOR, ellipsis_width))]


# --- labels ----------------------------------------------------------------------------------


def _label_text(phrase: str, max_width: int, font: _Font) -> str:
    """The words of ``phrase`` that name the mask, short enough for ``max_width`` pixels.

    LISA's fixed answer words go. A phrase too long keeps its end, which is what the words right
    before ``[SEG]`` name: its last clause (after the last ',', ';' or ':'), then the longest end
    that starts with an article ("beside the white package" -> "the white package"), then its
    last words after "...".
    """
    text = mask_label(_printable(phrase))
    if _text_width(text, font) <= max_width:
        return text
    words = re.split(r"[,;:]", text)[-1].split() or text.split()
    for start, word in enumerate(words):
        if (start == 0 or word.lower() in _ARTICLES) and _text_width(
            " ".join(words[start:]), font
        ) <= max_width:
            return " ".join(words[start:])
    while words and _text_width("..." + " ".join(words), font) > max_width:
        words = words[1:]
    return "..." + " ".join(words) if words else ""


def _contrasting_text_color(color: np.ndarray) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``color`` (WCAG relative luminance)."""
    channels = color.astype(float) / 255.0
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    luminance = float(linear @ np.array([0.2126, 0.7152, 0.0722]))
    return _DARK if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else _TEXT_COLOR


def _draw_labels(
    canvas: np.ndarray,
    masks: np.ndarray,
    phrases: Sequence[str],
    colors: np.ndarray,
    font: _Font,
    taken: list[_Rect],
) -> None:
    """Write each mask's phrase on a box in the mask's colour, next to the top of the mask, in
    the answer's ``font`` (small labels would not be read on a scaled-down RViz panel).

    The box goes just above the mask's topmost pixels (centred on them, moved inside the image),
    else just inside the mask's top (below any box already there, while still beside the mask),
    else below or inside the bottom of the mask: the first of these that covers no box drawn
    before (the answer, earlier labels); if all do, the first.
    """
    height, width = canvas.shape[:2]
    pad = max(2, font.margin // 2)
    max_text_width = max(int(width * _MAX_LABEL_FRACTION), _text_width("m" * 10, font)) - 2 * pad
    max_text_width = min(max_text_width, width - 2 * pad - 2)
    for index in range(min(len(masks), len(phrases))):
        text = _label_text(phrases[index], max_text_width, font)
        if not text:
            continue
        x, y, w, h = cv2.boundingRect(masks[index].view(np.uint8))
        if w == 0:
            continue  # empty mask: nothing to point at
        top = np.flatnonzero(masks[index, y])
        bottom = np.flatnonzero(masks[index, y + h - 1])
        (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, font.scale, font.thickness)
        box_w, box_h = text_w + 2 * pad, text_h + baseline + 2 * pad
        gap = _outline_thickness(height, width)  # clear of the outline
        top_x = (top[0] + top[-1]) // 2 - box_w // 2
        bottom_x = (bottom[0] + bottom[-1]) // 2 - box_w // 2
        candidates = [
            (top_x, y - gap - box_h),  # above the mask
            (top_x, y + gap),  # inside its top, moved down past boxes already there
            (bottom_x, y + h + gap),  # below it
            (bottom_x, y + h - gap - box_h),  # inside its bottom
        ]
        boxes = [
            _Rect(min(max(cx, 0), width - box_w), min(max(cy, 0), height - box_h), box_w, box_h)
            for cx, cy in candidates
        ]
        boxes[1] = _moved_down_past(boxes[1], taken, bottom=min(y + h, height))
        box = next((b for b in boxes if not any(b.overlaps(t) for t in taken)), boxes[0])
        taken.append(box)

        color = tuple(int(c) for c in colors[index])
        cv2.rectangle(
            canvas, (box.x, box.y), (box.x + box.width - 1, box.y + box.height - 1), color, -1
        )
        cv2.rectangle(
            canvas, (box.x, box.y), (box.x + box.width - 1, box.y + box.height - 1), _DARK, 1
        )
        cv2.putText(
            canvas,
            text,
            (box.x + pad, box.y + pad + text_h),
            _FONT,
            font.scale,
            _contrasting_text_color(colors[index]),
            font.thickness,
            cv2.LINE_AA,
        )


def _moved_down_past(box: _Rect, taken: list[_Rect], bottom: int) -> _Rect:
    """``box`` moved down until it covers none of ``taken``, or left where it is if it would then
    reach below ``bottom``."""
    moved = box
    for _ in range(len(taken)):
        hit = next((t for t in taken if moved.overlaps(t)), None)
        if hit is None:
            break
        moved = _Rect(moved.x, hit.y + hit.height, moved.width, moved.height)
    return moved if moved.y + moved.height <= bottom else box
