"""Graph-test peer: republishes every sensor_msgs/Image from ``image`` on ``image_echo``, untouched.

Started by test_ros_harness.py in a process of its own; prints "image_echo ready" once its
publisher and subscription exist.
"""

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("image_echo")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    echo = node.create_publisher(Image, "image_echo", qos)
    node.create_subscription(Image, "image", echo.publish, qos)
    print("image_echo ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
