"""The lisa ROS 2 node (lisa_node) and its parts (its client, lisa-ask, is in lisa_ros.cli)."""
