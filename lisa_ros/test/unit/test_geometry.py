"""Tests of lisa_ros.geometry on synthetic scenes of known geometry.

Each scene is ray cast per pixel through a camera matrix (:func:`render`): a planar rectangle (a
box face, a tilted plane) in front of a wall, giving the depth image and the rectangle's exact
mask. The true centre and extents of the rectangle are known, so every test compares the estimate
with the truth; the scenes that test robustness (mask bleed, flying pixels) also check that a
plain mean would be wrong, so the test cannot pass by accident.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from lisa_ros.geometry import (
    GeometryError,
    Target3D,
    check_camera_matrix,
    depth_scale_factor,
    depth_to_meters,
    locate,
)

H, W = 720, 1280
K = np.array([[910.0, 0.0, 643.2], [0.0, 905.0, 356.8], [0.0, 0.0, 1.0]])
WALL_Z = 2.0


@dataclass(frozen=True)
class Rect:
    """A planar rectangle: its centre and two orthogonal half-axes (metres, optical frame)."""

    centre: tuple[float, float, float]
    half_u: tuple[float, float, float]
    half_v: tuple[float, float, float]

    def extents(self) -> tuple[np.ndarray, np.ndarray]:
        reach = np.abs(self.half_u) + np.abs(self.half_v)
        return np.asarray(self.centre) - reach, np.asarray(self.centre) + reach


# A box face of 0.20 x 0.15 m facing the camera at 0.8 m, off the optical axis.
BOX = Rect((0.05, -0.03, 0.8), (0.1, 0.0, 0.0), (0.0, 0.075, 0.0))
TILT = math.radians(35.0)
# The same face turned by 35 degrees about the y axis, at 0.9 m.
TILTED = Rect((-0.04, 0.02, 0.9), (0.1 * math.cos(TILT), 0.0, 0.1 * math.sin(TILT)), BOX.half_v)


def scaled_matrix(k: np.ndarray, s: int) -> np.ndarray:
    """K of the image downscaled by s (pixel centres at integer coordinates)."""
    out = k / s
    out[0, 2] = (k[0, 2] + 0.5) / s - 0.5
    out[1, 2] = (k[1, 2] + 0.5) / s - 0.5
    out[2] = (0.0, 0.0, 1.0)
    return out


def render(
    k: np.ndarray, shape: tuple[int, int], rect: Rect, wall_z: float = WALL_Z
) -> tuple[np.ndarray, np.ndarray]:
    """Ray cast every pixel centre through K: float32 depth (the rectangle where a ray hits it,
    else the wall) and the rectangle's mask."""
    v, u = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    # Rays with z = 1 (K's bottom row is (0, 0, 1)), so the ray parameter of a hit is its depth.
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(k).T
    centre, a, b = (
        np.asarray(p, dtype=np.float64) for p in (rect.centre, rect.half_u, rect.half_v)
    )
    normal = np.cross(a, b)
    t = (centre @ normal) / (rays @ normal)
    offset = rays * t[..., None] - centre
    inside = (np.abs(offset @ a) <= a @ a) & (np.abs(offset @ b) <= b @ b) & (t > 0)
    return np.where(inside, t, wall_z).astype(np.float32), inside


def project(k: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(row, col) image coordinates of 3D points."""
    uvw = points.astype(np.float64) @ k.T
    return np.stack([uvw[:, 1] / uvw[:, 2], uvw[:, 0] / uvw[:, 2]], axis=1)


def plain_mean(mask: np.ndarray, depth: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The naive estimate: the mean of every back-projected pixel under the mask."""
    rows, cols = np.nonzero(mask & np.isfinite(depth))
    z = depth[rows, cols].astype(np.float64)
    rays = np.stack([cols, rows, np.ones_like(cols)], axis=1) @ np.linalg.inv(k).T
    return (rays * z[:, None]).mean(axis=0)


def assert_target(target: Target3D, rect: Rect, centroid_tol: float, extent_tol: float) -> None:
    assert target.ok, target.reason
    assert target.reason == ""
    error = np.linalg.norm(target.centroid - np.asarray(rect.centre))
    assert error <= centroid_tol, f"centroid {target.centroid} off by {error * 1e3:.2f} mm"
    true_min, true_max = rect.extents()
    np.testing.assert_allclose(target.extent_min, true_min, atol=extent_tol)
    np.testing.assert_allclose(target.extent_max, true_max, atol=extent_tol)


@pytest.fixture(scope="module")
def box_scene() -> tuple[np.ndarray, np.ndarray]:
    return render(K, (H, W), BOX)


def test_box_face_in_front_of_a_wall(box_scene):
    depth, mask = box_scene
    target = locate(mask, depth, K)
    # Tighter than 1 cm on the extents: they lie 1 % inside the edges (the percentiles).
    assert_target(target, BOX, centroid_tol=1e-3, extent_tol=4e-3)
    np.testing.assert_allclose(target.size, (0.2, 0.15, 0.0), atol=0.008)
    assert target.valid_ratio == 1.0
    # Erosion by 3 px keeps nearly all of a ~180x140 px face.
    assert 0.8 * mask.sum() < target.num_points == len(target.points) == len(target.pixels)
    assert target.points.dtype == np.float32 and target.points.shape[1] == 3
    assert target.pixels.dtype == np.int32 and target.pixels.shape[1] == 2
    assert target.centroid.dtype == np.float64 and target.centroid.shape == (3,)
    assert target.extent_min.dtype == target.extent_max.dtype == np.float64
    np.testing.assert_allclose(target.points[:, 2], BOX.centre[2], atol=1e-5)


def test_target_is_frozen_and_size_is_the_extent(box_scene):
    depth, mask = box_scene
    target = locate(mask, depth, K)
    np.testing.assert_array_equal(target.size, target.extent_max - target.extent_min)
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.ok = False  # type: ignore[misc]


def test_tilted_plane():
    depth, mask = render(K, (H, W), TILTED)
    assert np.ptp(depth[mask]) > 0.1
    target = locate(mask, depth, K)
    # The face's centre is its area centroid; a plain mean of the pixels is pulled towards the
    # near side, which covers more pixels. The estimator weights pixels by their surface area.
    assert np.linalg.norm(plain_mean(mask, depth, K) - TILTED.centre) > 4e-3
    assert_target(target, TILTED, centroid_tol=2e-3, extent_tol=0.01)


def test_mask_bleeding_onto_the_wall(box_scene):
    depth, mask = box_scene
    bled = cv2.dilate(mask.view(np.uint8), np.ones((11, 11), np.uint8)).view(bool)
    assert bled.sum() > mask.sum() * 1.1
    assert np.linalg.norm(plain_mean(bled, depth, K) - BOX.centre) > 0.05
    assert_target(locate(bled, depth, K), BOX, centroid_tol=5e-3, extent_tol=0.01)
    # Without erosion the depth clustering alone drops the wall.
    assert_target(locate(bled, depth, K, erode_px=0), BOX, centroid_tol=5e-3, extent_tol=0.01)


def test_erosion_removes_bleed_onto_a_surface_close_behind():
    # A background 3 cm behind the face is within the depth clustering's gap: only the erosion
    # keeps a 3 px mask bleed off it.
    depth, mask = render(K, (H, W), BOX, wall_z=0.83)
    bled = cv2.dilate(mask.view(np.uint8), np.ones((7, 7), np.uint8)).view(bool)
    assert (locate(bled, depth, K, erode_px=0).points[:, 2] > 0.82).any()
    target = locate(bled, depth, K, erode_px=3)
    np.testing.assert_allclose(target.points[:, 2], BOX.centre[2], atol=1e-5)
    assert_target(target, BOX, centroid_tol=1e-3, extent_tol=0.01)


def test_missing_depth_at_random(box_scene):
    depth, mask = box_scene
    holes = np.random.default_rng(7).random(depth.shape) < 0.3
    depth = np.where(holes, np.float32(np.nan), depth)
    target = locate(mask, depth, K)
    assert_target(target, BOX, centroid_tol=5e-3, extent_tol=0.01)
    assert target.valid_ratio == pytest.approx(0.7, abs=0.01)
    assert np.isfinite(target.points).all()


def test_flying_pixels_at_the_edge(box_scene):
    depth, mask = box_scene
    square5 = np.ones((5, 5), np.uint8)
    # Two pixels either side of the face's edge read depths anywhere between face and wall.
    ring = cv2.dilate(mask.view(np.uint8), square5).view(bool) & ~cv2.erode(
        mask.view(np.uint8), square5
    ).view(bool)
    fraction = np.random.default_rng(3).random(depth.shape).astype(np.float32)
    flying = np.where(ring, depth + fraction * (WALL_Z - depth), depth).astype(np.float32)
    assert np.linalg.norm(plain_mean(mask, flying, K) - BOX.centre) > 0.01
    for erode_px in (3, 0):
        target = locate(mask, flying, K, erode_px=erode_px)
        assert_target(target, BOX, centroid_tol=5e-3, extent_tol=0.01)


def test_depth_at_half_resolution(box_scene):
    depth_full, mask = box_scene
    depth_half, _ = render(scaled_matrix(K, 2), (H // 2, W // 2), BOX)
    full = locate(mask, depth_full, K)
    half = locate(mask, depth_half, K)
    assert_target(half, BOX, centroid_tol=2e-3, extent_tol=0.01)
    assert np.linalg.norm(half.centroid - full.centroid) <= 2e-3
    assert half.valid_ratio == 1.0
    # A quarter of the points, each at the colour pixel in the centre of its 2x2 block.
    assert half.num_points == pytest.approx(full.num_points / 4, rel=0.05)
    assert (half.pixels % 2 == 1).all()
    assert mask[half.pixels[:, 0], half.pixels[:, 1]].all()
    # A depth pixel's centre is the centre of its 2x2 block, half a pixel before its pixel.
    np.testing.assert_allclose(project(K, half.points), half.pixels - 0.5, atol=0.01)


def test_depth_at_a_third_of_the_resolution():
    # 960x720 colour, 320x240 depth: each depth pixel's centre is its 3x3 block's centre pixel.
    k = K.copy()
    k[0, 2] = 481.0
    shape = (720, 960)
    depth_full, mask = render(k, shape, BOX)
    depth_third, _ = render(scaled_matrix(k, 3), (240, 320), BOX)
    third = locate(mask, depth_third, k)
    assert_target(third, BOX, centroid_tol=2e-3, extent_tol=0.01)
    assert np.linalg.norm(third.centroid - locate(mask, depth_full, k).centroid) <= 2e-3
    assert (third.pixels % 3 == 1).all()
    np.testing.assert_allclose(project(k, third.points), third.pixels, atol=0.01)


def test_depth_of_a_size_that_is_no_whole_fraction_is_refused(box_scene):
    _, mask = box_scene
    with pytest.raises(GeometryError, match=r"640x480.*1280x720"):
        locate(mask, np.ones((480, 640), np.float32), K)
    assert depth_scale_factor((720, 1280), (720, 1280)) == 1
    assert depth_scale_factor((720, 1280), (360, 640)) == 2
    assert depth_scale_factor((480, 960), (160, 320)) == 3
    # 1280/3 is not whole; different factors per axis; larger than the image; empty.
    for depth_hw in [(240, 427), (240, 320), (360, 641), (1440, 2560), (0, 0)]:
        with pytest.raises(GeometryError):
            depth_scale_factor((720, 1280), depth_hw)


def test_mask_without_usable_depth(box_scene):
    depth, mask = box_scene
    no_depth = np.where(mask, np.float32(np.nan), depth)
    target = locate(mask, no_depth, K)
    assert not target.ok
    assert "depth" in target.reason
    assert target.num_points == 0 and target.valid_ratio == 0.0
    assert target.points.shape == (0, 3) and target.points.dtype == np.float32
    assert target.pixels.shape == (0, 2) and target.pixels.dtype == np.int32
    assert np.isnan(target.centroid).all() and np.isnan(target.size).all()


def test_empty_mask(box_scene):
    depth, _ = box_scene
    target = locate(np.zeros((H, W), bool), depth, K)
    assert not target.ok and "empty" in target.reason
    assert target.num_points == 0 and target.valid_ratio == 0.0
    assert target.points.shape == (0, 3) and target.pixels.shape == (0, 2)


def test_all_zero_uint16_depth(box_scene):
    _, mask = box_scene
    target = locate(mask, depth_to_meters(np.zeros((H, W), np.uint16)), K)
    assert not target.ok and target.reason
    assert target.num_points == 0 and target.points.shape == (0, 3)


def test_mask_thinner_than_a_depth_pixel():
    mask = np.zeros((H, W), bool)
    # Only even rows: none is the centre (odd) row of a 2x2 block.
    mask[100:110:2, 200:300] = True
    target = locate(mask, np.ones((H // 2, W // 2), np.float32), K)
    assert not target.ok and "thinner" in target.reason


def test_depth_to_meters_float_invalid_values():
    raw = np.array([[np.nan, 0.0, np.inf], [-np.inf, -1.0, 1.5]])
    for dtype in (np.float32, np.float64):
        depth = raw.astype(dtype)
        meters = depth_to_meters(depth)
        assert meters.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(meters), [[True] * 3, [True, True, False]])
        assert meters[1, 2] == 1.5
        # The input is not modified.
        assert depth[0, 1] == 0.0
    np.testing.assert_allclose(depth_to_meters(np.array([[1500.0]]), unit_scale=0.001), [[1.5]])


def test_depth_to_meters_uint16_millimetres():
    depth = np.array([[0, 1, 1500, 65535]], np.uint16)
    meters = depth_to_meters(depth)
    assert meters.dtype == np.float32
    assert np.isnan(meters[0, 0])
    np.testing.assert_allclose(meters[0, 1:], [0.001, 1.5, 65.535], rtol=1e-6)
    # A camera counting in tenths of a millimetre.
    np.testing.assert_allclose(depth_to_meters(depth, unit_scale=1e-4)[0, 1:], [1e-4, 0.15, 6.5535])
    # Big-endian data is read by value.
    np.testing.assert_allclose(depth_to_meters(depth.astype(">u2"))[0, 2], 1.5)


def test_depth_to_meters_uint16_every_value():
    # Every possible reading, holes scattered among them: value * scale in float32, NaN for 0.
    depth = np.random.default_rng(5).permutation(np.arange(65536, dtype=np.uint16))
    depth = depth.reshape(256, 256)
    original = depth.copy()
    for unit_scale in (None, 1e-4, 0.00025):
        meters = depth_to_meters(depth, unit_scale=unit_scale)
        assert meters.dtype == np.float32 and meters.shape == depth.shape
        np.testing.assert_array_equal(np.isnan(meters), depth == 0)
        scale = np.float32(0.001 if unit_scale is None else unit_scale)
        expected = depth.astype(np.float32) * scale
        np.testing.assert_array_equal(meters[depth != 0], expected[depth != 0])
    np.testing.assert_array_equal(depth, original)


@pytest.mark.parametrize(
    "depth",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4), np.int16),
        np.zeros((4, 4), np.int32),
        np.zeros((4, 4), np.float16),
        np.zeros((4, 4, 1), np.uint16),
        np.zeros(4, np.float32),
    ],
)
def test_depth_to_meters_refuses_other_images(depth):
    with pytest.raises(GeometryError):
        depth_to_meters(depth)


@pytest.mark.parametrize("unit_scale", [0.0, -0.001, math.nan, math.inf])
def test_depth_to_meters_refuses_bad_unit_scale(unit_scale):
    with pytest.raises(GeometryError):
        depth_to_meters(np.ones((2, 2), np.uint16), unit_scale=unit_scale)


def test_skewed_camera_matrix():
    k_skew = K.copy()
    k_skew[0, 1] = 30.0
    # Far below the optical axis, where the skew term is large.
    rect = Rect((0.05, 0.15, 0.8), BOX.half_u, BOX.half_v)
    depth, mask = render(k_skew, (H, W), rect)
    target = locate(mask, depth, k_skew)
    assert_target(target, rect, centroid_tol=1e-3, extent_tol=0.01)
    # Ignoring the skew would be wrong by millimetres: the test sees it.
    assert np.linalg.norm(locate(mask, depth, K).centroid - rect.centre) > 2e-3
    # Every point projects back onto its pixel through the skewed K.
    np.testing.assert_allclose(project(k_skew, target.points), target.pixels, atol=0.01)
    # The same with depth at half resolution (skew scales like fx).
    depth_half, _ = render(scaled_matrix(k_skew, 2), (H // 2, W // 2), rect)
    assert_target(locate(mask, depth_half, k_skew), rect, centroid_tol=2e-3, extent_tol=0.01)


def test_check_camera_matrix_accepts_camera_info_k():
    k = check_camera_matrix(list(K.ravel()))
    assert k.shape == (3, 3) and k.dtype == np.float64
    np.testing.assert_array_equal(k, K)
    skewed = K.copy()
    skewed[0, 1] = 2.0
    np.testing.assert_array_equal(check_camera_matrix(skewed), skewed)


def _k_with(**entries: float) -> np.ndarray:
    k = K.copy()
    for name, value in entries.items():
        k[int(name[1]), int(name[2])] = value
    return k


@pytest.mark.parametrize(
    ("camera_matrix", "message"),
    [
        (np.zeros(9), "all zero"),
        (_k_with(k00=0.0), "fx"),
        (_k_with(k00=-910.0), "fx"),
        (_k_with(k11=0.0), "fy"),
        (_k_with(k02=np.nan), "non-finite"),
        (_k_with(k22=2.0), "bottom row"),
        (_k_with(k21=1.0), "bottom row"),
        (_k_with(k10=3.0), r"K\[1,0\]"),
        (np.eye(2), "3x3"),
        ([1.0, 2.0], "3x3"),
        ("K", "3x3"),
    ],
)
def test_check_camera_matrix_refuses(camera_matrix, message):
    with pytest.raises(GeometryError, match=message):
        check_camera_matrix(camera_matrix)


def test_locate_refuses_a_bad_camera_matrix(box_scene):
    depth, mask = box_scene
    with pytest.raises(GeometryError, match="all zero"):
        locate(mask, depth, np.zeros(9))


def test_depth_range_excludes_readings(box_scene):
    depth, mask = box_scene
    for kwargs in ({"min_depth": 0.9}, {"max_depth": 0.5}):
        target = locate(mask, depth, K, **kwargs)
        assert not target.ok and "[" in target.reason and target.num_points == 0
    # A mask bleeding onto the wall: wall readings beyond max_depth do not count as usable.
    bled = cv2.dilate(mask.view(np.uint8), np.ones((11, 11), np.uint8)).view(bool)
    target = locate(bled, depth, K, max_depth=1.5, erode_px=0)
    assert target.valid_ratio == pytest.approx(mask.sum() / bled.sum())
    assert target.num_points == mask.sum()
    assert (target.points[:, 2] <= 1.5).all()
    assert_target(target, BOX, centroid_tol=1e-3, extent_tol=0.01)
    # Readings nearer than min_depth do not count either.
    near = np.where(mask, np.float32(0.05), depth)
    assert not locate(mask, near, K).ok
    assert locate(mask, near, K, min_depth=0.01).ok


def test_pixels_index_the_colour_image(box_scene):
    depth, mask = box_scene
    target = locate(mask, depth, K)
    rows, cols = target.pixels[:, 0], target.pixels[:, 1]
    assert (rows >= 0).all() and (rows < H).all() and (cols >= 0).all() and (cols < W).all()
    assert mask[rows, cols].all()
    # Each point projects back onto its own pixel, and the pixels are distinct.
    np.testing.assert_allclose(project(K, target.points), target.pixels, atol=0.01)
    assert len(np.unique(rows * W + cols)) == target.num_points
    # A colour lookup through pixels gives each point its colour.
    colour = np.zeros((H, W, 3), np.uint8)
    colour[mask] = (200, 30, 10)
    assert (colour[rows, cols] == (200, 30, 10)).all()


def test_thin_object_keeps_points_by_eroding_less():
    # A 5 mm pole at 0.8 m is under 6 px wide: a 3 px erosion would leave nothing.
    pole = Rect((0.02, 0.0, 0.8), (0.0025, 0.0, 0.0), (0.0, 0.1, 0.0))
    depth, mask = render(K, (H, W), pole)
    assert cv2.erode(mask.view(np.uint8), np.ones((7, 7), np.uint8)).sum() == 0
    target = locate(mask, depth, K)
    assert_target(target, pole, centroid_tol=1e-3, extent_tol=0.01)
    assert target.num_points >= 0.25 * mask.sum()


def test_object_cut_by_the_image_border():
    # The face runs past the left border. The target describes its visible part: the border
    # erodes like any other edge of the mask, so the centroid is not pulled off the border.
    rect = Rect((-0.55, 0.0, 0.8), BOX.half_u, BOX.half_v)
    depth, mask = render(K, (H, W), rect)
    assert mask[:, 0].any()
    target = locate(mask, depth, K)
    assert target.ok
    left_edge = (0 - K[0, 2]) / K[0, 0] * 0.8
    right_edge = rect.centre[0] + rect.half_u[0]
    assert target.centroid[0] == pytest.approx((left_edge + right_edge) / 2, abs=1e-3)
    assert target.extent_min[0] == pytest.approx(left_edge, abs=3e-3)
    assert target.extent_max[0] == pytest.approx(right_edge, abs=3e-3)
    assert target.pixels[:, 1].min() == 3


@pytest.mark.parametrize(
    ("mask", "depth", "match"),
    [
        (np.zeros((H, W), np.uint8), np.ones((H, W), np.float32), "boolean"),
        (np.zeros((H, W, 1), bool), np.ones((H, W), np.float32), "boolean"),
        (np.zeros((H, W), bool).tolist(), np.ones((H, W), np.float32), "boolean"),
        (np.zeros((H, W), bool), np.ones((H, W), np.uint16), "depth_to_meters"),
        (np.zeros((H, W), bool), np.ones((H, W, 1), np.float32), "depth_to_meters"),
        (np.zeros((H, W), bool), np.ones((W, H), np.float32), "width x height"),
    ],
)
def test_locate_refuses_malformed_input(mask, depth, match):
    with pytest.raises(GeometryError, match=match):
        locate(mask, depth, K)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_depth": 0.0},
        {"min_depth": 2.0, "max_depth": 1.0},
        {"max_depth": math.inf},
        {"erode_px": -1},
    ],
)
def test_locate_refuses_bad_parameters(box_scene, kwargs):
    depth, mask = box_scene
    with pytest.raises(GeometryError):
        locate(mask, depth, K, **kwargs)


def _scene(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(mask, depth, K, locate keywords) of one of the scenes above, by name."""
    if name == "tilted":
        depth, mask = render(K, (H, W), TILTED)
        return mask, depth, K, {}
    if name.startswith("skew"):
        k_skew = K.copy()
        k_skew[0, 1] = 30.0
        rect = Rect((0.05, 0.15, 0.8), BOX.half_u, BOX.half_v)
        depth, mask = render(k_skew, (H, W), rect)
        if name == "skew at half resolution":
            depth, _ = render(scaled_matrix(k_skew, 2), (H // 2, W // 2), rect)
        return mask, depth, k_skew, {}
    depth, mask = render(K, (H, W), BOX)
    if name == "half resolution":
        depth, _ = render(scaled_matrix(K, 2), (H // 2, W // 2), BOX)
    elif name == "holes":
        holes = np.random.default_rng(7).random(depth.shape) < 0.3
        depth = np.where(holes, np.float32(np.nan), depth)
    elif name.startswith("bleeding"):
        mask = cv2.dilate(mask.view(np.uint8), np.ones((11, 11), np.uint8)).view(bool)
        return mask, depth, K, {"erode_px": 0} if name.endswith("no erosion") else {}
    return mask, depth, K, {}


SCENES = [
    "box",
    "tilted",
    "skew",
    "skew at half resolution",
    "half resolution",
    "holes",
    "bleeding",
    "bleeding, no erosion",
]


@pytest.mark.parametrize("scene", SCENES)
def test_without_points_the_target_is_the_same(scene):
    mask, depth, k, kwargs = _scene(scene)
    full = locate(mask, depth, k, **kwargs)
    lean = locate(mask, depth, k, with_points=False, **kwargs)
    assert full.ok and lean.ok and lean.reason == ""
    # The centroid does not come from the points in either case, and the percentiles take the
    # same sample of the inliers: equal up to float rounding.
    np.testing.assert_allclose(lean.centroid, full.centroid, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(lean.extent_min, full.extent_min, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(lean.extent_max, full.extent_max, rtol=1e-6, atol=1e-9)
    assert lean.num_points == full.num_points == len(full.points) > 0
    assert lean.valid_ratio == full.valid_ratio
    assert lean.points.shape == (0, 3) and lean.points.dtype == np.float32
    assert lean.pixels.shape == (0, 2) and lean.pixels.dtype == np.int32
    assert lean.centroid.dtype == lean.extent_min.dtype == np.float64


@pytest.mark.parametrize("scene", SCENES)
def test_centroid_is_the_weighted_mean_of_the_points(scene):
    # The centroid is summed over the crop, not over the points: it must still be the z**3
    # weighted mean of the returned points. To 10 micrometres, the bound of the float32 row sums
    # (by the CPU's BLAS kernel, whose order and rounding differ between CPUs: 1.07 um here, on
    # scenes of 9k-38k points). So this checks the summation; which points are kept, the tests
    # above check.
    mask, depth, k, kwargs = _scene(scene)
    target = locate(mask, depth, k, **kwargs)
    points = target.points.astype(np.float64)
    weights = points[:, 2] ** 3
    expected = (weights[:, None] * points).sum(axis=0) / weights.sum()
    np.testing.assert_allclose(target.centroid, expected, rtol=0, atol=1e-5)


def test_without_points_failures_are_the_same(box_scene):
    depth, mask = box_scene
    for args in (
        (np.zeros((H, W), bool), depth, K),
        (mask, np.where(mask, np.float32(np.nan), depth), K),
    ):
        lean = locate(*args, with_points=False)
        full = locate(*args)
        assert not lean.ok and lean.reason == full.reason
        assert lean.num_points == 0 and lean.valid_ratio == full.valid_ratio
        assert lean.points.shape == (0, 3) and lean.pixels.shape == (0, 2)


def test_float64_depth_gives_the_same_target(box_scene):
    depth, mask = box_scene
    a = locate(mask, depth, K)
    b = locate(mask, depth.astype(np.float64), K)
    np.testing.assert_allclose(a.centroid, b.centroid, atol=1e-6)
    assert a.num_points == b.num_points and b.points.dtype == np.float32


def test_a_single_usable_pixel_is_a_target():
    mask = np.zeros((H, W), bool)
    mask[300:310, 400:410] = True
    depth = np.full((H, W), np.nan, np.float32)
    depth[305, 404] = 1.25
    target = locate(mask, depth, K)
    assert target.ok and target.num_points == 1
    np.testing.assert_array_equal(target.pixels, [[305, 404]])
    assert target.centroid[2] == pytest.approx(1.25)
    assert target.valid_ratio == pytest.approx(0.01)


# Up to five depth pixels (row, col), relative to a corner: along a row, down a column, scattered.
FEW_PIXEL_LAYOUTS = {
    "row": [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)],
    "column": [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)],
    "scattered": [(0, 0), (2, 3), (4, 1), (1, 4), (3, 2)],
}


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("layout", list(FEW_PIXEL_LAYOUTS))
@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_a_few_usable_pixels_are_a_target(count, layout, scale):
    # A handful of points is where OpenCV's bindings read arrays as scalars (which ones depends
    # on the release): each count must give the target worked out here from the pixels alone.
    # The mask is a block of 21 x 21 depth pixels; the readings lie well inside it, where the
    # erosion (3 colour pixels: ceil(3 / scale) depth pixels) keeps them all.
    corner = (150, 200)
    offsets = FEW_PIXEL_LAYOUTS[layout][:count]
    # Row-major, the order of locate's points.
    depth_pixels = sorted((corner[0] + dv, corner[1] + du) for dv, du in offsets)
    z = np.float32(1.0) + np.float32(0.01) * np.arange(count, dtype=np.float32)  # within 5 %
    depth = np.full((H // scale, W // scale), np.nan, np.float32)
    for (v, u), reading in zip(depth_pixels, z, strict=True):
        depth[v, u] = reading
    mask = np.zeros((H, W), bool)
    rows0, cols0 = (corner[0] - 8) * scale, (corner[1] - 8) * scale
    mask[rows0 : rows0 + 21 * scale, cols0 : cols0 + 21 * scale] = True

    # By hand: back-project through the depth image's K, weight by z**3.
    k = scaled_matrix(K, scale)
    v, u = np.array(depth_pixels, dtype=np.float64).T
    z64 = z.astype(np.float64)
    points = np.stack([(u - k[0, 2]) / k[0, 0] * z64, (v - k[1, 2]) / k[1, 1] * z64, z64], axis=1)
    weights = z64**3
    centroid = (weights[:, None] * points).sum(axis=0) / weights.sum()
    # Nearest-rank percentiles of at most five points are their minimum and maximum; x and y are
    # widened by the erosion's radius at the centroid's depth.
    radius = -(-3 // scale)
    margin = np.array([radius / k[0, 0], radius / k[1, 1], 0.0]) * centroid[2]

    for with_points in (True, False):
        target = locate(mask, depth, K, with_points=with_points)
        assert target.ok, target.reason
        assert target.num_points == count
        assert target.valid_ratio == pytest.approx(count / 21**2)
        np.testing.assert_allclose(target.centroid, centroid, rtol=0, atol=1e-6)
        np.testing.assert_allclose(target.extent_min, points.min(0) - margin, rtol=0, atol=1e-6)
        np.testing.assert_allclose(target.extent_max, points.max(0) + margin, rtol=0, atol=1e-6)
        if not with_points:
            assert target.points.shape == (0, 3) and target.pixels.shape == (0, 2)
            continue
        assert target.points.shape == (count, 3) and target.points.dtype == np.float32
        assert target.pixels.shape == (count, 2) and target.pixels.dtype == np.int32
        np.testing.assert_allclose(target.points, points, rtol=0, atol=1e-6)
        # Each depth pixel stands for the colour pixel at the centre of its block.
        np.testing.assert_array_equal(target.pixels, np.array(depth_pixels) * scale + scale // 2)


def test_module_imports_without_ros():
    code = (
        "import sys\n"
        "sys.modules['rclpy'] = None\n"
        "import lisa_ros.geometry\n"
        "assert not any(name.startswith(('rclpy', 'torch')) for name in sys.modules if "
        "sys.modules[name] is not None), 'ROS or torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
