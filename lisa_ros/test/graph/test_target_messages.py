"""The 3D targets as ROS messages: MaskInfo's 3D fields, RViz markers and the ~/points cloud,
read back from their bytes (and through rclpy's serialization) the way a subscriber would."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed in this venv: run 'make setup'")
pytest.importorskip(
    "lisa_ros_interfaces", reason="lisa_ros_interfaces is not built: run 'make setup'"
)

from builtin_interfaces.msg import Time  # noqa: E402
from lisa_ros_interfaces.msg import MaskInfo  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from lisa_ros.geometry import Target3D, locate  # noqa: E402
from lisa_ros.node.target_messages import (  # noqa: E402
    fill_target,
    label_text,
    marker_array,
    point_cloud,
)
from lisa_ros.visualization import mask_colors  # noqa: E402

STAMP = (1700000000, 456)
FRAME = "camera_depth_optical_frame"
IMAGE_SHAPE = (48, 64)
NUMPY_TYPES = {
    PointField.INT8: "i1",
    PointField.UINT8: "u1",
    PointField.INT16: "i2",
    PointField.UINT16: "u2",
    PointField.INT32: "i4",
    PointField.UINT32: "u4",
    PointField.FLOAT32: "f4",
    PointField.FLOAT64: "f8",
}


def header() -> Header:
    return Header(stamp=Time(sec=STAMP[0], nanosec=STAMP[1]), frame_id=FRAME)


def target(seed: int, count: int, centre: tuple[float, float, float]) -> Target3D:
    """An ok target of ``count`` points scattered around ``centre``, on distinct pixels."""
    rng = np.random.default_rng(seed)
    points = (np.array(centre) + rng.uniform(-0.1, 0.1, (count, 3)) * [1.0, 0.5, 0.2]).astype(
        np.float32
    )
    flat = rng.choice(IMAGE_SHAPE[0] * IMAGE_SHAPE[1], size=count, replace=False)
    pixels = np.stack(np.unravel_index(flat, IMAGE_SHAPE), axis=1).astype(np.int32)
    points64 = points.astype(np.float64)
    return Target3D(
        ok=True,
        reason="",
        centroid=np.median(points64, axis=0),
        extent_min=points64.min(axis=0),
        extent_max=points64.max(axis=0),
        num_points=count,
        valid_ratio=0.75,
        points=points,
        pixels=pixels,
    )


def failed(reason: str) -> Target3D:
    nan = np.full(3, np.nan)
    return Target3D(
        ok=False,
        reason=reason,
        centroid=nan,
        extent_min=nan,
        extent_max=nan,
        num_points=0,
        valid_ratio=0.01,
        points=np.zeros((0, 3), np.float32),
        pixels=np.zeros((0, 2), np.int32),
    )


def image() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (*IMAGE_SHAPE, 3), dtype=np.uint8)


def three_targets() -> list[Target3D | None]:
    """Mask 0 and 2 placed in 3D; mask 1 was not (its label 2 must appear nowhere)."""
    return [
        target(1, 50, (0.2, -0.1, 1.5)),
        failed("too few valid depth pixels (1% of the mask)"),
        target(2, 30, (-0.3, 0.2, 2.5)),
    ]


def decode_cloud(msg: PointCloud2) -> dict[str, np.ndarray]:
    """Each declared field of ``msg`` as a numpy array, read from ``data`` by offset and type."""
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype(
        {
            "names": [field.name for field in msg.fields],
            "formats": [order + NUMPY_TYPES[field.datatype] for field in msg.fields],
            "offsets": [field.offset for field in msg.fields],
            "itemsize": msg.point_step,
        }
    )
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    assert data.size == msg.row_step * msg.height == msg.point_step * msg.width * msg.height
    records = data.view(dtype)
    return {name: records[name] for name in dtype.names}


def unpack_rgb(rgb_as_float: np.ndarray) -> np.ndarray:
    """PCL's packed colour (0x00RRGGBB stored in a float32's bytes) as (N, 3) uint8."""
    packed = rgb_as_float.astype("<f4").view("<u4")
    assert not (packed >> 24).any()
    return np.stack([(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF], 1).astype(
        np.uint8
    )


# --- MaskInfo ---------------------------------------------------------------------------------


def test_fill_target_copies_an_ok_target_into_the_3d_fields() -> None:
    placed = target(3, 40, (0.1, 0.0, 1.0))
    info = fill_target(MaskInfo(seg_index=0, phrase="the mug"), placed)
    assert info.has_target and info.target_status == ""
    for name in ("centroid", "extent_min", "extent_max"):
        point = getattr(info, name)
        np.testing.assert_allclose([point.x, point.y, point.z], getattr(placed, name))
    assert info.num_points == 40
    assert info.valid_ratio == pytest.approx(0.75)
    assert (info.seg_index, info.phrase) == (0, "the mug")


def test_fill_target_zeroes_a_failed_target_and_says_why() -> None:
    # The same info filled before: every 3D field must be reset, not left from the last call.
    info = fill_target(MaskInfo(), target(3, 40, (0.1, 0.0, 1.0)))
    info = fill_target(info, failed("mask has no valid depth"), status="ignored")
    assert not info.has_target
    assert info.target_status == "mask has no valid depth"
    for name in ("centroid", "extent_min", "extent_max"):
        point = getattr(info, name)
        assert (point.x, point.y, point.z) == (0.0, 0.0, 0.0)
    assert (info.valid_ratio, info.num_points) == (0.0, 0)


def test_fill_target_without_a_target_takes_the_given_status() -> None:
    info = fill_target(MaskInfo(), None, status="no depth frame within 50 ms of the image")
    assert not info.has_target
    assert info.target_status == "no depth frame within 50 ms of the image"
    assert (info.centroid.z, info.num_points) == (0.0, 0)


# --- markers ----------------------------------------------------------------------------------


def test_markers_start_with_deleteall_then_three_per_placed_mask() -> None:
    targets = three_targets()
    markers = marker_array(targets, ["the mug", "the lid", "the plate"], header()).markers
    assert markers[0].action == Marker.DELETEALL
    # Empty ns: clears every marker of the display, also where RViz honours a DELETEALL's ns.
    assert markers[0].ns == ""
    assert [(m.ns, m.id, m.type, m.action) for m in markers[1:]] == [
        ("lisa/centroid", 0, Marker.SPHERE, Marker.ADD),
        ("lisa/extent", 0, Marker.CUBE, Marker.ADD),
        ("lisa/label", 0, Marker.TEXT_VIEW_FACING, Marker.ADD),
        ("lisa/centroid", 2, Marker.SPHERE, Marker.ADD),
        ("lisa/extent", 2, Marker.CUBE, Marker.ADD),
        ("lisa/label", 2, Marker.TEXT_VIEW_FACING, Marker.ADD),
    ]
    assert [m.text for m in markers if m.type == Marker.TEXT_VIEW_FACING] == [
        "0: the mug",
        "2: the plate",
    ]


def test_markers_have_the_overlay_colour_of_their_mask() -> None:
    targets = three_targets()
    markers = marker_array(targets, ["a", "b", "c"], header()).markers[1:]
    colors = mask_colors(3) / 255.0
    for marker in markers:
        color = marker.color
        np.testing.assert_allclose([color.r, color.g, color.b], colors[marker.id], atol=1e-6)
        assert color.a == (1.0 if marker.type != Marker.CUBE else pytest.approx(0.35))
    # Mask 2's colour is not mask 1's, though mask 1 has no marker.
    assert not np.allclose(colors[1], colors[2])


def test_marker_positions_follow_the_target() -> None:
    placed = target(4, 60, (0.4, -0.2, 1.8))
    sphere, cube, label = marker_array([placed], ["the cup"], header()).markers[1:]
    position = sphere.pose.position
    np.testing.assert_allclose([position.x, position.y, position.z], placed.centroid, atol=1e-9)
    assert 0.02 <= sphere.scale.x == sphere.scale.y == sphere.scale.z <= 0.05
    centre = (placed.extent_min + placed.extent_max) / 2
    np.testing.assert_allclose(
        [cube.pose.position.x, cube.pose.position.y, cube.pose.position.z], centre, atol=1e-9
    )
    np.testing.assert_allclose([cube.scale.x, cube.scale.y, cube.scale.z], placed.size, atol=1e-9)
    # Above the box: y points down in the optical frame.
    assert label.pose.position.y < placed.extent_min[1]
    assert label.pose.position.x == pytest.approx(centre[0])
    assert label.pose.position.z == pytest.approx(centre[2])
    assert label.scale.z > 0
    for marker in (sphere, cube, label):
        orientation = marker.pose.orientation
        assert (orientation.x, orientation.y, orientation.z, orientation.w) == (0, 0, 0, 1)
        assert (marker.lifetime.sec, marker.lifetime.nanosec) == (0, 0)
        assert marker.frame_locked is False


def test_a_flat_target_still_has_a_visible_box() -> None:
    flat = target(5, 20, (0.0, 0.0, 1.0))
    points = flat.points.copy()
    points[:, 2] = 1.0
    flat = dataclasses.replace(
        flat,
        centroid=np.array([0.0, 0.0, 1.0]),
        extent_min=np.array([-0.1, -0.05, 1.0]),
        extent_max=np.array([0.1, 0.05, 1.0]),
        points=points,
    )
    sphere, cube, _ = marker_array([flat], ["the paper"], header()).markers[1:]
    assert cube.scale.z >= 0.005
    np.testing.assert_allclose([cube.scale.x, cube.scale.y], [0.2, 0.1])
    assert sphere.scale.x == pytest.approx(0.02)


def test_no_placed_target_leaves_only_the_deleteall() -> None:
    for targets in ([], [None, failed("no depth")]):
        markers = marker_array(targets, ["x", "y"], header()).markers
        assert [m.action for m in markers] == [Marker.DELETEALL]


def test_marker_namespace_and_phrase_edge_cases() -> None:
    placed = target(6, 10, (0.0, 0.0, 1.0))
    # Fewer phrases than targets: the label is the index alone.
    markers = marker_array([placed, placed], ["one"], header(), namespace="left_cam").markers
    assert {m.ns for m in markers[1:]} == {"left_cam/centroid", "left_cam/extent", "left_cam/label"}
    assert [m.text for m in markers if m.type == Marker.TEXT_VIEW_FACING] == ["0: one", "1"]
    assert label_text(3, "  the\nred   mug ") == "3: the red mug"


@pytest.mark.parametrize(
    "phrase,label",
    [
        ("Sure, it is the red box", "0: the red box"),
        ("It is", "0"),
        ("Sure,", "0"),
        ("and the mug", "0: the mug"),
        ("Sure, the segmentation result is", "0"),
        ("Andy's cup", "0: Andy's cup"),
    ],
)
def test_marker_labels_name_masks_as_the_overlay_does(phrase: str, label: str) -> None:
    """LISA's fixed words ("Sure, it is") name nothing: the overlay leaves them out, and so do
    the markers, whose label is the overlay's words after the mask's index."""
    markers = marker_array([target(6, 10, (0.0, 0.0, 1.0))], [phrase], header()).markers
    assert [m.text for m in markers if m.type == Marker.TEXT_VIEW_FACING] == [label]


def test_marker_labels_are_cut_short() -> None:
    long = label_text(0, "the very long description of an object " * 3)
    assert len(long) <= 40 and long.endswith("...") and long.isascii()


def test_markers_survive_serialization() -> None:
    array = marker_array(three_targets(), ["a", "b", "c"], header())
    data = serialize_message(array)
    back = deserialize_message(data, MarkerArray)
    # Equal up to float32 rounding of the colours (ColorRGBA holds float32): same bytes again.
    assert serialize_message(back) == data
    assert [(m.ns, m.id, m.type, m.action, m.text) for m in back.markers] == [
        (m.ns, m.id, m.type, m.action, m.text) for m in array.markers
    ]
    for sent, received in zip(array.markers, back.markers, strict=True):
        assert received.pose == sent.pose and received.scale == sent.scale
        assert received.header == sent.header
        assert received.color.g == pytest.approx(sent.color.g, abs=1e-6)


# --- point cloud ------------------------------------------------------------------------------


def test_point_cloud_bytes_hold_the_points_colours_and_labels() -> None:
    targets, rgb = three_targets(), image()
    msg = point_cloud(targets, rgb, header())
    placed = [targets[0], targets[2]]
    assert (msg.height, msg.width) == (1, 80)
    assert (msg.point_step, msg.row_step) == (20, 20 * 80)
    assert msg.is_bigendian is False and msg.is_dense is True
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1),
        ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1),
        ("rgb", 12, PointField.FLOAT32, 1),
        ("label", 16, PointField.UINT32, 1),
    ]
    cloud = decode_cloud(msg)
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1)
    np.testing.assert_array_equal(xyz, np.concatenate([t.points for t in placed]))
    pixels = np.concatenate([t.pixels for t in placed])
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), rgb[pixels[:, 0], pixels[:, 1]])
    # Mask k has label k + 1, as in the ~/masks label image; mask 1 failed: no label 2.
    np.testing.assert_array_equal(cloud["label"], np.repeat([1, 3], [50, 30]))


def test_point_cloud_survives_serialization() -> None:
    msg = point_cloud(three_targets(), image(), header())
    back = deserialize_message(serialize_message(msg), PointCloud2)
    assert back == msg
    for name, values in decode_cloud(back).items():
        np.testing.assert_array_equal(values, decode_cloud(msg)[name])


def test_no_placed_target_gives_a_valid_empty_cloud() -> None:
    full = point_cloud(three_targets(), image(), header())
    for targets in ([], [None, failed("no depth")]):
        msg = point_cloud(targets, image(), header())
        assert (msg.height, msg.width, msg.row_step, len(msg.data)) == (1, 0, 0, 0)
        assert msg.fields == full.fields and msg.point_step == 20
        back = deserialize_message(serialize_message(msg), PointCloud2)
        assert back == msg and all(values.size == 0 for values in decode_cloud(back).values())


def test_point_cloud_rejects_what_it_cannot_colour() -> None:
    with pytest.raises(ValueError, match="image_rgb"):
        point_cloud(three_targets(), image()[:, :, 0], header())
    broken = target(8, 10, (0.0, 0.0, 1.0))
    broken = dataclasses.replace(broken, pixels=broken.pixels[:5])
    with pytest.raises(ValueError, match="10 points but 5 pixels"):
        point_cloud([broken], image(), header())
    # A column past the edge must not read the next row's first pixel.
    outside = target(9, 10, (0.0, 0.0, 1.0))
    pixels = outside.pixels.copy()
    pixels[0] = (0, IMAGE_SHAPE[1])
    with pytest.raises(ValueError, match="outside the 64x48 image"):
        point_cloud([dataclasses.replace(outside, pixels=pixels)], image(), header())


def test_targets_located_from_depth_become_a_cloud_the_camera_would_see() -> None:
    # A tilted plane 1.2-1.8 m away; mask 0 on it, mask 1 where the depth has a hole.
    cols = np.broadcast_to(np.arange(IMAGE_SHAPE[1]), IMAGE_SHAPE)
    depth = (1.2 + 0.6 * cols / IMAGE_SHAPE[1]).astype(np.float32)
    depth[:, 40:] = np.nan
    fx, fy, cx, cy = 60.0, 60.0, 31.5, 23.5
    k_matrix = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    masks = np.zeros((2, *IMAGE_SHAPE), bool)
    masks[0, 10:30, 8:30] = True
    masks[1, 10:30, 45:60] = True
    targets = [locate(mask, depth, k_matrix) for mask in masks]
    assert targets[0].ok and not targets[1].ok
    rgb = image()
    cloud = decode_cloud(point_cloud(targets, rgb, header()))
    assert cloud["x"].size == targets[0].num_points > 0
    np.testing.assert_array_equal(cloud["label"], 1)
    pixels = targets[0].pixels
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), rgb[pixels[:, 0], pixels[:, 1]])
    assert masks[0][pixels[:, 0], pixels[:, 1]].all()
    # Each point projects back onto the pixel whose colour it carries.
    z = cloud["z"].astype(np.float64)
    np.testing.assert_allclose(fx * cloud["x"] / z + cx, pixels[:, 1], atol=0.51)
    np.testing.assert_allclose(fy * cloud["y"] / z + cy, pixels[:, 0], atol=0.51)
    infos = [fill_target(MaskInfo(seg_index=k), t) for k, t in enumerate(targets)]
    assert infos[0].has_target and infos[0].num_points == cloud["x"].size
    assert not infos[1].has_target and infos[1].target_status == targets[1].reason != ""
    assert len(marker_array(targets, ["plane", "hole"], header()).markers) == 4


# --- headers ----------------------------------------------------------------------------------


def test_outputs_keep_a_copy_of_the_header() -> None:
    source = header()
    targets = three_targets()
    markers = marker_array(targets, ["a", "b", "c"], source).markers
    cloud = point_cloud(targets, image(), source)
    source.stamp.sec, source.stamp.nanosec, source.frame_id = 1, 2, "elsewhere"
    for msg in [*markers, cloud]:
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == STAMP
        assert msg.header.frame_id == FRAME
    # Each marker has its own header: changing one leaves the others as they were.
    markers[1].header.frame_id = "changed"
    assert markers[2].header.frame_id == FRAME
