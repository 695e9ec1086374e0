"""The node's output messages: headers copied from the source frame (the depth frame's for 3D),
one record per mask as the CLIs save it, and messages (and 3D targets) built only for topics
someone subscribes to."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed in this venv: run 'make setup'")
pytest.importorskip(
    "lisa_ros_interfaces", reason="lisa_ros_interfaces is not built: run 'make setup'"
)

from builtin_interfaces.msg import Time  # noqa: E402
from hand_made_results import two_masks  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from lisa_ros.cli.ask import mask_record  # noqa: E402
from lisa_ros.cli.files import result_record  # noqa: E402
from lisa_ros.conversion.images import fill_image_msg, image_msg_to_array  # noqa: E402
from lisa_ros.model.follow_quality import MaskDrift  # noqa: E402
from lisa_ros.node.depth import DepthPartner  # noqa: E402
from lisa_ros.node.following import FollowSettings  # noqa: E402
from lisa_ros.node.headers import copy_header  # noqa: E402
from lisa_ros.node.outputs import Answer, Followed, ResultPublishers, mask_info  # noqa: E402
from lisa_ros.visualization import draw_overlay, label_image  # noqa: E402

HEADER = Header(stamp=Time(sec=1700000000, nanosec=123), frame_id="camera_optical")
DEPTH_HEADER = Header(stamp=Time(sec=1700000000, nanosec=456), frame_id="camera_optical")


class FakePublisher:
    """A publisher with a fixed number of subscribers that keeps what it is given."""

    def __init__(self, subscribers: int) -> None:
        self.subscribers = subscribers
        self.published: list[object] = []

    def get_subscription_count(self) -> int:
        return self.subscribers

    def publish(self, message: object) -> None:
        self.published.append(message)


def answer() -> Answer:
    image = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    depth_msg = fill_image_msg(
        Image(), np.full((6, 8), 1000, np.uint16), "16UC1", header=DEPTH_HEADER
    )
    calibration = CameraInfo(header=HEADER, k=[8.0, 0.0, 3.5, 0.0, 8.0, 2.5, 0.0, 0.0, 1.0])
    return Answer(
        HEADER,
        calibration,
        "where is the mug?",
        image,
        two_masks(),
        depth=DepthPartner(depth_msg, calibration, image_header=HEADER),
        node_timings={"queued": 0.1},
    )


def test_copy_header_shares_nothing_with_the_source_header() -> None:
    source = Header(stamp=Time(sec=1700000000, nanosec=123), frame_id="camera_optical")
    copy = copy_header(source)
    source.stamp.sec, source.stamp.nanosec, source.frame_id = 1, 2, "elsewhere"
    assert (copy.stamp.sec, copy.stamp.nanosec) == (1700000000, 123)
    assert copy.frame_id == "camera_optical"


def test_mask_info_carries_the_record_that_lisa_ask_saves() -> None:
    result = two_masks()
    records = result.mask_records()
    infos = [mask_info(record) for record in records]
    assert [mask_record(info) for info in infos] == records
    assert (infos[1].seg_index, infos[1].text_offset, infos[1].area) == (1, 35, 16)
    box = infos[0].bbox
    assert (box.x_offset, box.y_offset, box.width, box.height) == (2, 1, 3, 2)
    # The same masks give the same result.json entries from lisa-segment and from lisa-ask.
    read_back = [mask_record(info) for info in infos]
    from_node = result_record({}, result.text, read_back, result.timings)
    assert from_node == result_record({}, result.text, records, result.timings)


def test_messages_are_built_only_for_topics_with_subscribers() -> None:
    listened = {
        "text": FakePublisher(1),
        "masks": FakePublisher(0),
        "overlay": FakePublisher(2),
        "segmentation": FakePublisher(0),
        "markers": FakePublisher(0),
        "points": FakePublisher(0),
    }
    outputs = ResultPublishers(listened)
    given = answer()
    assert set(outputs.messages(given)) == {"text", "overlay"}
    # Nobody reads 3D: the depth image was not even decoded.
    assert "targets" not in vars(given) and "_depth_frame" not in vars(given)

    outputs.publish(answer())
    assert [len(listened[topic].published) for topic in ResultPublishers.TOPICS] == [
        1,
        0,
        1,
        0,
        0,
        0,
    ]


def test_every_message_holds_the_answer_with_the_source_header() -> None:
    given = answer()
    everyone = {topic: FakePublisher(1) for topic in ResultPublishers.TOPICS}
    messages = ResultPublishers(everyone).messages(given)
    masks = given.result.masks

    assert messages["text"].data == given.result.text
    np.testing.assert_array_equal(image_msg_to_array(messages["masks"]), label_image(masks))
    overlay = messages["overlay"]
    assert overlay.encoding == "bgr8"
    expected = draw_overlay(given.image_rgb, masks, given.result.text)[..., ::-1]
    np.testing.assert_array_equal(image_msg_to_array(overlay), expected)
    segmentation = messages["segmentation"]
    sent_masks = [image_msg_to_array(image) for image in segmentation.masks]
    np.testing.assert_array_equal(np.stack(sent_masks), masks.astype(np.uint8) * 255)
    assert [image.encoding for image in segmentation.masks] == ["mono8", "mono8"]
    assert [mask_record(info) for info in segmentation.mask_info] == given.result.mask_records()
    assert [(t.stage, t.seconds) for t in segmentation.timings] == [("queued", 0.1), ("total", 0.5)]
    for message in (overlay, messages["masks"], segmentation, *segmentation.masks):
        assert message.header == HEADER and message.header is not HEADER

    # 3D: every output in the depth image's frame, from the same targets.
    assert segmentation.depth_header == DEPTH_HEADER and segmentation.depth_status == ""
    assert [info.has_target for info in segmentation.mask_info] == [
        target.ok for target in given.targets
    ]
    assert messages["points"].header == DEPTH_HEADER
    assert messages["points"].width == sum(t.num_points for t in given.targets if t.ok)
    assert all(marker.header == DEPTH_HEADER for marker in messages["markers"].markers[1:])


def test_the_action_result_and_segmentation_share_the_mask_messages() -> None:
    given = answer()
    assert given.mask_images is given.mask_images and given.mask_infos is given.mask_infos
    segmentation = given.segmentation_msg()
    assert segmentation.masks == given.mask_images and segmentation.mask_info == given.mask_infos


def followed_answer() -> Answer:
    reasoned = answer()
    later = Header(stamp=Time(sec=1700000002, nanosec=623), frame_id="camera_optical")
    drifts = [
        MaskDrift(0, 0.8, 0.9, 1.25, 0.05, 0.7, 8, 10),
        MaskDrift(1, 0.7, 0.9, 0.5, 0.1, 0.4, 16, 8),
    ]
    return Answer(
        later,
        reasoned.camera_info,
        reasoned.instruction,
        reasoned.image_rgb,
        reasoned.result,
        followed=Followed(reasoned_header=HEADER, drifts=drifts),
    )


def test_a_followed_answer_says_what_it_rests_on_and_sends_no_text() -> None:
    given = followed_answer()
    everyone = {topic: FakePublisher(1) for topic in ResultPublishers.TOPICS}
    messages = ResultPublishers(everyone).messages(given)
    assert "text" not in messages  # the answer's words are the reasoned frame's, already sent
    segmentation = messages["segmentation"]
    assert segmentation.followed and segmentation.reasoned_header == HEADER
    assert segmentation.reasoning_age == pytest.approx(2.0000005)
    assert [(i.area_ratio, i.centre_shift, i.box_iou) for i in segmentation.mask_info] == [
        pytest.approx((1.25, 0.05, 0.7)),
        pytest.approx((0.5, 0.1, 0.4)),
    ]
    reasoned = answer().segmentation_msg()
    assert not reasoned.followed and reasoned.reasoned_header == HEADER
    assert reasoned.reasoning_age == 0.0
    assert all((i.area_ratio, i.centre_shift, i.box_iou) == (1, 0, 1) for i in reasoned.mask_info)


@pytest.mark.parametrize(
    ("drift", "problem"),
    [
        (MaskDrift(0, 0.9, 0.9, 1.0, 0.0, 1.0, 10, 10), None),
        (MaskDrift(0, 0.9, 0.9, 0.0, 1.0, 0.0, 10, 0), "mask 0 is lost"),
        (MaskDrift(0, 0.4, 0.9, 1.0, 0.0, 1.0, 10, 10), "predicted IoU fell to 0.40"),
        (MaskDrift(0, 0.9, 0.9, 2.5, 0.0, 1.0, 10, 25), "area changed 2.50 times"),
        (MaskDrift(0, 0.9, 0.9, 0.4, 0.0, 1.0, 10, 4), "area changed 0.40 times"),
        (MaskDrift(0, 0.9, 0.9, 1.0, 0.3, 0.2, 10, 10), "moved by 30%"),
    ],
)
def test_followed_masks_hold_until_a_threshold_is_crossed(
    drift: MaskDrift, problem: str | None
) -> None:
    found = FollowSettings().problem([drift])
    assert found == problem if problem is None else problem in found
