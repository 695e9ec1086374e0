"""The node's topic inputs (camera, depth, camera_info, instruction), on a thread of their own.

rclpy's executors decide what to run in Python: for every message they build a wait set from every
entity of their nodes, and do it again when the message's callback ends. lisa_node has about thirty
entities (the lifecycle, parameter and action services, the result publishers' events, timers),
so its MultiThreadedExecutor spent about 4 ms of CPU on each camera frame before and after taking
it: an idle node at 30 Hz cost 13 % of a core in its executor loop alone, and twice and more a bare
subscription to the same stream (which spins one subscription on a single-threaded executor).

So the inputs are subscriptions of a small node of their own, spun by a single-threaded executor
that waits on nothing else: a frame costs what it costs a bare subscription. The callbacks here
only hand their message over (microseconds), in arrival order, as the mutually exclusive input
group did. The services, the action server and the timers stay on the owner's executor, whose
threads keep answering during a model load or a long generation.

The node is hidden (``_<owner>_inputs``: ``ros2 node list`` shows it with ``--all``) and lives in
the owner's namespace. Topic names are resolved by the owner, so its namespace and remappings
(``image:=/camera/color/image_raw``) apply exactly as to its own names. The input node takes no
command-line arguments itself: the owner's ``__node:=`` remapping would rename it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.subscription import Subscription

from .thread_names import name_this_thread

__all__ = ["InputNode"]

THREAD_NAME = "lisa-inputs"


class InputNode:
    """Subscriptions for ``owner``, served on a thread of their own until :meth:`close`."""

    def __init__(self, owner: Node) -> None:
        self._owner = owner
        self._node = Node(
            f"_{owner.get_name()}_inputs",
            namespace=owner.get_namespace(),
            context=owner.context,
            use_global_arguments=False,
            start_parameter_services=False,
            enable_rosout=False,
        )
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self._node)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def subscribe(
        self, msg_type: Any, topic: str, callback: Callable[[Any], None], qos: QoSProfile
    ) -> Subscription:
        """Subscribe to ``topic`` as the owner names it (relative names in its namespace, its
        remappings applied)."""
        resolved = self._owner.resolve_topic_name(topic)
        return self._node.create_subscription(msg_type, resolved, callback, qos)

    def unsubscribe(self, subscription: Subscription) -> None:
        self._node.destroy_subscription(subscription)

    def close(self, timeout: float | None = None) -> bool:
        """Stop taking messages and destroy the node; False if a callback still ran after
        ``timeout`` seconds. Idempotent."""
        if self._closing.is_set():
            return not self._thread.is_alive()
        self._closing.set()
        self._executor.shutdown(timeout_sec=timeout)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self._node.destroy_node()
        return not self._thread.is_alive()

    def _spin(self) -> None:
        name_this_thread(THREAD_NAME)
        while not self._closing.is_set() and self._node.context.ok():
            try:
                self._executor.spin_once()
            except ExternalShutdownException:  # the context was shut down
                return
            except Exception as error:  # noqa: BLE001 - one bad message must not deafen the node
                if self._closing.is_set():
                    return
                self._owner.get_logger().error(f"Unexpected error taking an input: {error!r}")
