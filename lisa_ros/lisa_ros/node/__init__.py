"""The ROS 2 side of lisa_ros: the lisa_node lifecycle node and the lisa-ask action client."""
