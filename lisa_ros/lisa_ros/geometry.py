"""From a 2D segmentation mask and an aligned depth image to a robust 3D target, without ROS.

A robot acting on LISA's answer (a grasp planner, a navigation goal) needs a 3D point and a rough
box, not a mask. :func:`locate` back-projects the depth pixels under a mask through the colour
camera's matrix ``K`` and summarises them as a :class:`Target3D`: a centroid and per-axis extents
in the camera optical frame (x right, y down, z forward, metres), plus the 3D points it used and
the colour pixel of each (unless told not to build them: ``with_points=False``). The module
needs numpy and OpenCV only, so it runs in tests, tools and the node alike.

Why not simply average the depth under the mask: mask and depth disagree at the object's edge.
SAM-style masks bleed a few pixels over the edge onto whatever lies behind; depth cameras leave
holes (no reading) and "flying pixels" (depths between the object's and the background's) along
the same edges. A wall 1.2 m behind a box, caught by a 5-pixel bleed, moves a plain mean by
more than ten centimetres. So the estimator works in four steps:

1. **Erode.** The mask is eroded by ``erode_px`` colour pixels (``ceil(erode_px / s)`` pixels at
   the depth resolution, see below), which removes the bleed and most flying pixels. The
   structuring element is a square: it erodes exactly ``erode_px`` along x and y, the axes of the
   extents, and more on diagonal edges, which does no harm. The image border counts as an edge
   too, so an object cut by the frame is eroded evenly and keeps the centre of its visible part.
   A thin object could vanish, so when the eroded core keeps less than a quarter of the mask's
   usable depth pixels the erosion is retried with a smaller radius, down to none.
2. **Keep the depth cluster that holds the median.** Depths of the core go into a histogram over
   log-depth (bins 1 % of the depth wide: every depth gets the same relative resolution). The
   cluster grows from the median's bin through the *dense* bins (those holding at least 2 % of
   the busiest bin near the median) as long as consecutive dense bins are at most 5 % of the
   depth apart, plus one bin on either side for the tails of the depth noise. A tilted surface
   has continuous depth and stays one cluster; a wall far behind is another cluster; flying
   pixels, spread thinly over the whole range between object and wall, are too sparse to bridge
   the two. When all depths lie within 5 % of each other there is nothing to separate. This
   relies on the object holding the median of the core, true of any mask that is mostly the
   object once the bleed is eroded away; a mask that is mostly background locates the
   background.
3. **Centroid.** The inliers are the core pixels whose depth lies in the cluster. Their centroid
   weights each point by the area its pixel covers on the surface, so that it is the centre of
   the visible surface and not pulled towards the near part of a surface tilted away from the
   camera (which covers more pixels per square centimetre). A pixel covers
   ``z**2 / (fx * fy * (n . d))`` of a surface with normal ``n`` along its ray
   ``d = (x/z, y/z, 1)``; on a plane ``n . d`` is proportional to ``1/z``, so the weight is
   ``z**3``. That is exact for flat faces (a plain mean moves the centre of a plane tilted by 35
   degrees at 0.9 m by about 6 mm), the plain mean for a surface facing the camera, and close on
   curved objects, whose depth varies little over the object.
4. **Extents.** Per axis, the 1st and 99th percentiles of the inliers (robust to the few strays
   that survive), widened on x and y by the erosion actually applied (``radius * z / f`` at the
   centroid's depth), so that they describe the object rather than its eroded core. They lie
   about 1 % of the size inside the true edges, and as they come from a sample of the inliers
   (below) they may be off by a few millimetres more on a large object. z is not widened: the
   erosion removed the rim of the object's image, not its front or back.

Depth may have the colour image's size or that size divided by a whole number ``s`` (640x360
depth registered to 1280x720 colour). Depth pixel ``(v, u)`` then stands for the ``s x s`` block
of colour pixels starting at ``(v*s, u*s)``. It belongs to the mask when the colour pixel at the
block's centre, ``(v*s + s//2, u*s + s//2)``, does (so every reported pixel lies in the mask),
and it is back-projected with the matrix of the downscaled image: ``fx/s``, ``fy/s``, ``skew/s``,
``cx' = (cx + 0.5)/s - 0.5`` and ``cy' = (cy + 0.5)/s - 0.5`` (pixel centres at integers).

``K`` may have a non-zero skew ``K[0, 1]``: points are back-projected with the exact inverse of
the upper-triangular ``K`` (``y = (v - cy)/fy * z``, ``x = (u - cx - skew*y/z)/fx * z``). Only
the erosion margin of the extents ignores the skew, a sub-millimetre effect for any real camera.

Speed: the node calls :func:`locate` for every mask of every frame. All work is confined to the
mask's bounding box (found with OpenCV and numpy row and column reductions). The histogram is
built from a grid sample of the core (4096 to 16384 depths) and the percentiles from an evenly
strided sample of at most 2048 inliers, so nothing sorts or partitions all the points. The
centroid needs no per-point arrays either: with ``w = z**3``, the sum of ``w*y`` is
``y/z`` of each row times the row's sum of ``w*z``, and likewise for x per column, so it comes
from a few passes over the crop and one small matrix product. Only the ``points`` and ``pixels``
of the result are built point by point (gathers and interleaves over the inliers), about as
much work again; ``with_points=False`` skips them and back-projects only the percentile sample,
the same points either way, so the centroid and extents do not depend on it.

Its length: one method (core, cluster, centroid, extents) with the reasoning above and the checks
of its inputs (depth units and size, camera matrix), shared by the node, ``lisa-segment`` and
``lisa-ask``.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

__all__ = [
    "GeometryError",
    "Target3D",
    "check_camera_matrix",
    "depth_scale_factor",
    "depth_to_meters",
    "locate",
]

# Metres per unit of a 16UC1 depth image: millimetres (REP 118).
_UINT16_METERS_PER_UNIT = 0.001
# Tolerance on the entries of K that must be exactly 0 or 1 (bottom row, K[1, 0]).
_K_TOLERANCE = 1e-9

# Erosion falls back to a smaller radius when the eroded core keeps less than this fraction of
# the mask's usable depth pixels.
_MIN_CORE_FRACTION = 0.25
# Histogram bins are this much of the depth wide (log-depth bins).
_BIN_RELATIVE_WIDTH = 0.01
# Two dense bins further apart than this fraction of the depth split the cluster.
_MAX_GAP_RELATIVE = 0.05
# A bin is dense when it holds this fraction of the busiest bin near the median.
_DENSE_FRACTION = 0.02
# The histogram takes every k-th row and column of the core, k chosen to keep at least this
# many depths (and fewer than four times as many); the percentiles take every k-th inlier, k
# chosen to keep at most _PERCENTILE_SAMPLES points.
_HISTOGRAM_SAMPLES = 4096
_PERCENTILE_SAMPLES = 2048
# Percentiles (in %) that bound the extents.
_LOW_PERCENTILE = 1.0
_HIGH_PERCENTILE = 99.0


class GeometryError(ValueError):
    """Malformed input to this module (camera matrix, image sizes, dtypes); the message says what
    to do about it. Missing data (an empty mask, no depth under it) is not an error:
    :func:`locate` returns a :class:`Target3D` with ``ok=False`` instead."""


@dataclass(frozen=True, eq=False)
class Target3D:
    """Where a mask's object is in 3D, in the camera optical frame (metres; x right, y down, z
    forward). When ``ok`` is False, ``reason`` says why, the vectors are NaN and ``points`` and
    ``pixels`` are empty; they are empty as well when :func:`locate` ran with
    ``with_points=False``. Compared by identity (the fields are arrays)."""

    ok: bool
    # '' when ok; otherwise one sentence why.
    reason: str
    # (3,) float64: mean of the inlier points, weighted by the surface area of their pixels.
    centroid: np.ndarray
    # (3,) float64: robust lower and upper bounds of the object's points per axis.
    extent_min: np.ndarray
    extent_max: np.ndarray
    # Number of inlier points the centroid was estimated from: == len(points), unless locate ran
    # with with_points=False (points empty).
    num_points: int
    # Fraction of the mask's pixels (at depth resolution) with usable depth; 0.0 for an empty mask.
    valid_ratio: float
    # (N, 3) float32: the inlier points the centroid was estimated from; (0, 3) when locate ran
    # with with_points=False.
    points: np.ndarray
    # (N, 2) int32: (row, col) in the colour image of each point; (0, 2) when locate ran with
    # with_points=False.
    pixels: np.ndarray

    @property
    def size(self) -> np.ndarray:
        """(3,) float64: ``extent_max - extent_min`` (NaN when not ok)."""
        return self.extent_max - self.extent_min


def _failure(reason: str, valid_ratio: float) -> Target3D:
    nan3 = np.full(3, np.nan)
    return Target3D(
        ok=False,
        reason=reason,
        centroid=nan3,
        extent_min=nan3.copy(),
        extent_max=nan3.copy(),
        num_points=0,
        valid_ratio=float(valid_ratio),
        points=np.empty((0, 3), dtype=np.float32),
        pixels=np.empty((0, 2), dtype=np.int32),
    )


def depth_to_meters(depth: np.ndarray, unit_scale: float | None = None) -> np.ndarray:
    """Depth image -> float32 metres with NaN for every pixel without a usable reading.

    ``uint16`` is read as millimetres (16UC1; 0 = no reading); ``float32``/``float64`` as metres
    (32FC1; NaN, +-inf, 0 and negative values = no reading). ``unit_scale`` overrides the metres
    per unit (a uint16 camera that does not count in millimetres) and also multiplies float input.
    Any other dtype, or an image that is not 2-D, raises :class:`GeometryError`.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise GeometryError(
            f"depth must be a single-channel (H, W) image, got shape {depth.shape}; "
            "pass the 16UC1 or 32FC1 depth image itself"
        )
    if unit_scale is not None:
        unit_scale = float(unit_scale)
        if not (math.isfinite(unit_scale) and unit_scale > 0):
            raise GeometryError(f"unit_scale must be a positive number of metres, got {unit_scale}")
    kind, itemsize = depth.dtype.kind, depth.dtype.itemsize
    if kind == "u" and itemsize == 2:
        scale = _UINT16_METERS_PER_UNIT if unit_scale is None else unit_scale
        meters = depth.astype(np.float32)
        # No masked assignment (meters[depth == 0] = nan): on scattered holes it mispredicts a
        # branch per pixel and costs three times the rest. Instead multiply by depth / depth,
        # exactly 1 for a reading and NaN (0/0) for a hole.
        with np.errstate(invalid="ignore"):
            one_or_nan = np.divide(meters, meters)
        meters *= np.float32(scale)
        meters *= one_or_nan
        return meters
    if kind == "f" and itemsize in (4, 8):
        meters = depth.astype(np.float32)
        if unit_scale is not None:
            meters *= np.float32(unit_scale)
        # NaN fails both tests; float64 values beyond float32's range became inf above.
        unusable = ~(meters > 0)
        unusable |= meters == np.inf
        meters[unusable] = np.nan
        return meters
    raise GeometryError(
        f"depth dtype {depth.dtype} is not supported: expected uint16 millimetres (16UC1) or "
        "float32/float64 metres (32FC1); convert the image to one of them first"
    )


def _size_pair(hw, what: str) -> tuple[int, int]:
    try:
        height, width = (operator.index(n) for n in hw)
    except (TypeError, ValueError) as exc:
        raise GeometryError(
            f"{what} size must be two integers (height, width), got {hw!r}"
        ) from exc
    if height <= 0 or width <= 0:
        raise GeometryError(f"{what} size must be positive, got {height}x{width} (height x width)")
    return height, width


def depth_scale_factor(image_hw: tuple[int, int], depth_hw: tuple[int, int]) -> int:
    """The whole number ``s`` with depth size == image size / s on both axes (1: same size).

    Raises :class:`GeometryError`, naming both sizes, when there is none.
    """
    image_h, image_w = _size_pair(image_hw, "image")
    depth_h, depth_w = _size_pair(depth_hw, "depth")
    scale = image_h // depth_h
    if scale < 1 or depth_h * scale != image_h or depth_w * scale != image_w:
        raise GeometryError(
            f"the depth image is {depth_w}x{depth_h} and the colour image {image_w}x{image_h} "
            "(width x height): depth must be the colour image's size divided by a whole number "
            "(for 1280x720: 1280x720, 640x360, ...); use depth registered to the colour camera "
            "(e.g. the driver's aligned_depth_to_color image)"
        )
    return scale


def check_camera_matrix(camera_matrix) -> np.ndarray:
    """A pinhole camera matrix K as a (3, 3) float64 array, or :class:`GeometryError`.

    Accepts a (3, 3) array or 9 numbers in row-major order (``CameraInfo.k``). K must be finite,
    upper triangular with ``fx > 0``, ``fy > 0`` and bottom row ``(0, 0, 1)``; a non-zero skew
    ``K[0, 1]`` is allowed.
    """
    try:
        k = np.array(camera_matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GeometryError(
            f"camera matrix K must be 3x3 numbers or 9 numbers (CameraInfo.k): {exc}"
        ) from exc
    if k.shape == (9,):
        k = k.reshape(3, 3)
    if k.shape != (3, 3):
        raise GeometryError(
            f"camera matrix K must be 3x3 or 9 numbers (CameraInfo.k), got shape {k.shape}"
        )
    if not np.isfinite(k).all():
        raise GeometryError(f"camera matrix K has non-finite entries; fix the calibration: {k}")
    if not k.any():
        raise GeometryError(
            "K is all zero: the camera_info is missing or the camera is uncalibrated; "
            "calibrate the camera or wait for its camera_info"
        )
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise GeometryError(
            f"camera matrix K needs fx = K[0,0] > 0 and fy = K[1,1] > 0, got fx={k[0, 0]}, "
            f"fy={k[1, 1]}; check the calibration"
        )
    if (
        abs(k[2, 0]) > _K_TOLERANCE
        or abs(k[2, 1]) > _K_TOLERANCE
        or abs(k[2, 2] - 1) > _K_TOLERANCE
    ):
        raise GeometryError(
            f"camera matrix K must have bottom row (0, 0, 1), got {tuple(k[2])}; "
            "pass the intrinsic matrix K (CameraInfo.k), not P or a scaled matrix"
        )
    if abs(k[1, 0]) > _K_TOLERANCE:
        raise GeometryError(
            f"camera matrix K must have K[1,0] = 0 (upper triangular), got {k[1, 0]}; "
            "pass CameraInfo.k in row-major order, not transposed"
        )
    return k


def _check_mask(mask) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.ndim != 2:
        what = (
            f"dtype {mask.dtype}, shape {mask.shape}"
            if isinstance(mask, np.ndarray)
            else type(mask).__name__
        )
        raise GeometryError(
            f"mask must be a boolean (H, W) numpy array at the colour image's size, got {what}; "
            "convert with mask > 0"
        )
    return mask


def _check_depth(depth_m) -> np.ndarray:
    if (
        not isinstance(depth_m, np.ndarray)
        or depth_m.dtype not in (np.float32, np.float64)
        or depth_m.ndim != 2
    ):
        what = (
            f"dtype {depth_m.dtype}, shape {depth_m.shape}"
            if isinstance(depth_m, np.ndarray)
            else type(depth_m).__name__
        )
        raise GeometryError(
            f"depth_m must be a float32 (H, W) array of metres with NaN where there is no "
            f"reading, got {what}; convert the depth image with depth_to_meters()"
        )
    return depth_m


def _check_range(min_depth, max_depth) -> tuple[float, float]:
    min_depth, max_depth = float(min_depth), float(max_depth)
    if not (math.isfinite(min_depth) and math.isfinite(max_depth) and 0 < min_depth < max_depth):
        raise GeometryError(
            "need finite 0 < min_depth < max_depth (metres), "
            f"got min_depth={min_depth}, max_depth={max_depth}"
        )
    return min_depth, max_depth


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(row0, row1, col0, col1), ends exclusive, of the mask's True pixels; None when empty."""
    mask8 = mask.view(np.uint8)
    if mask8.strides[1] != 1:
        mask8 = np.ascontiguousarray(mask8)
    row_counts = cv2.reduce(mask8, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    rows = np.flatnonzero(row_counts)
    if rows.size == 0:
        return None
    row0, row1 = int(rows[0]), int(rows[-1]) + 1
    # Down the rows numpy's max beats cv2.reduce (and cv2's REDUCE_MAX is slow on uint8).
    cols = np.flatnonzero(mask8[row0:row1].max(axis=0))
    return row0, row1, int(cols[0]), int(cols[-1]) + 1


@lru_cache(maxsize=16)
def _square(radius: int) -> np.ndarray:
    return np.ones((2 * radius + 1, 2 * radius + 1), dtype=np.uint8)


def _core(
    mask8: np.ndarray, usable: np.ndarray, radius: int, num_usable: int
) -> tuple[np.ndarray, int, int]:
    """The eroded mask's pixels with usable depth, their number, and the erosion radius that made
    them: the largest radius up to ``radius`` that keeps enough of the ``num_usable`` pixels."""
    for r in range(radius, 0, -1):
        # Outside the crop counts as outside the mask: true around the bounding box, and at the
        # image border it erodes the visible part of a cut object evenly from all sides.
        eroded = cv2.erode(mask8, _square(r), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        core = eroded.view(np.bool_)
        core &= usable
        kept = np.count_nonzero(core)
        if kept > 0 and kept >= _MIN_CORE_FRACTION * num_usable:
            return core, kept, r
    return mask8.view(np.bool_) & usable, num_usable, 0


def _depth_cluster(sample: np.ndarray) -> tuple[float, float] | None:
    """(low, high) depth bounds of the cluster holding the median of the (1-D, positive) depths
    ``sample``, or None when the cluster holds them all."""
    z_min, z_max = float(sample.min()), float(sample.max())
    # Depths all within one gap of each other: nothing to separate.
    if math.log(z_max / z_min) <= math.log1p(_MAX_GAP_RELATIVE):
        return None
    bin_width = math.log1p(_BIN_RELATIVE_WIDTH)
    log_z_min = math.log(z_min)
    bins = np.log(sample)
    bins -= log_z_min
    bins *= 1.0 / bin_width
    counts = np.bincount(bins.astype(np.intp))
    last = counts.size - 1
    median_bin = int(np.searchsorted(np.cumsum(counts), (sample.size - 1) // 2, side="right"))
    max_step = max(1, round(math.log1p(_MAX_GAP_RELATIVE) / bin_width))
    near_median = counts[max(0, median_bin - max_step) : median_bin + max_step + 1]
    dense = np.flatnonzero(counts >= max(1.0, _DENSE_FRACTION * float(near_median.max())))
    # Seed: the median's bin, or the dense bin nearest to it (the nearer one on a tie).
    j = int(np.searchsorted(dense, median_bin))
    if j == dense.size or (
        dense[j] != median_bin and j > 0 and median_bin - dense[j - 1] <= dense[j] - median_bin
    ):
        j -= 1
    breaks_up = np.flatnonzero(np.diff(dense[j:]) > max_step)
    high_bin = int(dense[j + breaks_up[0]] if breaks_up.size else dense[-1])
    breaks_down = np.flatnonzero(np.diff(dense[: j + 1]) > max_step)
    low_bin = int(dense[breaks_down[-1] + 1] if breaks_down.size else dense[0])
    # One more bin on either side keeps the thin tails of the depth noise.
    low_bin, high_bin = low_bin - 1, high_bin + 1
    if low_bin <= 0 and high_bin >= last:
        return None
    low = -math.inf if low_bin <= 0 else math.exp(log_z_min + low_bin * bin_width)
    high = math.inf if high_bin >= last else math.exp(log_z_min + (high_bin + 1) * bin_width)
    return low, high


def locate(
    mask: np.ndarray,
    depth_m: np.ndarray,
    camera_matrix,
    *,
    min_depth: float = 0.1,
    max_depth: float = 10.0,
    erode_px: int = 3,
    with_points: bool = True,
) -> Target3D:
    """The 3D target of ``mask``: its robust centroid and extents in the camera optical frame.

    ``mask``: bool (H, W) at the colour image's size. ``depth_m``: float32 metres, NaN where
    there is no reading (see :func:`depth_to_meters`), registered to the colour camera, of the
    colour image's size or that size divided by a whole number. ``camera_matrix``: the colour
    camera's K (3x3 or ``CameraInfo.k``); skew is handled. Depths outside
    ``[min_depth, max_depth]`` count as missing; ``erode_px`` is the mask bleed (colour pixels)
    to erode away. See the module docstring for the estimator.

    ``with_points=False`` leaves the result's ``points`` and ``pixels`` empty ((0, 3) float32 and
    (0, 2) int32; ``num_points`` still counts the inliers) and skips building them, which takes
    about as long as all the rest; centroid, extents, ``num_points`` and ``valid_ratio`` are the
    same either way. Pass it when only the centroid and extents are needed.

    Returns ``ok=False`` with a reason for an empty mask or one without usable depth; raises
    :class:`GeometryError` only for malformed input.
    """
    k = check_camera_matrix(camera_matrix)
    mask = _check_mask(mask)
    depth = _check_depth(depth_m)
    scale = depth_scale_factor(mask.shape, depth.shape)
    min_depth, max_depth = _check_range(min_depth, max_depth)
    erode_px = operator.index(erode_px)
    if erode_px < 0:
        raise GeometryError(f"erode_px must be >= 0, got {erode_px}")

    box = _bounding_box(mask)
    if box is None:
        return _failure("the mask is empty", 0.0)
    row0, row1, col0, col1 = box
    # Depth pixel (v, u) stands for the colour pixel (v*s + s//2, u*s + s//2) at its block's
    # centre: the depth rows/columns whose centre pixel lies in the bounding box.
    half = scale // 2
    v0, v1 = -(-(row0 - half) // scale), (row1 - 1 - half) // scale + 1
    u0, u1 = -(-(col0 - half) // scale), (col1 - 1 - half) // scale + 1
    if v0 >= v1 or u0 >= u1:
        return _failure(_too_thin(scale), 0.0)
    mask_crop = mask[v0 * scale + half : v1 * scale : scale, u0 * scale + half : u1 * scale : scale]
    mask8 = np.ascontiguousarray(mask_crop).view(np.uint8)
    num_mask = cv2.countNonZero(mask8)
    if num_mask == 0:
        return _failure(_too_thin(scale), 0.0)

    # A contiguous copy: every later pass over the crop, and each gather from it, is faster.
    depth_crop = np.ascontiguousarray(depth[v0:v1, u0:u1])
    usable = depth_crop >= min_depth
    usable &= depth_crop <= max_depth
    num_usable = np.count_nonzero(mask8.view(np.bool_) & usable)
    valid_ratio = num_usable / num_mask
    if num_usable == 0:
        return _failure(
            f"no usable depth in the mask: none of its {num_mask} depth pixels has a reading "
            f"within [{min_depth:g}, {max_depth:g}] m",
            0.0,
        )

    core, num_core, radius = _core(mask8, usable, -(-erode_px // scale), num_usable)
    # The histogram needs no more than a sample: every `stride`-th row and column of the core.
    stride = max(1, math.isqrt(num_core // _HISTOGRAM_SAMPLES))
    if stride == 1:
        sample = depth_crop[core]
    else:
        sample = depth_crop[::stride, ::stride][core[::stride, ::stride]]
    bounds = _depth_cluster(sample) if sample.size else None
    if bounds is None:
        inliers = core
    else:
        inliers = core & (depth_crop >= bounds[0])
        inliers &= depth_crop <= bounds[1]
    # Back-project with the inverse of the depth grid's K (see the module docstring): y is a
    # per-row factor times z, x a per-column factor times z less the skew term.
    fx, fy, skew = k[0, 0] / scale, k[1, 1] / scale, k[0, 1] / scale
    cx, cy = (k[0, 2] + 0.5) / scale - 0.5, (k[1, 2] + 0.5) / scale - 0.5
    rows_v = np.arange(v0, v1)
    y_per_row = ((rows_v - cy) / fy).astype(np.float32)
    x_per_col = ((np.arange(u0, u1) - cx) / fx).astype(np.float32)
    skew_per_y = np.float32(skew / fx)
    # The inliers' flat indices in row-major order. The percentiles take every `step`-th of
    # them, so they see the same points whether or not the points are kept.
    index = np.flatnonzero(inliers)
    n = index.size
    step = -(-n // _PERCENTILE_SAMPLES)
    centroid = _weighted_centroid(depth_crop, inliers, y_per_row, x_per_col, skew_per_y)
    if with_points:
        pixel_row_per_row = (rows_v * scale + half).astype(np.int32)
        pixel_col_of_x = (fx * scale, cx * scale + half)
        points, pixels = _inlier_points(
            depth_crop,
            inliers,
            index,
            y_per_row,
            x_per_col,
            skew_per_y,
            pixel_row_per_row,
            pixel_col_of_x,
        )
        sample = points[::step].T
    else:
        points = np.empty((0, 3), dtype=np.float32)
        pixels = np.empty((0, 2), dtype=np.int32)
        sample_index = index[::step]
        sample_rows, sample_cols = np.divmod(sample_index, u1 - u0)
        z = depth_crop.ravel().take(sample_index).astype(np.float32, copy=False)
        y = y_per_row.take(sample_rows) * z
        x = x_per_col.take(sample_cols) * z
        if skew != 0.0:
            x -= y * skew_per_y
        sample = np.stack([x, y, z])

    extent_min, extent_max = _robust_bounds(sample)
    if radius:
        margin = radius * centroid[2]
        extent_min[:2] -= (margin / fx, margin / fy)
        extent_max[:2] += (margin / fx, margin / fy)
    return Target3D(
        ok=True,
        reason="",
        centroid=centroid,
        extent_min=extent_min,
        extent_max=extent_max,
        num_points=int(n),
        valid_ratio=float(valid_ratio),
        points=points,
        pixels=pixels,
    )


def _inlier_points(
    depth_crop: np.ndarray,
    inliers: np.ndarray,
    index: np.ndarray,
    y_per_row: np.ndarray,
    x_per_col: np.ndarray,
    skew_per_y: np.float32,
    pixel_row_per_row: np.ndarray,
    pixel_col_of_x: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """The (n, 3) float32 points and (n, 2) int32 colour pixels of the crop's ``inliers`` (flat
    indices ``index``).

    OpenCV's arithmetic reads a small array as a scalar (cv::Scalar), and which arrays count as
    small has changed between releases: a 1-D array of up to 4 numbers since 5.0, and, beside a
    plain number, a (1, 1) array since 5.1 (one point then came out as a (4, 1) column that
    cv2.merge refused). So the arrays here are rows (1, n), and numbers go in as parameters of
    the calls (``scale``, ``gamma``), never as operands."""
    n = index.size
    z = depth_crop.ravel().take(index).astype(np.float32, copy=False).reshape(1, n)
    # Inliers per crop row: row r's inliers come in a run, in order, so np.repeat rebuilds the
    # per-point row without gathering a second 2-D array.
    per_row = cv2.reduce(inliers.view(np.uint8), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    y = np.repeat(y_per_row, per_row).reshape(1, n)
    y *= z
    x = np.multiply(depth_crop, x_per_col, dtype=np.float32).ravel().take(index).reshape(1, n)
    # The colour column of each point follows from x/z (before the skew term) exactly: float32
    # keeps x/z*fx far closer than half a pixel. Cheaper than gathering a column index array.
    # addWeighted(t, 1, t, 0, offset) is t + offset, rounded to int32 in the same pass; unlike
    # cv2.add(t, offset) it takes the offset as a parameter (see the docstring).
    fx_colour, col_offset = pixel_col_of_x
    scaled = cv2.divide(x, z, scale=fx_colour)
    pixel_cols = cv2.addWeighted(scaled, 1.0, scaled, 0.0, col_offset, dtype=cv2.CV_32S)
    pixel_rows = np.repeat(pixel_row_per_row, per_row).reshape(1, n)
    pixels = cv2.merge([pixel_rows, pixel_cols]).reshape(n, 2)
    if skew_per_y != 0.0:
        x -= y * skew_per_y
    return cv2.merge([x, y, z]).reshape(n, 3), pixels


def _weighted_centroid(
    depth_crop: np.ndarray,
    inliers: np.ndarray,
    y_per_row: np.ndarray,
    x_per_col: np.ndarray,
    skew_per_y: np.float32,
) -> np.ndarray:
    """The centroid of the crop's ``inliers`` weighted by w = z**3, from sums over the crop rather
    than gathered points: y = y_per_row[v] * z, so the sum of w*y is that of y_per_row times the
    row sums of w*z; x = x_per_col[u] * z - skew_per_y * y, so the sum of w*x is that of
    x_per_col times the column sums of w*z (taken row by row here) less skew_per_y times the
    sum of w*y."""
    z = depth_crop if depth_crop.dtype == np.float32 else depth_crop.astype(np.float32)
    # z at the inliers, 0 elsewhere: AND with all-one or all-zero bits. Unlike multiplying by
    # 0 or 1 it clears NaN, and unlike a masked assignment it does not branch per pixel.
    bits = inliers.view(np.uint8).astype(np.int32)
    np.negative(bits, out=bits)
    bits &= z.view(np.int32)
    z = bits.view(np.float32)
    weights = cv2.pow(z, 3)
    # sumElems adds in double precision.
    total = cv2.sumElems(weights)[0]
    weighted_z = cv2.multiply(weights, z, dst=z)
    # Per row, the sums of w*z*x_per_col and of w*z: one float32 matrix product (each sum over
    # at most a row of the crop; summing all the points in float32 would be off by up to 1e-5),
    # then double precision over the rows.
    factors = np.empty((x_per_col.size, 2), dtype=np.float32)
    factors[:, 0] = x_per_col
    factors[:, 1] = 1.0
    per_row = (weighted_z @ factors).astype(np.float64)
    sum_z = float(per_row[:, 1].sum())
    sum_y = float(y_per_row.astype(np.float64) @ per_row[:, 1])
    sum_x = float(per_row[:, 0].sum()) - float(skew_per_y) * sum_y
    return np.array([sum_x, sum_y, sum_z]) / total


def _robust_bounds(sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per axis, the low and high percentiles (nearest rank) of the (3, m) float32 ``sample``."""
    last = sample.shape[1] - 1
    low = round(_LOW_PERCENTILE / 100.0 * last)
    high = round(_HIGH_PERCENTILE / 100.0 * last)
    ordered = np.partition(np.ascontiguousarray(sample), (low, high), axis=1)
    return ordered[:, low].astype(np.float64), ordered[:, high].astype(np.float64)


def _too_thin(scale: int) -> str:
    return (
        "the mask has no pixel at the depth image's resolution: it is thinner than one depth "
        f"pixel (the depth image is 1/{scale} of the colour image's size)"
    )
