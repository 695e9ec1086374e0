"""The ROS 2 graph fixtures of ros_harness.py (ros_env, ros_processes, ros_node) and node_graph.py
(module_processes, graph), for the tests in this folder: those that need ROS 2's Python packages
(rclpy, the messages, lisa_ros.node), kept apart so that the rest runs without them."""

from node_graph import graph, module_processes  # noqa: F401  (fixtures)
from ros_harness import ros_env, ros_node, ros_processes  # noqa: F401  (fixtures)
