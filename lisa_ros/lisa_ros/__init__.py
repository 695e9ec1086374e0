"""lisa_ros: LISA reasoning segmentation for ROS 2; the ROS-free core lives in lisa_ros.model."""
