"""Tests on a real ROS 2 graph: processes started with the ros2 tools or ``lisa_node``, and rclpy
nodes in the pytest process. They need ROS 2's Python packages (rclpy, the messages,
lisa_ros.node), so they live apart from unit/, which runs without them.

The fixtures come from ros_harness.py (ros_env, ros_processes, ros_node: the local graph and its
processes) and node_graph.py (module_processes, graph: a scripted lisa_node shared by a module's
tests); graph_peers/ holds small peers that tests start in processes of their own. These modules
live here so that only the graph tests load them; the model fixtures (reference, fixture_image)
come from ../conftest.py.
"""

from node_graph import graph, module_processes  # noqa: F401  (fixtures)
from ros_harness import ros_env, ros_node, ros_processes  # noqa: F401  (fixtures)
