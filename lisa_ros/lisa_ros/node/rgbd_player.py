"""``rgbd_player``: publish one RGB-D scene from files, as an RGB-D camera driver would.

    ros2 run lisa_ros rgbd_player --ros-args -r __ns:=/camera      # the demo's bundled scene
    ros2 run lisa_ros rgbd_player --ros-args -p scene:=/path/to/scene -p rate_hz:=15.0

The demo's stand-in for a camera, so lisa_node can be tried without one. A scene folder holds
``scene.json`` (``width``, ``height``, ``frame_id``, the 3x3 intrinsics ``k`` row-major,
``color`` and ``depth`` file names), an RGB image and a 16-bit depth image in millimetres
registered to it (same size, same intrinsics); ``lisa_ros/demo/scene`` is one. At ``rate_hz``
it publishes, on relative (remappable) names laid out like the RealSense driver's:

- ``color/image_raw`` (sensor_msgs/Image, rgb8) and ``color/camera_info``;
- ``aligned_depth_to_color/image_raw`` (sensor_msgs/Image, 16UC1, mm, REP 118).

The three messages of a tick share one header (the stamp of the tick, ``frame_id``), so a
subscriber that pairs by stamp (lisa_node does) pairs them exactly; depth and camera_info go
first, so they are there when the colour frame arrives. QoS: reliable, keep last 1, volatile: a
reliable publisher serves best-effort subscribers (lisa_node's camera inputs) and reliable ones
(RViz's default) alike, and a sample that was not delivered yet is replaced by the next one, as
a camera's frames are. The files are read once; each tick only restamps and publishes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from lisa_ros.conversion.images import fill_image_msg

__all__ = ["RgbdPlayer", "Scene", "SceneError", "load_scene", "main"]

PACKAGE = "lisa_ros"
SCENE_FILE = "scene.json"
PLAYER_QOS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    durability=DurabilityPolicy.VOLATILE,
)


class SceneError(ValueError):
    """A scene folder that cannot be played; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Scene:
    """One RGB-D frame: RGB uint8 (H, W, 3), depth uint16 mm (H, W), intrinsics, frame."""

    rgb: np.ndarray
    depth_mm: np.ndarray
    k: tuple[float, ...]
    frame_id: str


def load_scene(folder: Path) -> Scene:
    """Read and check a scene folder (see the module docstring); SceneError if it is unusable."""
    if not str(folder) or str(folder) == ".":
        raise SceneError("no scene folder: set the parameter 'scene'")
    path = folder / SCENE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        width, height = int(record["width"]), int(record["height"])
        k = tuple(float(value) for value in record["k"])
        color_path, depth_path = folder / record["color"], folder / record["depth"]
        frame_id = str(record["frame_id"])
    except OSError as error:
        raise SceneError(f"{path}: cannot read ({error.strerror or error})") from None
    except (ValueError, KeyError, TypeError) as error:
        raise SceneError(f"{path}: not a scene description ({error!r})") from None
    if len(k) != 9 or k[0] <= 0 or k[4] <= 0:
        raise SceneError(f"{path}: k must be 9 numbers, row-major, with fx and fy > 0")
    bgr = cv2.imread(str(color_path), cv2.IMREAD_COLOR)
    depth = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise SceneError(f"{color_path}: cannot read the colour image")
    if depth is None or depth.dtype != np.uint16 or depth.ndim != 2:
        raise SceneError(f"{depth_path}: the depth must be a single-channel 16-bit image (mm)")
    for name, image in ((color_path, bgr), (depth_path, depth)):
        if image.shape[:2] != (height, width):
            raise SceneError(
                f"{name}: {image.shape[1]}x{image.shape[0]}, scene.json says {width}x{height}"
            )
    return Scene(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), depth, k, frame_id)


def bundled_scene() -> str:
    """The demo's scene in the package's share folder ('' when the package is not installed)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        return str(Path(get_package_share_directory(PACKAGE)) / "demo" / "scene")
    except PackageNotFoundError:
        return ""


class RgbdPlayer(Node):
    """Publishes a :class:`Scene` at a fixed rate (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__("rgbd_player")
        folder = self.declare_parameter(
            "scene",
            bundled_scene(),
            ParameterDescriptor(description="scene folder (scene.json, colour and depth images)"),
        ).value
        rate_hz = self.declare_parameter(
            "rate_hz",
            5.0,
            ParameterDescriptor(
                description="frames per second",
                floating_point_range=[FloatingPointRange(from_value=0.1, to_value=100.0)],
                read_only=True,
            ),
        ).value
        scene = load_scene(Path(folder))
        header_frame = scene.frame_id
        self._image = fill_image_msg(Image(), scene.rgb, "rgb8")
        self._depth = fill_image_msg(Image(), scene.depth_mm, "16UC1")
        self._info = CameraInfo(
            width=scene.rgb.shape[1],
            height=scene.rgb.shape[0],
            distortion_model="plumb_bob",
            d=[0.0] * 5,
            k=list(scene.k),
            r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            # no rectification: the projection is the camera matrix with a zero fourth column
            p=[*scene.k[0:3], 0.0, *scene.k[3:6], 0.0, *scene.k[6:9], 0.0],
        )
        for msg in (self._image, self._depth, self._info):
            msg.header.frame_id = header_frame
        self._image_pub = self.create_publisher(Image, "color/image_raw", PLAYER_QOS)
        self._info_pub = self.create_publisher(CameraInfo, "color/camera_info", PLAYER_QOS)
        self._depth_pub = self.create_publisher(
            Image, "aligned_depth_to_color/image_raw", PLAYER_QOS
        )
        self.create_timer(1.0 / rate_hz, self._publish)
        self.get_logger().info(
            f"Playing {folder} ({scene.rgb.shape[1]}x{scene.rgb.shape[0]}, frame "
            f"'{header_frame}') at {rate_hz:g} Hz on {self._image_pub.topic_name}, "
            f"{self._info_pub.topic_name} and {self._depth_pub.topic_name}"
        )

    def _publish(self) -> None:
        stamp = self.get_clock().now().to_msg()
        for msg in (self._image, self._depth, self._info):
            msg.header.stamp = stamp
        self._depth_pub.publish(self._depth)
        self._info_pub.publish(self._info)
        self._image_pub.publish(self._image)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        player = RgbdPlayer()
    except (SceneError, InvalidParameterValueException) as error:
        print(f"rgbd_player: cannot start: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(player)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C or SIGTERM: a player has nothing to finish
    finally:
        player.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
