"""rgbd_player, the demo's camera: what it publishes is what a paired RGB-D camera publishes."""

from __future__ import annotations

import json
import signal

import cv2
import numpy as np
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from lisa_ros.conversion.images import image_msg_to_array
from testbed import DEMO

SCENE = DEMO / "scene"
TOPICS = {
    "color": ("/cam/color/image_raw", Image),
    "info": ("/cam/color/camera_info", CameraInfo),
    "depth": ("/cam/aligned_depth_to_color/image_raw", Image),
}


def test_each_tick_publishes_colour_depth_and_camera_info_with_one_header(ros_processes, ros_node):
    player = ros_processes.start_console_script(
        "rgbd_player", "--ros-args", "-r", "__ns:=/cam", "-p", f"scene:={SCENE}"
    )
    received: dict[str, list] = {name: [] for name in TOPICS}
    for name, (topic, msg_type) in TOPICS.items():
        # best effort, as lisa_node's camera inputs: the player's reliable publisher serves it
        ros_node.node.create_subscription(
            msg_type, topic, received[name].append, qos_profile_sensor_data
        )
    ros_node.wait_until(
        lambda: all(len(messages) >= 3 for messages in received.values()), 30, "three ticks"
    )
    stamps = {name: {_stamp(m) for m in messages} for name, messages in received.items()}
    shared = stamps["color"] & stamps["depth"] & stamps["info"]
    assert len(shared) >= 2, stamps  # the same stamps on all three topics

    scene = json.loads((SCENE / "scene.json").read_text())
    color, depth, info = received["color"][0], received["depth"][0], received["info"][0]
    for msg in (color, depth, info):
        assert msg.header.frame_id == scene["frame_id"]
    assert (color.encoding, depth.encoding) == ("rgb8", "16UC1")
    expected_rgb = cv2.cvtColor(cv2.imread(str(SCENE / "color.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(image_msg_to_array(color), expected_rgb)
    expected_depth = cv2.imread(str(SCENE / "depth.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(image_msg_to_array(depth), expected_depth)
    assert (info.width, info.height) == (scene["width"], scene["height"])
    np.testing.assert_allclose(info.k, scene["k"])
    np.testing.assert_allclose(np.reshape(info.p, (3, 4))[:, :3], np.reshape(scene["k"], (3, 3)))

    player.send_signal(signal.SIGINT)
    assert player.wait(timeout=10) == 0, player.output


def test_a_folder_that_is_no_scene_ends_in_one_line(ros_processes, tmp_path):
    player = ros_processes.start_console_script(
        "rgbd_player", "--ros-args", "-p", f"scene:={tmp_path}"
    )
    assert player.wait(timeout=30) == 1
    assert f"rgbd_player: cannot start: {tmp_path}/scene.json: cannot read" in player.output
    assert "Traceback" not in player.output


def _stamp(msg) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec
