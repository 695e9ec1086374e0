"""Python warnings in the node process reach the ROS log as one line each (on /rosout, with the
node's name and WARN), not as ``warnings.formatwarning``'s path-first text with a source line.

The warning rclpy raises when a service response cannot be sent (``RuntimeWarning: failed to send
response (timeout)``, seen when a ``ros2 lifecycle get`` gave up during a model load) cannot be
provoked on demand, so the test raises one of the same category and text through the warnings
machinery, into the route the node attaches (:class:`CoreLogRoute`) and a real rclpy logger.
"""

from __future__ import annotations

import warnings

from rcl_interfaces.msg import Log

from lisa_ros.node.core_logging import CoreLogRoute


def test_a_python_warning_is_one_warn_line_on_rosout(ros_node) -> None:
    received: list[Log] = []
    subscription = ros_node.node.create_subscription(Log, "/rosout", received.append, 50)
    ros_node.wait_for_publishers(subscription)  # the node's own rosout publisher
    route = CoreLogRoute(ros_node.node.get_logger())
    shown_before = warnings.showwarning
    route.attach()
    try:
        warnings.warn_explicit(
            "failed to send response (timeout):\n  client gone",
            RuntimeWarning,
            "/opt/venv/site-packages/rclpy/service.py",
            42,
        )
    finally:
        route.detach()
    assert warnings.showwarning is shown_before  # detach puts Python's hook back

    def ours() -> list[Log]:
        return [m for m in list(received) if "failed to send response" in m.msg]

    logged = ros_node.wait_until(ours, 10.0, "the warning on /rosout")
    assert len(logged) == 1
    line = logged[0]
    assert line.level == Log.WARN and line.name == ros_node.node.get_logger().name
    assert line.msg == (
        "failed to send response (timeout): client gone (RuntimeWarning at service.py:42)"
    )
    ros_node.node.destroy_subscription(subscription)
