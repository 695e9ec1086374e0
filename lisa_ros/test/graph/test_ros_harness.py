"""The graph-test harness itself: DDS settings, process control, and real traffic between processes.

Images and Segment goals cross real process boundaries over the harness's shared-memory Fast DDS
profile; if the profile, the domain or the built interfaces were wrong, nothing would arrive.
"""

from __future__ import annotations

import signal
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from ros_harness import reserve_domain_id

from lisa_ros.conversion.images import fill_image_msg, image_msg_to_array
from testbed.local_dds import FASTDDS_PROFILE

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed in this venv: run 'make setup'")
from rclpy.action import ActionClient  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

PEERS = Path(__file__).parent / "graph_peers"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def test_environment_keeps_dds_on_this_machine(ros_env):
    assert ros_env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert 1 <= int(ros_env["ROS_DOMAIN_ID"]) <= 232
    assert ros_env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(FASTDDS_PROFILE)
    assert ros_env["AMENT_PREFIX_PATH"].split(":")[0] == sys.prefix
    assert "ROS_LOCALHOST_ONLY" not in ros_env

    namespace = {"dds": "http://www.eprosima.com"}
    profiles = ElementTree.parse(FASTDDS_PROFILE).getroot().find("dds:profiles", namespace)
    transports = profiles.findall("dds:transport_descriptors/dds:transport_descriptor", namespace)
    assert [t.findtext("dds:type", namespaces=namespace) for t in transports] == ["SHM"]
    assert int(transports[0].findtext("dds:segment_size", namespaces=namespace)) == 32 * 1024 * 1024
    participant = profiles.find("dds:participant", namespace)
    assert participant.get("is_default_profile") == "true"
    assert (
        participant.findtext("dds:rtps/dds:useBuiltinTransports", namespaces=namespace) == "false"
    )
    assert participant.findtext(
        "dds:rtps/dds:userTransports/dds:transport_id", namespaces=namespace
    ) == (transports[0].findtext("dds:transport_id", namespaces=namespace))


def test_domain_ids_are_reserved_one_holder_at_a_time(ros_env):
    first, first_lock = reserve_domain_id()
    second, second_lock = reserve_domain_id()
    try:
        assert len({first, second, int(ros_env["ROS_DOMAIN_ID"])}) == 3
    finally:
        first_lock.close()
        second_lock.close()


def test_stop_interrupts_cleanly_and_kills_what_ignores_sigint(ros_processes):
    echo = ros_processes.start_python(str(PEERS / "image_echo.py"))
    echo.wait_for_output("image_echo ready", timeout=30)
    assert echo.stop() == 0, echo.describe()  # rclpy shut down on SIGINT and the script returned

    stubborn = ros_processes.start_python(
        "-c",
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "print('ignoring', flush=True); time.sleep(60)",
        name="stubborn",
    )
    stubborn.wait_for_output("ignoring", timeout=10)
    assert stubborn.stop(grace=0.5) == -signal.SIGKILL


def test_images_cross_processes_bit_exact_over_shared_memory(ros_processes, ros_node):
    echo = ros_processes.start_python(str(PEERS / "image_echo.py"))
    received: list[Image] = []
    publisher = ros_node.node.create_publisher(Image, "image", RELIABLE)
    ros_node.node.create_subscription(Image, "image_echo", received.append, RELIABLE)
    ros_node.wait_for_subscribers(publisher, timeout=30)
    ros_node.wait_until(
        lambda: ros_node.node.count_publishers("image_echo") >= 1, 30, "the echo's publisher"
    )

    # 1280x720 frames are 2.7 MB: more than Fast DDS's default shared-memory segment holds.
    rng = np.random.default_rng(0)
    sent = [(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), "bgr8") for _ in range(4)]
    sent.append((rng.integers(0, 65536, (480, 640), dtype=np.uint16), "16UC1"))
    for index, (pixels, encoding) in enumerate(sent):
        msg = fill_image_msg(Image(), pixels, encoding)
        msg.header.frame_id = f"camera_{index}"
        msg.header.stamp.sec = 1000 + index
        publisher.publish(msg)

    ros_node.wait_until(lambda: len(received) == len(sent), 30, f"{len(sent)} echoed images")
    for index, ((pixels, encoding), msg) in enumerate(zip(sent, received, strict=True)):
        assert (msg.header.frame_id, msg.header.stamp.sec, msg.encoding) == (
            f"camera_{index}",
            1000 + index,
            encoding,
        )
        echoed = image_msg_to_array(msg)
        assert echoed.dtype == pixels.dtype and np.array_equal(echoed, pixels)
    assert "XMLPARSER" not in echo.output, echo.describe()  # the profile was read without complaint


def _segment_goal(instruction: str, image: Image | None = None, session_id: str = ""):
    from lisa_ros_interfaces.action import Segment

    goal = Segment.Goal(instruction=instruction, session_id=session_id)
    if image is not None:
        goal.image = image
    return goal


def test_segment_action_round_trips_between_processes(ros_processes, ros_node):
    from lisa_ros_interfaces.action import Segment

    server = ros_processes.start_python(
        str(PEERS / "canned_segment_server.py"), "--action", "/harness/segment"
    )
    client = ActionClient(ros_node.node, Segment, "/harness/segment")
    assert client.wait_for_server(timeout_sec=30), server.describe()

    rgb = np.random.default_rng(1).integers(0, 256, (30, 45, 3), dtype=np.uint8)
    image = fill_image_msg(Image(), rgb, "rgb8")
    image.header.frame_id, image.header.stamp.sec = "wrist_camera", 42
    feedback: list = []
    send = client.send_goal_async(
        _segment_goal("the red cup", image), feedback_callback=lambda m: feedback.append(m.feedback)
    )
    goal_handle = ros_node.wait_for_future(send, 10, "goal acceptance")
    assert goal_handle.accepted
    response = ros_node.wait_for_future(goal_handle.get_result_async(), 30, "the result")
    result = response.result

    assert result.error_code == Segment.Result.SUCCESS, result.error_message
    assert (result.header.frame_id, result.header.stamp.sec) == ("wrist_camera", 42)
    assert result.text.count("[SEG]") == len(result.masks) == len(result.mask_info) == 2
    left, right = (image_msg_to_array(mask) for mask in result.masks)
    assert left.shape == (30, 45) and set(np.unique(left)) == {0, 255}
    assert (
        left[:, :15].all()
        and not left[:, 15:].any()
        and right[:, 30:].all()
        and not right[:, :30].any()
    )
    assert all(mask.header.frame_id == "wrist_camera" for mask in result.masks)
    assert [info.bbox.x_offset for info in result.mask_info] == [0, 30]
    assert [info.area for info in result.mask_info] == [450, 450]
    # Feedback and result travel separately: the last feedback may still be on its way. (The
    # first may race the client's acceptance of the goal: rclpy drops feedback of unknown goals.)
    ros_node.wait_until(
        lambda: feedback and feedback[-1].stage == "decoding_masks", 10, "the last feedback"
    )
    assert "generating" in [f.stage for f in feedback]
    assert feedback[-1].text == result.text


def test_segment_goal_is_canceled_across_processes(ros_processes, ros_node):
    from action_msgs.msg import GoalStatus
    from lisa_ros_interfaces.action import Segment

    server = ros_processes.start_python(str(PEERS / "canned_segment_server.py"))
    client = ActionClient(ros_node.node, Segment, "/lisa/segment")
    assert client.wait_for_server(timeout_sec=30), server.describe()
    feedback: list = []
    send = client.send_goal_async(
        _segment_goal("a slow answer"), feedback_callback=lambda m: feedback.append(m)
    )
    goal_handle = ros_node.wait_for_future(send, 10, "goal acceptance")
    ros_node.wait_until(lambda: len(feedback) >= 3, 10, "generation feedback")

    ros_node.wait_for_future(goal_handle.cancel_goal_async(), 10, "the cancel response")
    response = ros_node.wait_for_future(goal_handle.get_result_async(), 10, "the canceled result")

    assert response.status == GoalStatus.STATUS_CANCELED
    assert response.result.error_code == Segment.Result.CANCELED
    assert response.result.header.frame_id == "canned_camera"  # no goal image: the "latest frame"
