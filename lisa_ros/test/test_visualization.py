"""Tests of lisa_ros.visualization on real arrays: colours, labels, what is left untouched, edges."""

import numpy as np
import pytest

from lisa_ros.visualization import draw_overlay, label_image, mask_colors

HEIGHT, WIDTH = 240, 320


def _gradient_image(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A deterministic image in which every pixel differs from its neighbours, unlike a flat fill."""
    y, x = np.mgrid[:height, :width]
    return np.stack([(x * 7) % 256, (y * 5) % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def _box_mask(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def _two_boxes() -> np.ndarray:
    """Two overlapping boxes in the upper half of the image (away from the text band)."""
    return np.stack([_box_mask(20, 20, 100, 140), _box_mask(60, 100, 110, 200)])


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
    "bad", [np.zeros((4, 4), dtype=bool), np.zeros((1, 4, 4), dtype=np.float32)], ids=["2d", "float logits"]
)
def test_label_image_rejects_wrong_masks(bad):
    with pytest.raises(ValueError):
        label_image(bad)


# --- draw_overlay -----------------------------------------------------------------------------


def test_overlay_colours_mask_pixels_and_leaves_the_rest():
    image = _gradient_image()
    masks = _two_boxes()
    overlay = draw_overlay(image, masks, "", alpha=0.5)

    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    inside = masks.any(axis=0)
    np.testing.assert_array_equal(overlay[~inside], image[~inside])
    assert (overlay[inside] != image[inside]).any(axis=-1).all()


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


def test_overlay_outlines_masks_from_inside_in_full_colour():
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    masks = _box_mask(20, 20, 100, 140)[None]
    overlay = draw_overlay(image, masks, "", alpha=0.3)
    color = mask_colors(1)[0]

    np.testing.assert_array_equal(overlay[20, 60], color)  # top edge, inside the mask
    np.testing.assert_array_equal(overlay[60, 139], color)  # right edge, inside the mask
    assert not overlay[19, 60].any() and not overlay[60, 140].any()  # just outside: untouched
    assert (overlay[60, 80] < color).any()  # interior: blended, not opaque


def test_overlay_alpha_extremes():
    image = _gradient_image()
    masks = _box_mask(30, 30, 90, 90)[None]
    color = mask_colors(1)[0]
    np.testing.assert_array_equal(draw_overlay(image, masks, "", alpha=0.0)[60, 60], image[60, 60])
    np.testing.assert_array_equal(draw_overlay(image, masks, "", alpha=1.0)[60, 60], color)


def test_overlay_does_not_modify_its_input():
    image = _gradient_image()
    before = image.copy()
    draw_overlay(image, _two_boxes(), "Sure, [SEG] and [SEG].")
    np.testing.assert_array_equal(image, before)


def test_overlay_text_is_drawn_on_a_dark_band_at_the_bottom():
    image = np.full((HEIGHT, WIDTH, 3), 200, dtype=np.uint8)
    overlay = draw_overlay(image, np.zeros((0, HEIGHT, WIDTH), dtype=bool), "Sure, it is the mug.")

    changed_rows = np.flatnonzero((overlay != image).any(axis=(1, 2)))
    assert changed_rows.size > 0
    assert changed_rows.min() > HEIGHT // 2 and changed_rows.max() == HEIGHT - 1
    band = overlay[changed_rows.min() :]
    assert np.median(band) < 100  # darkened
    assert (band > 230).all(axis=-1).any()  # white letters on it

    no_text = draw_overlay(image, np.zeros((0, HEIGHT, WIDTH), dtype=bool), "Sure", draw_text=False)
    np.testing.assert_array_equal(no_text, image)


def _has_pixels_near(image: np.ndarray, color: np.ndarray, tolerance: float = 40.0) -> bool:
    return bool((np.linalg.norm(image.astype(float) - color, axis=-1) < tolerance).any())


def test_overlay_writes_seg_tokens_in_their_mask_colours():
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


def test_long_text_wraps_and_stays_within_a_band_of_limited_height():
    image = np.full((HEIGHT, WIDTH, 3), 200, dtype=np.uint8)
    no_masks = np.zeros((0, HEIGHT, WIDTH), dtype=bool)
    short = draw_overlay(image, no_masks, "A short answer.")
    long = draw_overlay(image, no_masks, "A much longer answer that cannot fit on one line " * 3)
    huge = draw_overlay(image, no_masks, "word " * 2000)

    def band_height(overlay):
        return HEIGHT - np.flatnonzero((overlay != image).any(axis=(1, 2))).min()

    assert band_height(long) > band_height(short)
    assert band_height(huge) <= 0.45 * HEIGHT


def test_overlay_handles_unusual_text():
    image = _gradient_image()
    masks = _two_boxes()
    for text in ["Ünïcödé — ok ✓", "[SEG][SEG][SEG]", "a" * 500, "line one\nline two", "   "]:
        overlay = draw_overlay(image, masks, text)
        assert overlay.shape == image.shape


def test_overlay_without_masks_is_the_image():
    image = _gradient_image()
    overlay = draw_overlay(image, np.zeros((0, HEIGHT, WIDTH), dtype=bool), "")
    np.testing.assert_array_equal(overlay, image)


@pytest.mark.parametrize("height,width", [(1, 1), (1, 7), (5, 3), (31, 200)])
def test_overlay_on_tiny_images(height, width):
    image = np.full((height, width, 3), 50, dtype=np.uint8)
    masks = np.zeros((2, height, width), dtype=bool)
    masks[0, 0, 0] = True
    overlay = draw_overlay(image, masks, "Sure, [SEG] and [SEG].")
    assert overlay.shape == image.shape
    assert (overlay[0, 0] != 50).any()
    assert (overlay.reshape(-1, 3)[1:] == 50).all()  # too small for text: nothing else changes


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
