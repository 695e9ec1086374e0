"""lisa-ask end to end on a real ROS graph: the console script in its own process, against the
canned Segment action server (graph_peers/canned_segment_server.py) in another.

The node's own behaviour is tested against lisa_node elsewhere; here the server's answers are
known, so everything lisa-ask prints, saves and returns can be checked exactly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lisa_ros.visualization import draw_overlay

pytest.importorskip("rclpy", reason="rclpy is not installed in this venv: run 'make setup'")
pytest.importorskip(
    "lisa_ros_interfaces", reason="lisa_ros_interfaces is not built: run 'make setup'"
)

from graph_peers.canned_segment_server import ANSWER, camera_picture  # noqa: E402

LISA_ASK = Path(sys.executable).with_name("lisa-ask")
CANNED_SERVER = Path(__file__).parent / "graph_peers" / "canned_segment_server.py"


@pytest.fixture
def canned_server(ros_processes):
    server = ros_processes.start_python(str(CANNED_SERVER))
    server.wait_for_output("canned_segment_server ready", timeout=30)
    return server


def ask(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    if not LISA_ASK.exists():
        pytest.fail(f"{LISA_ASK} is missing: install lisa_ros into the venv (make setup)")
    done = subprocess.run(
        [str(LISA_ASK), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def thirds(height: int, width: int) -> list[np.ndarray]:
    """The canned server's masks: the left and the right third of the image, 0/255."""
    left, right = np.zeros((2, height, width), np.uint8)
    left[:, : width // 3] = 255
    right[:, width - width // 3 :] = 255
    return [left, right]


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_image_file_goal_prints_the_answer_and_saves_masks_overlay_and_json(
    ros_env, canned_server, tmp_path
):
    picture = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    image_file = tmp_path / "kitchen.png"
    cv2.imwrite(str(image_file), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    output = tmp_path / "out"

    done = ask(
        ros_env, "where is the red cup?", "--image", str(image_file), "--output", str(output)
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == ANSWER + "\n"  # stdout holds the answer only
    assert "[generating] Sure, the left part" in done.stderr
    assert 'SUCCESS: 2 mask(s) (mask 0 "the left part": 1560 px' in done.stderr
    # Where each mask is in 3D (the canned node placed the first one only), and why not.
    assert (
        'mask 0 "the left part": centroid x=0.125 y=-0.250 z=0.750 m in '
        "camera_color_optical_frame, size 0.250 x 0.500 x 0.100 m, 1234 points, depth on 88% "
        "of the mask" in done.stderr
    )
    assert 'mask 1 "the right part": no 3D target (no usable depth in the mask)' in done.stderr
    masks = [cv2.imread(str(output / f"mask_{k}.png"), cv2.IMREAD_UNCHANGED) for k in range(2)]
    # the masks are of the image that was sent
    for saved, expected in zip(masks, thirds(60, 80), strict=True):
        np.testing.assert_array_equal(saved, expected)
    expected_overlay = draw_overlay(picture, np.stack(masks) > 0, ANSWER)
    np.testing.assert_array_equal(read_rgb(output / "overlay.png"), expected_overlay)

    record = json.loads((output / "result.json").read_text())
    assert record["error_code_name"] == "SUCCESS" and record["status"] == "SUCCEEDED"
    assert record["instruction"] == "where is the red cup?" and record["image"] == str(image_file)
    assert record["text"] == ANSWER and record["overlay"] == "overlay.png"
    assert record["header"]["stamp"]["sec"] > 0  # lisa-ask stamps the image it sends
    assert [m["bbox_xywh"] for m in record["masks"]] == [[0, 0, 26, 60], [54, 0, 26, 60]]
    assert [m["file"] for m in record["masks"]] == ["mask_0.png", "mask_1.png"]
    assert record["timings_s"] == {"total": 0.01}
    assert record["depth"]["frame_id"] == "camera_color_optical_frame"
    assert record["depth"]["stamp"] == record["header"]["stamp"]
    first, second = (m["target"] for m in record["masks"])
    assert first == {
        "ok": True,
        "reason": "",
        "centroid_m": [0.125, -0.25, 0.75],
        "extent_min_m": [0.0, -0.5, 0.7],
        "extent_max_m": [0.25, 0.0, 0.8],
        "num_points": 1234,
        "valid_ratio": 0.875,
    }
    assert second["ok"] is False and second["reason"] == "no usable depth in the mask"


def test_latest_frame_goals_follow_a_session_and_draw_on_the_camera_frame(
    ros_env, canned_server, tmp_path
):
    first = ask(ros_env, "what is on the table?", "--session", "k1")
    second = ask(
        ros_env,
        "and what is left of it?",
        "--session",
        "k1",
        "--image-topic",
        "/image",
        "--output",
        str(tmp_path),
    )

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.strip().endswith("(session k1, turn 1)")
    assert second.stdout.strip().endswith("(session k1, turn 2)")
    assert "using the node's latest frame" in second.stderr
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["header"]["frame_id"] == "canned_camera" and record["image"] is None
    assert "overlay_background" not in record  # the frame the node used was found on /image
    masks = np.stack(
        [cv2.imread(str(tmp_path / f"mask_{k}.png"), cv2.IMREAD_UNCHANGED) > 0 for k in range(2)]
    )
    expected_overlay = draw_overlay(camera_picture(), masks, record["text"])
    np.testing.assert_array_equal(read_rgb(tmp_path / "overlay.png"), expected_overlay)


def test_a_camera_frame_without_colour_meaning_still_saves_the_result(
    ros_env, ros_processes, tmp_path
):
    server = ros_processes.start_python(str(CANNED_SERVER), "--camera-encoding", "32FC3")
    server.wait_for_output("canned_segment_server ready", timeout=30)

    done = ask(
        ros_env, "what is on the table?", "--image-topic", "/image", "--output", str(tmp_path)
    )

    assert done.returncode == 0, done.stderr
    assert (
        "the frame on /image cannot be drawn on (cannot make an RGB picture from a 32FC3 image"
        in done.stderr
    )
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["overlay_background"].startswith("black")
    masks = np.stack(
        [cv2.imread(str(tmp_path / f"mask_{k}.png"), cv2.IMREAD_UNCHANGED) for k in range(2)]
    )
    np.testing.assert_array_equal(masks, np.stack(thirds(48, 64)))


def test_outcomes_other_than_success_have_their_own_message_and_exit_status(
    ros_env, canned_server, tmp_path
):
    nothing = ask(ros_env, "is there nothing?", "--output", str(tmp_path))
    assert nothing.returncode == 3, nothing.stderr
    assert nothing.stdout == "I cannot see that here.\n"
    assert "NOTHING_FOUND: the answer refers to no region" in nothing.stderr
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["error_code_name"] == "NOTHING_FOUND" and record["masks"] == []
    assert not (tmp_path / "overlay.png").exists() and not (tmp_path / "mask_0.png").exists()

    failed = ask(ros_env, "fail now")
    assert failed.returncode == 1
    assert (
        "lisa-ask: error: INFERENCE_FAILED: canned failure: CUDA out of memory (goal ABORTED)"
        in failed.stderr
    )

    rejected = ask(ros_env, "reject this")
    assert rejected.returncode == 1
    assert "lisa-ask: error: the goal was rejected by /lisa/segment" in rejected.stderr


def test_ctrl_c_cancels_the_goal_on_the_node(ros_processes, canned_server):
    asking = ros_processes.start_console_script("lisa-ask", "a slow question")
    asking.wait_for_output(r"\[generating\] thinking thinking", timeout=30)
    asking.send_signal(signal.SIGINT)

    assert asking.wait(timeout=15) == 130, asking.describe()
    # The server's own result: the cancel reached it and it stopped generating.
    assert "lisa-ask: CANCELED: canceled by the client (goal CANCELED)" in asking.output, (
        asking.describe()
    )
    assert "Traceback" not in asking.output


def test_timeout_cancels_the_goal_and_fails(ros_env, canned_server):
    done = ask(ros_env, "a slow question", "--timeout", "2")
    assert done.returncode == 1
    assert "the node ended the goal: CANCELED" in done.stderr
    assert "lisa-ask: error: no result within --timeout 2 s (goal canceled)" in done.stderr


@pytest.mark.parametrize(
    ("args", "exit_status", "message"),
    [
        (
            ["x", "--action", "/nobody/segment", "--server-timeout", "1"],
            1,
            "no action server /nobody/segment after 1 s",
        ),
        (["x", "--image", "/no/such/file.png"], 2, "image '/no/such/file.png' does not exist"),
        (["x", "--image", __file__], 2, "cannot be decoded: use a PNG, JPEG"),
        (["   "], 2, "the instruction is empty"),
        (
            ["x", "--output", "/proc/version/out"],
            2,
            "output folder '/proc/version/out' cannot be created",
        ),
        (["x", "--timeout", "0"], 2, "argument --timeout: must be a positive number"),
    ],
)
def test_mistakes_end_with_one_line_and_no_goal(ros_env, args, exit_status, message):
    done = ask(ros_env, *args)
    assert done.returncode == exit_status, done.stderr
    assert message in done.stderr
    assert "goal accepted" not in done.stderr and done.stdout == ""
