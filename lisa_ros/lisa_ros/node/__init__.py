"""The lisa ROS 2 node (lisa_node) and its parts; the client lisa-ask lives here too."""
