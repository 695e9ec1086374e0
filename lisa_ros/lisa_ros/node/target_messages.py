"""Turning the 3D targets of one answer (one per mask) into ROS messages.

Three consumers read them:

- ``MaskInfo`` (in ~/segmentation and the action result): where each mask is, for a robot that
  wants to reach or avoid it (:func:`fill_target`);
- a ``MarkerArray`` for RViz: the centroid, the box of the extents and the mask's phrase, in the
  colour the overlay gives the mask, so a person can match the 3D view with the 2D one
  (:func:`marker_array`);
- a ``PointCloud2`` of the masks' surface points, coloured by the camera image and labelled with
  the value the mask has in the ~/masks label image (:func:`point_cloud`).

Everything is expressed in the optical frame of the depth image the answer was paired with
(x right, y down, z forward), and every message carries a copy of that image's header, so RViz
and TF place it where the camera saw it. Only message types are imported here (no node, no
torch): the functions are plain data transformations the node calls per answer, and the point
cloud is built with whole-array numpy operations because the node may publish it at camera rate.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from lisa_ros_interfaces.msg import MaskInfo
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from lisa_ros.visualization import mask_colors, mask_label

from .headers import copy_header

if TYPE_CHECKING:
    from lisa_ros.geometry import Target3D

__all__ = [
    "CLOUD_DTYPE",
    "CLOUD_FIELDS",
    "fill_target",
    "label_text",
    "marker_array",
    "point_cloud",
]

# One point of ~/points: xyz in metres, the camera's colour packed as PCL and RViz expect it
# (0x00RRGGBB in a uint32 whose bytes are read as a float32) and the mask's label (k + 1 for
# mask k, as in the ~/masks label image). Little-endian whatever the host is, so that
# is_bigendian can always be False.
CLOUD_DTYPE = np.dtype(
    {
        "names": ["x", "y", "z", "rgb", "label"],
        "formats": ["<f4", "<f4", "<f4", "<u4", "<u4"],
        "offsets": [0, 4, 8, 12, 16],
        "itemsize": 20,
    }
)
CLOUD_FIELDS = (
    ("x", 0, PointField.FLOAT32),
    ("y", 4, PointField.FLOAT32),
    ("z", 8, PointField.FLOAT32),
    # float32 as declared, though the bytes are the packed uint32: the PCL/RViz convention.
    ("rgb", 12, PointField.FLOAT32),
    ("label", 16, PointField.UINT32),
)

# Marker sizes in metres. The centroid sphere is a few centimetres: big enough to find, small
# next to the object it marks. The box never gets thinner than _MIN_BOX_SIDE, so a flat object
# (a sheet of paper seen face-on) still shows. The label text is a fixed height, readable at
# the 0.5-5 m a camera sees a tabletop or a room from.
_SPHERE_FRACTION = 0.15
_MIN_SPHERE = 0.02
_MAX_SPHERE = 0.05
_MIN_BOX_SIDE = 0.005
_TEXT_HEIGHT = 0.05
_TEXT_GAP = 0.02  # between the top of the box and the bottom of the label
_BOX_ALPHA = 0.35  # the box is see-through, so the points and the sphere inside stay visible
_MAX_LABEL_CHARS = 40  # RViz draws text on one line: long phrases would cover the scene


def _usable(target: Target3D | None) -> bool:
    return target is not None and bool(target.ok)


def _point(values: np.ndarray) -> Point:
    return Point(x=float(values[0]), y=float(values[1]), z=float(values[2]))


def fill_target(info: MaskInfo, target: Target3D | None, status: str = "") -> MaskInfo:
    """Write ``target`` into the 3D fields of ``info`` and return ``info``.

    ``has_target`` says whether the mask could be placed in 3D. When it could not, every 3D
    field is zero (not NaN: a reader would have to know to test for NaN) and ``target_status``
    says why: the target's reason, or ``status`` when there is no target at all (e.g. no depth
    frame was paired with the image). The fields are all assigned, so ``info`` can be reused.
    """
    if _usable(target):
        assert target is not None  # for type checkers: _usable said so
        info.has_target = True
        info.target_status = ""
        info.centroid = _point(target.centroid)
        info.extent_min = _point(target.extent_min)
        info.extent_max = _point(target.extent_max)
        info.valid_ratio = float(target.valid_ratio)
        info.num_points = int(target.num_points)
        return info
    info.has_target = False
    info.target_status = (target.reason if target is not None else "") or status
    info.centroid, info.extent_min, info.extent_max = Point(), Point(), Point()
    info.valid_ratio = 0.0
    info.num_points = 0
    return info


def label_text(index: int, phrase: str) -> str:
    """The RViz label of mask ``index``: ``"index: words"`` on one line, cut to a short length.

    The words are the overlay's label of the mask (:func:`lisa_ros.visualization.mask_label`: the
    phrase without LISA's "Sure, it is"), so the 3D view names a mask as the 2D one does.
    """
    phrase = mask_label(phrase)  # one line, too: newlines would stack lines over the scene
    text = f"{index}: {phrase}" if phrase else f"{index}"
    if len(text) > _MAX_LABEL_CHARS:
        # ASCII dots: RViz's text font has no glyph for the ellipsis character.
        text = text[: _MAX_LABEL_CHARS - 3].rstrip() + "..."
    return text


def marker_array(
    targets: Sequence[Target3D | None],
    phrases: Sequence[str],
    header: Header,
    namespace: str = "lisa",
) -> MarkerArray:
    """RViz markers for the answer: for each mask ``k`` placed in 3D, a sphere at its centroid,
    a see-through box over its extents and its phrase above the box, in the overlay's colour.

    The array starts with a DELETEALL marker, so the markers of the previous answer vanish even
    when this one has fewer masks (or none): markers have no lifetime, as an answer stays valid
    until the next one. Its namespace is empty: "all markers of this display" both where RViz
    honours a DELETEALL's namespace and where it ignores it (a named one would clear only that
    exact namespace where it is honoured, not ``lisa/centroid`` and the others). The markers
    after it use ``{namespace}/centroid``, ``{namespace}/extent`` and ``{namespace}/label`` with
    id ``k``, so they can be toggled per kind in RViz and matched with ``seg_index``.
    """
    colors = mask_colors(len(targets)).astype(np.float64) / 255.0
    markers = [Marker(header=copy_header(header), action=Marker.DELETEALL)]
    for k, target in enumerate(targets):
        if not _usable(target):
            continue
        assert target is not None  # for type checkers: _usable said so
        r, g, b = (float(c) for c in colors[k])
        extent_min = np.asarray(target.extent_min, dtype=np.float64)
        extent_max = np.asarray(target.extent_max, dtype=np.float64)
        size = extent_max - extent_min
        centre = (extent_min + extent_max) / 2.0
        diameter = float(np.clip(_SPHERE_FRACTION * size.min(), _MIN_SPHERE, _MAX_SPHERE))
        box = np.maximum(size, _MIN_BOX_SIDE)
        # y points down in the optical frame: above the box is below its smallest y.
        label_at = np.array([centre[0], extent_min[1] - _TEXT_GAP - _TEXT_HEIGHT / 2.0, centre[2]])
        phrase = phrases[k] if k < len(phrases) else ""
        sphere = _marker(header, f"{namespace}/centroid", k, Marker.SPHERE, target.centroid)
        sphere.scale = Vector3(x=diameter, y=diameter, z=diameter)
        sphere.color = ColorRGBA(r=r, g=g, b=b, a=1.0)
        cube = _marker(header, f"{namespace}/extent", k, Marker.CUBE, centre)
        cube.scale = Vector3(x=float(box[0]), y=float(box[1]), z=float(box[2]))
        cube.color = ColorRGBA(r=r, g=g, b=b, a=_BOX_ALPHA)
        label = _marker(header, f"{namespace}/label", k, Marker.TEXT_VIEW_FACING, label_at)
        # Only z counts for text: the height of a capital letter.
        label.scale = Vector3(x=0.0, y=0.0, z=_TEXT_HEIGHT)
        label.color = ColorRGBA(r=r, g=g, b=b, a=1.0)
        label.text = label_text(k, phrase)
        markers += [sphere, cube, label]
    return MarkerArray(markers=markers)


def _marker(
    header: Header, ns: str, marker_id: int, marker_type: int, position: np.ndarray
) -> Marker:
    """An ADD marker at ``position``, axis-aligned (identity orientation), that never expires
    (lifetime 0: the next answer's DELETEALL removes it) and stays where the camera saw it rather
    than following a moving frame (frame_locked False)."""
    return Marker(
        header=copy_header(header),
        ns=ns,
        id=marker_id,
        type=marker_type,
        action=Marker.ADD,
        pose=Pose(position=_point(position), orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)),
        frame_locked=False,
    )


def _colours_at(image_rgb: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """The (N, 3) colours of ``image_rgb`` at the (row, col) ``pixels``.

    One take() on the flattened image: about five times faster than indexing with rows and
    columns, which matters at 90k points per frame. The bounds are checked first, as a column
    past the edge would otherwise silently read the next row.
    """
    height, width = image_rgb.shape[:2]
    rows, cols = pixels[:, 0].astype(np.intp), pixels[:, 1].astype(np.intp)
    if rows.min() < 0 or cols.min() < 0 or rows.max() >= height or cols.max() >= width:
        raise ValueError(f"a target's pixel lies outside the {width}x{height} image")
    return np.take(image_rgb.reshape(-1, 3), rows * width + cols, axis=0)


def point_cloud(
    targets: Sequence[Target3D | None], image_rgb: np.ndarray, header: Header
) -> PointCloud2:
    """The surface points of every mask placed in 3D, as one unorganized ``PointCloud2``.

    Fields x, y, z, rgb and label (see :data:`CLOUD_DTYPE`): ``rgb`` is the camera's colour at
    the point's pixel in ``image_rgb`` ((H, W, 3) uint8, the frame the masks were computed on),
    ``label`` is ``k + 1`` for mask ``k``, so a consumer can cut the cloud per mask with the same
    numbers as the ~/masks label image. Masks without a target add no points; with none at all
    the cloud is empty (width 0) but declares the same fields, so subscribers see one layout.
    The bytes are written by one numpy structured array, little-endian.
    """
    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            f"image_rgb must be (H, W, 3) uint8, got shape {image_rgb.shape} of {image_rgb.dtype}"
        )
    used = [(k, target) for k, target in enumerate(targets) if _usable(target)]
    for k, target in used:
        if len(target.points) != len(target.pixels):
            raise ValueError(
                f"target {k} has {len(target.points)} points but {len(target.pixels)} pixels"
            )
    count = sum(len(target.points) for _, target in used)
    cloud = np.empty(count, dtype=CLOUD_DTYPE)
    dense = True
    if count:
        xyz = np.concatenate([np.asarray(target.points).reshape(-1, 3) for _, target in used])
        pixels = np.concatenate([np.asarray(target.pixels).reshape(-1, 2) for _, target in used])
        cloud["x"], cloud["y"], cloud["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        # The targets' points are valid depth readings, so this holds; it is checked, not assumed.
        dense = bool(np.isfinite(xyz).all())
        rgb = _colours_at(image_rgb, pixels).astype(np.uint32)
        cloud["rgb"] = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
        cloud["label"] = np.repeat(
            np.array([k + 1 for k, _ in used], dtype=np.uint32),
            [len(target.points) for _, target in used],
        )
    msg = PointCloud2(
        header=copy_header(header),
        height=1,
        width=count,
        fields=[
            PointField(name=name, offset=offset, datatype=datatype, count=1)
            for name, offset, datatype in CLOUD_FIELDS
        ],
        is_bigendian=False,
        point_step=CLOUD_DTYPE.itemsize,
        row_step=CLOUD_DTYPE.itemsize * count,
        is_dense=dense,
    )
    # An array.array('B') is taken as is; bytes are wrapped into one anyway, and checked value by
    # value first when ROS_PYTHON_CHECK_FIELDS is set (over 100 ms for 90k points).
    msg.data = array.array("B", cloud.tobytes())
    return msg
