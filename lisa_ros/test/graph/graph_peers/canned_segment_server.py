"""Graph-test peer: a Segment action server with canned answers, standing in for lisa_node.

It lets the harness and lisa-ask be tested on a real ROS graph without a model. It decodes the
goal image with lisa_ros.conversion.images, sends feedback through the stages lisa_node uses and
answers by keyword in the instruction:

- default: "Sure, the left part [SEG] and the right part [SEG] ." with two masks, the left and
  right thirds of the image (mono8 0/255, the source header), mask_info and timings;
- "nothing": NOTHING_FOUND, no mask;   "fail": INFERENCE_FAILED;   "reject": the goal is rejected;
- "slow": generates for up to 30 s, one feedback every 0.1 s, until canceled (-> CANCELED).

It is its own camera too: it publishes a 48x64 rgb8 gradient on ``image`` at 5 Hz (frame_id
"canned_camera", a new stamp each time; ``--camera-encoding 32FC3`` sends it as a frame with no
colour meaning); a goal without an image uses the latest of those frames.
A session id is counted: the answer ends with "(session ID, turn N)".
Prints "canned_segment_server ready on ACTION" when the server exists.
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np
import rclpy
from geometry_msgs.msg import Point
from lisa_ros_interfaces.action import Segment
from lisa_ros_interfaces.msg import MaskInfo, StageTime
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from sensor_msgs.msg import Image, RegionOfInterest

from lisa_ros.conversion.images import ImageConversionError, fill_image_msg, image_msg_to_array

ANSWER = "Sure, the left part [SEG] and the right part [SEG] ."
PHRASES = ["Sure, the left part", "and the right part"]
WORD_DELAY_S = 0.02  # paced like a model's tokens: feedback is well ahead of the result
# Before the first feedback, as a model encodes the image: rclpy drops feedback of a goal whose
# acceptance the client has not yet received, and on a loaded machine (CI) that answer came after
# the whole 0.2 s feedback stream once, so the test saw none of it.
ENCODE_DELAY_S = 0.5


def camera_picture() -> np.ndarray:
    y, x = np.mgrid[:48, :64]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)


class CannedSegmentServer:
    def __init__(self, node, action_name: str, camera_encoding: str = "rgb8") -> None:
        self.node = node
        self.camera_encoding = camera_encoding
        self.turns: dict[str, int] = {}
        self.latest_frame: Image | None = None
        self.camera = node.create_publisher(Image, "image", 5)
        self.picture = (
            camera_picture() if camera_encoding == "rgb8" else camera_picture().astype(np.float32)
        )
        self.publish_frame()  # a goal arriving right after start-up has a frame too
        node.create_timer(0.2, self.publish_frame)
        self.server = ActionServer(
            node,
            Segment,
            action_name,
            execute_callback=self.execute,
            goal_callback=self.on_goal,
            cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )

    def publish_frame(self) -> None:
        frame = fill_image_msg(Image(), self.picture, self.camera_encoding)
        frame.header.frame_id = "canned_camera"
        frame.header.stamp = self.node.get_clock().now().to_msg()
        self.camera.publish(frame)
        self.latest_frame = frame

    def on_goal(self, goal: Segment.Goal) -> GoalResponse:
        return GoalResponse.REJECT if "reject" in goal.instruction else GoalResponse.ACCEPT

    def execute(self, goal_handle) -> Segment.Result:
        goal = goal_handle.request
        result = Segment.Result()
        source = goal.image if len(goal.image.data) else self.latest_frame
        if source is None:
            result.error_code, result.error_message = Segment.Result.NO_IMAGE, "no camera frame yet"
            goal_handle.abort()
            return result
        result.header = source.header
        try:
            height, width = image_msg_to_array(source).shape[:2]
        except ImageConversionError as error:
            result.error_code, result.error_message = Segment.Result.INVALID_INPUT, str(error)
            goal_handle.abort()
            return result

        time.sleep(ENCODE_DELAY_S)
        self.feedback(goal_handle, "encoding_image", "", 0)
        if "slow" in goal.instruction:
            return self.generate_until_canceled(goal_handle, result)
        if "fail" in goal.instruction:
            result.error_code = Segment.Result.INFERENCE_FAILED
            result.error_message = "canned failure: CUDA out of memory"
            goal_handle.abort()
            return result
        if "nothing" in goal.instruction:
            result.text = "I cannot see that here."
            result.error_code, result.error_message = (
                Segment.Result.NOTHING_FOUND,
                "the answer has no [SEG]",
            )
            goal_handle.succeed()
            return result

        text = ANSWER
        if goal.session_id:
            self.turns[goal.session_id] = self.turns.get(goal.session_id, 0) + 1
            text += f" (session {goal.session_id}, turn {self.turns[goal.session_id]})"
        words = text.split(" ")
        for count in range(1, len(words) + 1):
            self.feedback(goal_handle, "generating", " ".join(words[:count]), count)
            time.sleep(WORD_DELAY_S)
        self.feedback(goal_handle, "decoding_masks", text, len(words))

        result.text = text
        seg_offsets = [match.start() for match in re.finditer(re.escape("[SEG]"), text)]
        third = width // 3
        for index, (left, right) in enumerate([(0, third), (width - third, width)]):
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[:, left:right] = 255
            result.masks.append(fill_image_msg(Image(), mask, "mono8", header=source.header))
            result.mask_info.append(
                MaskInfo(
                    seg_index=index,
                    phrase=PHRASES[index],
                    text_offset=seg_offsets[index],
                    bbox=RegionOfInterest(
                        x_offset=left, y_offset=0, width=right - left, height=height
                    ),
                    area=(right - left) * height,
                    score=0.9 - 0.1 * index,
                )
            )
        # The first mask placed in 3D, the second without usable depth.
        first, second = result.mask_info
        first.has_target, first.num_points, first.valid_ratio = True, 1234, 0.875
        first.centroid = Point(x=0.125, y=-0.25, z=0.75)
        first.extent_min = Point(x=0.0, y=-0.5, z=0.7)
        first.extent_max = Point(x=0.25, y=0.0, z=0.8)
        second.target_status = "no usable depth in the mask"
        result.depth_header.stamp = source.header.stamp
        result.depth_header.frame_id = "camera_color_optical_frame"
        result.timings = [StageTime(stage="total", seconds=0.01)]
        result.error_code = Segment.Result.SUCCESS
        goal_handle.succeed()
        return result

    def generate_until_canceled(self, goal_handle, result: Segment.Result) -> Segment.Result:
        deadline = time.monotonic() + 30.0
        tokens = 0
        while time.monotonic() < deadline:
            if goal_handle.is_cancel_requested:
                result.error_code, result.error_message = (
                    Segment.Result.CANCELED,
                    "canceled by the client",
                )
                result.text = "thinking " * tokens
                goal_handle.canceled()
                return result
            tokens += 1
            self.feedback(goal_handle, "generating", "thinking " * tokens, tokens)
            time.sleep(0.1)
        result.error_code, result.error_message = (
            Segment.Result.INFERENCE_FAILED,
            "nobody canceled the slow goal",
        )
        goal_handle.abort()
        return result

    @staticmethod
    def feedback(goal_handle, stage: str, text: str, tokens: int) -> None:
        goal_handle.publish_feedback(
            Segment.Feedback(stage=stage, text=text, tokens_generated=tokens)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--action", default="/lisa/segment")
    parser.add_argument("--camera-encoding", choices=("rgb8", "32FC3"), default="rgb8")
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node("canned_segment_server")
    CannedSegmentServer(node, args.action, args.camera_encoding)
    print(f"canned_segment_server ready on {args.action}", flush=True)
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
