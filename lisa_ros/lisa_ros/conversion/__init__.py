"""ROS image messages to numpy arrays and back, without rclpy or cv_bridge: colour images
(:mod:`.images`: ``sensor_msgs/Image`` in every encoding the node takes, ``CompressedImage``) and
depth images (:mod:`.depth`: 16UC1 / 32FC1 and image_transport's ``compressedDepth``).

The functions read and write message *fields*, so they work on rclpy messages and on any object
with those attributes, and the package imports without ROS.
"""
