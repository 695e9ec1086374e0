"""Tests of lisa_ros.visualization on real arrays: colours, outlines, labels, the answer, edges, and
whether the overlay reads at a glance on real photographs with hand-made masks (fixtures/photos).

The readability tests measure what a person sees at a mask's edge: the colour a few pixels inside
against the colour a few pixels outside (CIELAB distance, around every boundary pixel, beyond the
outline). Set LISA_OVERLAY_ARTEFACTS=DIR to also get the example overlays in DIR.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from lisa_ros.visualization import (
    _font_for,
    _label_text,
    _outline_thickness,
    _text_width,
    draw_overlay,
    label_image,
    mask_colors,
    mask_label,
    mask_phrases,
    mask_title,
)
from testbed import FIXTURES

HEIGHT, WIDTH = 240, 320
COMMITTED_OVERLAYS = FIXTURES / "photos" / "overlays"
REFRESH = f"python -m tools.render_overlay_examples {COMMITTED_OVERLAYS}"  # in lisa_ros/


def _gradient_image(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A deterministic image in which every pixel differs from its neighbours, unlike a flat
    fill."""
    y, x = np.mgrid[:height, :width]
    return np.stack([(x * 7) % 256, (y * 5) % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def _box_mask(
    top: int, left: int, bottom: int, right: int, height: int = HEIGHT, width: int = WIDTH
) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def _two_boxes() -> np.ndarray:
    """Two overlapping boxes in the upper half of the image (away from the text band)."""
    return np.stack([_box_mask(20, 20, 100, 140), _box_mask(60, 100, 110, 200)])


def _dimmed(image: np.ndarray, keep: float = 0.6) -> np.ndarray:
    """What the overlay does to the background: ``keep`` of the brightness and of the colour."""
    grey = image.astype(float) @ np.array([0.299, 0.587, 0.114])
    return keep * (keep * image + (1 - keep) * grey[..., None])


def _changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the pixels that differ, bottom/right exclusive."""
    rows = np.flatnonzero((before != after).any(axis=(1, 2)))
    cols = np.flatnonzero((before != after).any(axis=(0, 2)))
    return None if rows.size == 0 else (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)


# --- mask_colors ------------------------------------------------------------------------------


def test_mask_colors_are_distinct_rgb_uint8():
    colors = mask_colors(40)
    assert colors.shape == (40, 3) and colors.dtype == np.uint8
    assert len({tuple(c) for c in colors}) == 40


def test_mask_color_depends_only_on_its_index():
    np.testing.assert_array_equal(mask_colors(3), mask_colors(30)[:3])
    np.testing.assert_array_equal(mask_colors(20)[15], mask_colors(16)[15])


def test_first_mask_colors_are_far_apart():
    colors = mask_colors(8).astype(int)
    distances = np.linalg.norm(colors[:, None] - colors[None], axis=-1)
    assert distances[~np.eye(8, dtype=bool)].min() >= 80


def test_mask_colors_edge_cases():
    assert mask_colors(0).shape == (0, 3)
    with pytest.raises(ValueError):
        mask_colors(-1)


# --- label_image ------------------------------------------------------------------------------


def test_label_image_numbers_masks_from_one_and_later_masks_win():
    masks = _two_boxes()
    labels = label_image(masks)
    assert labels.dtype == np.uint8 and labels.shape == (HEIGHT, WIDTH)
    expected = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    expected[20:100, 20:140] = 1
    expected[60:110, 100:200] = 2
    np.testing.assert_array_equal(labels, expected)


def test_label_image_without_masks_is_all_background():
    labels = label_image(np.zeros((0, 5, 7), dtype=bool))
    assert labels.shape == (5, 7)
    assert not labels.any()


def test_label_image_holds_255_masks_and_refuses_more():
    masks = np.zeros((256, 1, 256), dtype=bool)
    masks[np.arange(256), 0, np.arange(256)] = True
    np.testing.assert_array_equal(label_image(masks[:255])[0, :255], np.arange(1, 256))
    with pytest.raises(ValueError, match="255"):
        label_image(masks)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), dtype=bool), np.zeros((1, 4, 4), dtype=np.float32)],
    ids=["2d", "float logits"],
)
def test_label_image_rejects_wrong_masks(bad):
    with pytest.raises(ValueError):
        label_image(bad)


# --- mask_phrases -----------------------------------------------------------------------------


def test_mask_phrases_are_the_models_phrases():
    from lisa_ros.model.prompt import seg_phrases

    for text in [
        "Sure, [SEG].",
        "The mug [SEG] and the plate [SEG] .",
        "[SEG][SEG]",
        "no mask here",
        "It is the bin [SEG]; because: it holds scraps [SEG], the rest [SEG]",
        "",
    ]:
        assert mask_phrases(text) == seg_phrases(text)[0], text


# --- draw_overlay: masks ----------------------------------------------------------------------


def test_overlay_tints_mask_pixels_and_dims_the_rest():
    image = _gradient_image()
    masks = _two_boxes()
    overlay = draw_overlay(image, masks, "", alpha=0.5)

    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    inside = masks.any(axis=0)
    assert (overlay[inside] != image[inside]).any(axis=-1).all()
    # Outside the masks and their outlines: the background dimmed (darker, greyer), not recoloured.
    away = ~cv2.dilate(inside.view(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    np.testing.assert_allclose(overlay[away], _dimmed(image)[away], atol=1.01)
    # Without dimming, the background stays as it is (the previous overlay's look).
    plain = draw_overlay(image, masks, "", alpha=0.5, dim_background=1.0)
    np.testing.assert_array_equal(plain[away], image[away])


def test_overlay_blends_each_mask_in_its_colour():
    image = np.full((HEIGHT, WIDTH, 3), 100, dtype=np.uint8)
    masks = _two_boxes()
    overlay = draw_overlay(image, masks, "", alpha=0.5).astype(int)
    colors = mask_colors(2).astype(int)

    expected_first = (100 + colors[0]) / 2  # interior of mask 0 only, away from outlines
    expected_second = (100 + colors[1]) / 2  # overlap: the later mask wins
    np.testing.assert_allclose(overlay[40, 50], expected_first, atol=1)
    np.testing.assert_allclose(overlay[80, 120], expected_second, atol=1)
    np.testing.assert_allclose(overlay[85, 170], expected_second, atol=1)


@pytest.mark.parametrize("count", [1, 3, 4, 5, 12])
def test_every_mask_is_blended_in_its_colour_and_outlined_in_it_for_any_count(count):
    # One 20 x 16 box per mask in a row, overlapping its neighbour by 4 columns (the later wins):
    # a few masks take one way to their colours, many another; both must paint the same.
    image = np.full((HEIGHT, WIDTH, 3), 100, dtype=np.uint8)
    masks = np.stack([_box_mask(20, 20 + 12 * k, 40, 36 + 12 * k) for k in range(count)])
    overlay = draw_overlay(image, masks, "", draw_labels=False).astype(int)
    colors = mask_colors(count).astype(int)
    for k in range(count):
        left = 20 + 12 * k
        interior = overlay[30, left + 6 : left + 10]  # inside box k, off its outline and the next
        np.testing.assert_allclose(interior, np.broadcast_to((100 + colors[k]) / 2, (4, 3)), atol=1)
        np.testing.assert_array_equal(overlay[20, left + 6], colors[k])  # inner line, top edge
    np.testing.assert_array_equal(overlay[19, 30], (0, 0, 0))  # outer line, above the first box


@pytest.mark.parametrize(
    "height,width,thickness", [(HEIGHT, WIDTH, 1), (480, 640, 2), (720, 1280, 3)]
)
def test_overlay_outlines_masks_dark_outside_and_in_full_colour_inside(height, width, thickness):
    assert _outline_thickness(height, width) == thickness
    image = np.full((height, width, 3), 150, dtype=np.uint8)
    top, left, bottom, right = 20, 20, 100, 140
    masks = _box_mask(top, left, bottom, right, height, width)[None]
    overlay = draw_overlay(image, masks, "", alpha=0.3)
    color = mask_colors(1)[0]
    dimmed = np.round(_dimmed(image[:1, :1])[0, 0])

    for k in range(thickness):  # `thickness` pixels each side of the border, along all four sides
        for y, x in [(top + k, 60), (bottom - 1 - k, 60), (60, left + k), (60, right - 1 - k)]:
            np.testing.assert_array_equal(overlay[y, x], color)
        for y, x in [(top - 1 - k, 60), (bottom + k, 60), (60, left - 1 - k), (60, right + k)]:
            np.testing.assert_array_equal(overlay[y, x], (0, 0, 0))
    # beyond: the background
    np.testing.assert_allclose(overlay[top - 1 - thickness, 60], dimmed, atol=1)
    assert (overlay[60, 80] < color).any() and (overlay[60, 80] != 0).any()  # interior: blended


@pytest.mark.parametrize(
    "background",
    [(0, 0, 0), (255, 255, 255), (255, 56, 56), (128, 128, 128), (235, 120, 40)],
    ids=["black", "white", "the mask colour", "grey", "orange"],
)
def test_outline_stands_out_on_any_background(background):
    """One of the two lines always contrasts with what lies just outside the mask."""
    image = np.full((HEIGHT, WIDTH, 3), background, dtype=np.uint8)
    overlay = draw_overlay(image, _box_mask(60, 60, 180, 260)[None], "")
    lab = cv2.cvtColor(overlay.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    outside, dark_line, color_line = lab[30, 150], lab[59, 150], lab[60, 150]
    assert max(np.linalg.norm(dark_line - outside), np.linalg.norm(color_line - outside)) > 25
    assert np.linalg.norm(dark_line - color_line) > 50  # the two lines differ from each other


def test_overlay_alpha_extremes():
    image = _gradient_image()
    masks = _box_mask(30, 30, 90, 90)[None]
    color = mask_colors(1)[0]
    np.testing.assert_array_equal(draw_overlay(image, masks, "", alpha=0.0)[60, 60], image[60, 60])
    np.testing.assert_array_equal(draw_overlay(image, masks, "", alpha=1.0)[60, 60], color)


def test_overlay_does_not_modify_its_input():
    image = _gradient_image()
    before = image.copy()
    draw_overlay(image, _two_boxes(), "Sure, the cup [SEG] and the plate [SEG].")
    np.testing.assert_array_equal(image, before)


def test_overlay_without_masks_is_the_image():
    image = _gradient_image()
    overlay = draw_overlay(image, np.zeros((0, HEIGHT, WIDTH), dtype=bool), "")
    np.testing.assert_array_equal(overlay, image)
    empty_masks = draw_overlay(image, np.zeros((2, HEIGHT, WIDTH), dtype=bool), "")
    np.testing.assert_array_equal(empty_masks, image)  # nothing to point at: no dimming either


# --- draw_overlay: the answer -----------------------------------------------------------------


def test_answer_without_masks_is_on_a_dark_box_at_the_bottom_left():
    image = np.full((HEIGHT, WIDTH, 3), 200, dtype=np.uint8)
    overlay = draw_overlay(image, np.zeros((0, HEIGHT, WIDTH), dtype=bool), "Sure, it is the mug.")

    top, left, bottom, right = _changed_box(image, overlay)
    assert top > HEIGHT // 2 and bottom == HEIGHT and left == 0
    assert right < WIDTH  # as wide as the text, not the whole image
    box = overlay[top:bottom, left:right]
    assert np.median(box) < 100  # darkened
    assert (box > 230).all(axis=-1).any()  # white letters on it

    no_text = draw_overlay(image, np.zeros((0, HEIGHT, WIDTH), dtype=bool), "Sure", draw_text=False)
    np.testing.assert_array_equal(no_text, image)


@pytest.mark.parametrize(
    "mask_box,expected_corner",
    [((120, 0, 240, 320), "top"), ((0, 0, 240, 160), "right"), ((0, 0, 120, 320), "bottom")],
    ids=["bottom half masked", "left half masked", "top half masked"],
)
def test_answer_goes_where_it_hides_no_mask(mask_box, expected_corner):
    image = _gradient_image()
    masks = _box_mask(*mask_box)[None]
    text = "The answer is [SEG], because it holds what was asked for."
    without = draw_overlay(image, masks, text, draw_text=False, draw_labels=False)
    overlay = draw_overlay(image, masks, text, draw_labels=False)

    top, left, bottom, right = _changed_box(without, overlay)
    assert not masks[0, top:bottom, left:right].any()
    assert {"top": top == 0, "bottom": bottom == HEIGHT, "right": right == WIDTH}[expected_corner]


def test_answer_writes_seg_tokens_in_their_mask_colours():
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    masks = np.zeros((2, HEIGHT, WIDTH), dtype=bool)
    masks[0, :10, :10] = True
    masks[1, :10, 20:30] = True
    colors = mask_colors(2)
    band = draw_overlay(image, masks, "It is [SEG] and [SEG].")[HEIGHT // 2 :]
    for color in colors:
        assert _has_pixels_near(band, color)

    plain = draw_overlay(image, masks, "It is this and that.")[HEIGHT // 2 :]
    for color in colors:
        assert not _has_pixels_near(plain, color)


def _has_pixels_near(image: np.ndarray, color: np.ndarray, tolerance: float = 40.0) -> bool:
    return bool((np.linalg.norm(image.astype(float) - color, axis=-1) < tolerance).any())


def test_long_text_wraps_and_stays_within_a_band_of_limited_height():
    image = np.full((HEIGHT, WIDTH, 3), 200, dtype=np.uint8)
    no_masks = np.zeros((0, HEIGHT, WIDTH), dtype=bool)
    short = draw_overlay(image, no_masks, "A short answer.")
    long = draw_overlay(image, no_masks, "A much longer answer that cannot fit on one line " * 3)
    huge = draw_overlay(image, no_masks, "word " * 2000)

    def band_height(overlay):
        return HEIGHT - np.flatnonzero((overlay != image).any(axis=(1, 2))).min()

    assert band_height(long) > band_height(short)
    assert band_height(huge) <= 0.31 * HEIGHT


def test_overlay_handles_unusual_text():
    image = _gradient_image()
    masks = _two_boxes()
    texts = [
        "Ünïcödé — ok ✓ [SEG]",
        "[SEG][SEG][SEG]",
        "a" * 500 + " [SEG]",
        "line one\nline two [SEG]",
        "   ",
    ]
    for text in [*texts, "x" * 300 + "[SEG] " + "y" * 300 + "[SEG]"]:
        overlay = draw_overlay(image, masks, text)
        assert overlay.shape == image.shape
    overlay = draw_overlay(image, masks, "", phrases=["", "ü" * 400])
    assert overlay.shape == image.shape


@pytest.mark.parametrize("height,width", [(1, 1), (1, 7), (5, 3), (31, 200)])
def test_overlay_on_tiny_images(height, width):
    image = np.full((height, width, 3), 50, dtype=np.uint8)
    masks = np.zeros((2, height, width), dtype=bool)
    masks[0, 0, 0] = True
    overlay = draw_overlay(image, masks, "Sure, the cup [SEG] and the plate [SEG].")
    assert overlay.shape == image.shape
    assert (overlay[0, 0] != 50).any()
    # Too small for text: no answer and no labels, only the mask drawn over the dimmed image.
    np.testing.assert_array_equal(
        overlay, draw_overlay(image, masks, "", draw_text=False, draw_labels=False)
    )


def test_overlay_rejects_bad_inputs():
    image = _gradient_image()
    with pytest.raises(ValueError, match="do not match"):
        draw_overlay(image, np.zeros((1, HEIGHT + 1, WIDTH), dtype=bool), "")
    with pytest.raises(ValueError, match="RGB uint8"):
        draw_overlay(image.astype(np.float32), _two_boxes(), "")
    with pytest.raises(ValueError, match="RGB uint8"):
        draw_overlay(image[..., 0], _two_boxes(), "")
    with pytest.raises(ValueError, match="bool"):
        draw_overlay(image, _two_boxes().astype(np.float32), "")
    with pytest.raises(ValueError, match="alpha"):
        draw_overlay(image, _two_boxes(), "", alpha=1.5)
    with pytest.raises(ValueError, match="dim_background"):
        draw_overlay(image, _two_boxes(), "", dim_background=-0.1)


# --- draw_overlay: phrase labels --------------------------------------------------------------


def _label_pixels(image: np.ndarray, masks: np.ndarray, text: str, **kwargs) -> np.ndarray:
    """Where the labels changed the picture (answer not drawn)."""
    without = draw_overlay(image, masks, text, draw_text=False, draw_labels=False, **kwargs)
    return (draw_overlay(image, masks, text, draw_text=False, **kwargs) != without).any(axis=-1)


def _components(changed: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(top, left, bottom, right) of each connected region of ``changed``, bottom/right
    exclusive."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(changed.view(np.uint8), connectivity=8)
    return [(y, x, y + h, x + w) for x, y, w, h, _ in stats[1:count]]


def test_label_is_the_phrase_in_the_mask_colour_just_above_the_mask():
    image = np.full((HEIGHT, WIDTH, 3), 120, dtype=np.uint8)
    masks = _box_mask(100, 100, 180, 200)[None]
    changed = _label_pixels(image, masks, "It is the red mug [SEG].")

    [(top, left, bottom, right)] = _components(changed)
    assert 100 - 40 <= top and bottom <= 100  # above the mask, close to it
    assert left < 200 and right > 100  # over the mask's columns
    overlay = draw_overlay(image, masks, "It is the red mug [SEG].", draw_text=False)
    box = overlay[top:bottom, left:right]
    assert (box == mask_colors(1)[0]).all(axis=-1).mean() > 0.5  # a box in the mask's colour
    assert (box == 0).all(axis=-1).any()  # with dark letters (they contrast more with this red)


def test_label_of_a_mask_at_the_top_edge_stays_inside_the_image_on_the_mask():
    image = np.full((HEIGHT, WIDTH, 3), 120, dtype=np.uint8)
    masks = _box_mask(0, 200, 80, 320)[None]  # top right corner
    [(top, left, bottom, right)] = _components(_label_pixels(image, masks, "the lamp [SEG]"))
    assert top >= 0 and right <= WIDTH
    assert bottom <= 80 and left >= 200 - 10  # drawn inside the mask's top, moved in from the edge


@pytest.mark.parametrize(
    "answer",
    [
        "Sure, [SEG].",
        "It is [SEG].",
        "Sure, it is [SEG].",
        "Sure, the segmentation result is [SEG].",
        "[SEG]",
    ],
)
def test_lisa_template_answers_get_no_label(answer):
    image = _gradient_image()
    assert not _label_pixels(image, _two_boxes()[:1], answer).any()


def test_phrases_given_replace_those_of_the_text():
    image = _gradient_image()
    masks = _two_boxes()[:1]
    assert not _label_pixels(image, masks, "Sure, [SEG].").any()
    assert _label_pixels(image, masks, "Sure, [SEG].", phrases=["the bin"]).any()
    assert not _label_pixels(image, masks, "It is the bin [SEG].", phrases=[""]).any()


def test_labels_of_neighbouring_masks_do_not_overlap():
    image = _gradient_image()
    # side by side, same top
    masks = np.stack([_box_mask(100, 40, 200, 150), _box_mask(100, 150, 200, 280)])
    changed = _label_pixels(
        image, masks, "The large red toolbox [SEG] and the green toolbox [SEG]."
    )
    boxes = _components(changed)
    assert len(boxes) == 2  # two separate labels, not one merged block


@pytest.mark.parametrize(
    "phrase,label",
    [
        ("Sure, it is the red box", "the red box"),
        ("It is", ""),
        ("  and\nthe   mug ", "the mug"),
        ("Sure, the segmentation result is", ""),
        ("Andy's cup", "Andy's cup"),
    ],
)
def test_mask_label_leaves_out_lisas_fixed_words(phrase, label):
    """What the overlay's labels and the RViz markers both show for a mask's phrase."""
    assert mask_label(phrase) == label


def test_the_clis_name_a_mask_by_its_label():
    assert mask_title(0, "Sure, it is the red box") == 'mask 0 "the red box"'
    assert mask_title(2, "It is") == "mask 2"


@pytest.mark.parametrize(
    "phrase,label",
    [
        ("Sure, it is the mug", "the mug"),
        ("and the model shuttle", "the model shuttle"),
        ("Andy's cup", "Andy's cup"),
        ("is orange, she holds the helmet", "she holds the helmet"),  # too long: the last clause
        (
            "lies in the red tote beside the white package",
            "the white package",
        ),  # then from an article
        ("pick up whatever lies near that big heavy thing", "that big heavy thing"),
        ("go over there and grab whatever lies nearest to it", "...lies nearest to it"),
        ("anextremelylongwordthatcannotfitanywhereatall", ""),
    ],
)
def test_label_text_keeps_the_words_naming_the_mask(phrase, label):
    """Given room for exactly the expected label, that is the label: which words are kept must not
    hang on a font's exact pixel widths, which differ between OpenCV releases."""
    font = _font_for(480, 640)
    room = _text_width(label, font) if label else 190
    assert _label_text(phrase, room, font) == label


# --- real photographs: does the overlay read at a glance? -------------------------------------


@pytest.fixture(scope="module")
def examples():
    from tools import render_overlay_examples

    return render_overlay_examples


@pytest.fixture(scope="module")
def scenes(examples):
    return examples.scenes()


def _edge_contrast(
    overlay: np.ndarray, masks: np.ndarray, index: int, background_only: bool = False
) -> float:
    """Median, over the boundary pixels of mask ``index``, of the CIELAB distance between the mean
    colour a few pixels inside the mask and a few pixels outside it near that boundary pixel,
    beyond the outline: how clearly the mask's region differs from what surrounds it (with
    ``background_only``, from what surrounds it outside all masks)."""
    height, width = masks.shape[1:]
    skip = 2 * _outline_thickness(height, width) + 1
    lab = cv2.cvtColor(overlay.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    mask = masks[index].view(np.uint8)
    depth_in = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    depth_out = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 3)
    boundary = (mask > 0) & (depth_in <= 1)

    def local_mean(band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        band = band.astype(np.float32)
        total = cv2.boxFilter(lab * band[..., None], -1, (13, 13), normalize=False)
        count = cv2.boxFilter(band, -1, (13, 13), normalize=False)
        return total / np.maximum(count, 1e-6)[..., None], count

    inner, inner_count = local_mean((depth_in > skip) & (depth_in <= skip + 4))
    outside = (depth_out > skip) & (depth_out <= skip + 4)
    if background_only:
        outside &= ~masks.any(axis=0)
    outer, outer_count = local_mean(outside)
    valid = boundary & (inner_count > 0) & (outer_count > 0)
    return float(np.median(np.linalg.norm(inner - outer, axis=-1)[valid]))


@pytest.mark.parametrize(
    "scene", ["picking", "coffee"], ids=["red mask on an orange book", "red mask on a red cup"]
)
def test_red_mask_on_orange_or_red_stands_out(scenes, scene):
    """The reported case: a red tint over an orange book in a red tote did not show. Mask 0 (red)
    must differ clearly from the unmasked surroundings (the tote, the table); the tint alone, as
    the overlay was drawn before (background untouched), does not make it."""
    image, masks, answer = scenes[scene]
    overlay = draw_overlay(image, masks, answer, draw_text=False, draw_labels=False)
    tint_only = draw_overlay(
        image, masks, answer, draw_text=False, draw_labels=False, dim_background=1.0
    )
    assert _edge_contrast(tint_only, masks, 0, background_only=True) < 45
    assert _edge_contrast(overlay, masks, 0, background_only=True) >= 45


def test_every_mask_of_every_example_stands_out(scenes):
    for name, (image, masks, answer) in scenes.items():
        overlay = draw_overlay(image, masks, answer, draw_text=False, draw_labels=False)
        for index in range(len(masks)):
            assert _edge_contrast(overlay, masks, index) >= 40, (name, index)


def test_every_example_mask_is_outlined_all_around(scenes):
    for name, (image, masks, answer) in scenes.items():
        overlay = draw_overlay(image, masks, answer, draw_text=False, draw_labels=False)
        inside = masks.any(axis=0)
        colors = mask_colors(len(masks))
        for index, mask in enumerate(masks):
            visible = label_image(masks) == index + 1
            edge = visible & ~cv2.erode(
                visible.view(np.uint8), np.ones((3, 3), np.uint8), borderValue=1
            ).astype(bool)
            assert (overlay[edge] == colors[index]).all(axis=-1).mean() > 0.99, (name, index)
            around = (
                cv2.dilate(mask.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~inside
            )
            assert (overlay[around] == 0).all(axis=-1).mean() > 0.99, (name, index)


def test_example_answers_hide_fewer_masks_than_a_bottom_band(scenes):
    for name, (image, masks, answer) in scenes.items():
        without = draw_overlay(image, masks, answer, draw_text=False, draw_labels=False)
        overlay = draw_overlay(image, masks, answer, draw_labels=False)
        top, left, bottom, right = _changed_box(without, overlay)
        inside = masks.any(axis=0)
        hidden = inside[top:bottom, left:right].sum()
        assert hidden <= inside[inside.shape[0] - (bottom - top) :].sum(), name
        if name in ("picking", "chelsea"):  # room left: nothing hidden
            assert hidden == 0, name


def test_example_labels_are_inside_the_image_next_to_their_masks(scenes):
    for name, (image, masks, answer) in scenes.items():
        overlay = draw_overlay(image, masks, answer, draw_text=False)
        changed = _label_pixels(image, masks, answer)
        colors = mask_colors(len(masks))
        for index, mask in enumerate(masks):
            box_pixels = changed & (overlay == colors[index]).all(axis=-1)
            assert box_pixels.sum() > 100, (name, index)  # every example phrase gets a label
            ys, xs = np.nonzero(box_pixels)
            mask_ys, mask_xs = np.nonzero(mask)
            label_height = ys.max() - ys.min() + 1
            # Vertically within a label's height of the mask; horizontally over its columns.
            assert mask_ys.min() - 2 * label_height <= ys.min() <= mask_ys.max() + label_height, (
                name,
                index,
            )
            assert xs.min() <= mask_xs.max() and xs.max() >= mask_xs.min(), (name, index)


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixels that differ by more than the level or two that JPEG decoders disagree by."""
    return np.abs(a.astype(np.int16) - b).max(axis=-1) > 16


def _box_of_largest(pixels: np.ndarray, min_fill: float = 0.0) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the largest connected region of ``pixels`` that fills at
    least ``min_fill`` of its bounding box (a box, not an outline)."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(pixels.view(np.uint8), connectivity=8)
    filled = [s for s in stats[1:count] if s[cv2.CC_STAT_AREA] >= min_fill * s[2] * s[3]]
    if not filled:
        return None
    x, y, w, h, _ = max(filled, key=lambda s: s[cv2.CC_STAT_AREA])
    return int(y), int(x), int(y + h), int(x + w)


def _text_layout(overlay: np.ndarray, plain: np.ndarray, masks: np.ndarray):
    """Where ``overlay`` has text on top of ``plain`` (the same overlay without text): each mask's
    label box (filled in the mask's colour), and the answer box (``plain`` darkened to 30 %)."""
    # Letters may cut a label's box in pieces: closing joins them (not the [SEG]s in the answer),
    # and a filled box is told from an outline drawn in the same colour.
    joining = np.ones((5, 15), np.uint8)
    labels = [
        _box_of_largest(
            cv2.morphologyEx(
                ((overlay == color).all(axis=-1) & (plain != color).any(axis=-1)).view(np.uint8),
                cv2.MORPH_CLOSE,
                joining,
            ),
            min_fill=0.6,
        )
        for color in mask_colors(len(masks))
    ]
    darkened = cv2.convertScaleAbs(plain, alpha=0.3)
    in_box = (overlay == darkened).all(axis=-1) & (plain != darkened).any(axis=-1)
    closed = cv2.morphologyEx(in_box.view(np.uint8), cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    return labels, _box_of_largest(closed)


def _overlay_problems(fresh: np.ndarray, committed: np.ndarray, plain: np.ndarray, masks):
    """What a person would see differ between two overlays of the same scene, allowing for the
    font: OpenCV 4 draws Hershey strokes and OpenCV 5 a TrueType face of other widths, so text
    boxes may be wider, wrap otherwise or make room for each other, but the colours, outlines
    and dimming must be the same, each label near its place and the answer in the same corner."""
    height, width = masks.shape[1:]
    fresh_labels, fresh_answer = _text_layout(fresh, plain, masks)
    labels, answer = _text_layout(committed, plain, masks)
    problems = []
    text = np.zeros((height, width), dtype=bool)
    for box in (fresh_answer, answer, *fresh_labels, *labels):
        if box is not None:  # with the label's 1-pixel border and the letters' anti-aliasing
            text[max(box[0] - 2, 0) : box[2] + 2, max(box[1] - 2, 0) : box[3] + 2] = True
    differing = _differs(fresh, committed) & ~text
    regions = label_image(masks)  # 0: background, k: mask k-1 where it shows
    for region in range(len(masks) + 1):
        share = differing[regions == region].mean()
        if share > 0.005:
            where = f"mask {region - 1}" if region else "the background"
            problems.append(f"{share:.1%} of {where} differs")

    def corner(box):
        return None if box is None else (box[0] < height - box[2], box[1] < width - box[3])

    if corner(fresh_answer) != corner(answer):
        problems.append(f"the answer box {answer} is now {fresh_answer}")
    for index, (now, was) in enumerate(zip(fresh_labels, labels, strict=True)):
        if (now is None) != (was is None):
            problems.append(f"label {index}: {was} is now {now}")
        elif now is not None:
            moved = np.hypot(now[0] + now[2] - was[0] - was[2], now[1] + now[3] - was[1] - was[3])
            if moved / 2 > (was[3] - was[1]) / 2:
                problems.append(f"label {index} moved by {moved / 2:.0f} px: {was} is now {now}")
    return problems


def _committed_overlay(name: str) -> np.ndarray:
    committed = cv2.imread(str(COMMITTED_OVERLAYS / f"{name}.png"), cv2.IMREAD_COLOR)
    assert committed is not None, f"{name}.png is not committed: run {REFRESH}"
    return cv2.cvtColor(committed, cv2.COLOR_BGR2RGB)


def test_example_overlays_are_written_and_match_the_committed_ones(examples, scenes, tmp_path):
    """Renders the examples into the test's folder (and $LISA_OVERLAY_ARTEFACTS when set) and
    checks that the copies committed for reviewers show what the code draws now, with any
    supported OpenCV's font."""
    written = examples.render(tmp_path)
    if os.environ.get("LISA_OVERLAY_ARTEFACTS"):
        examples.render(Path(os.environ["LISA_OVERLAY_ARTEFACTS"]))
    assert {path.name for path in written} == {f"{name}.png" for name in scenes}
    for path in written:
        image, masks, answer = scenes[path.stem]
        fresh = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        committed = _committed_overlay(path.stem)
        assert committed.shape == fresh.shape
        plain = draw_overlay(image, masks, answer, draw_text=False, draw_labels=False)
        problems = _overlay_problems(fresh, committed, plain, masks)
        assert not problems, f"{path.name} is stale ({'; '.join(problems)}): run {REFRESH}"


def test_the_committed_overlay_check_sees_a_moved_label_and_another_colour(scenes):
    image, masks, answer = scenes["picking"]
    plain = draw_overlay(image, masks, answer, draw_text=False, draw_labels=False)
    fresh = draw_overlay(image, masks, answer)
    assert _overlay_problems(fresh, fresh, plain, masks) == []

    moved = fresh.copy()
    labels, _ = _text_layout(fresh, plain, masks)
    top, left, bottom, right = labels[0]
    shift = right - left  # one label width to the right, as if placed for another mask
    moved[top - 1 : bottom + 1, left - 1 : right + 1] = plain[
        top - 1 : bottom + 1, left - 1 : right + 1
    ]
    moved[top - 1 : bottom + 1, left - 1 + shift : right + 1 + shift] = fresh[
        top - 1 : bottom + 1, left - 1 : right + 1
    ]
    assert any(
        "label 0 moved" in problem for problem in _overlay_problems(fresh, moved, plain, masks)
    )

    recoloured = draw_overlay(image, masks[::-1], answer)  # the book in the package's colour
    assert any(
        "of mask 0 differs" in problem
        for problem in _overlay_problems(fresh, recoloured, plain, masks)
    )
