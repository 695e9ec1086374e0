"""Launch the LISA node (a lifecycle node that configures and activates itself), and RViz if asked.

    ros2 launch lisa_ros lisa.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info depth:=/camera/aligned_depth_to_color/image_raw \
        model:=xinlai/LISA-7B-v1 use_rviz:=true

Parameters come from ``params_file`` (default: the package's config/lisa.yaml); the model and
parameter arguments below override it only when given (``instruction_text:="the red mug"`` starts
with a standing instruction; ``instruction:=`` remaps the topic instead). With the defaults the
action is /lisa/segment and the results are /lisa/text, /lisa/masks, /lisa/overlay,
/lisa/segmentation, /lisa/markers and /lisa/points; ``namespace:=robot1`` moves them all under
/robot1.
"""

from __future__ import annotations

import os

from ament_index_python.packages import (
    PackageNotFoundError,
    get_package_prefix,
    get_package_share_directory,
)
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.conditions import IfCondition
from launch.events.process import ProcessExited
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "lisa_ros"
NODE_NAME = "lisa"

# Launch arguments that override the node's model parameter of the same name when not empty.
MODEL_ARGUMENTS = {
    "model": "LISA checkpoint: hub id (xinlai/LISA-7B-v1, xinlai/LISA-13B-llama2-v1) or folder",
    "vision_tower": "CLIP vision tower (hub id or folder); default: the checkpoint's",
    "precision": "bf16, fp16 or fp32",
    "quantization": "int8 or nf4 to quantize the LLM (bitsandbytes); 'none' for no quantization",
    "device": "cpu, cuda, cuda:1, ...; default: the first GPU if any",
    "adapter": "lisa-finetune output folder (or hub id) to load on the model",
}
# Launch arguments that set the node parameter of the same name when they are not empty.
PARAMETER_ARGUMENTS = {
    "instruction_text": (
        "standing instruction to segment continuously from the start, until the instruction "
        "topic replaces it"
    ),
    "max_new_tokens": "longest answer, in tokens",
    "record_dir": "save every reasoned answer into this folder as a dataset",
}
# The overrides whose parameter is an integer; all others are strings, taken as they are written
# (launch would otherwise read 'yes' or 'a: b' as YAML).
INTEGER_ARGUMENTS = ("max_new_tokens",)
# Launch arguments naming the input topics (remappings of the node's relative names).
TOPIC_ARGUMENTS = {
    "image": (
        "camera image topic (sensor_msgs/Image; with image_transport 'compressed' its /compressed)"
    ),
    "camera_info": "camera info topic (sensor_msgs/CameraInfo)",
    "depth": (
        "depth image registered to the colour camera (sensor_msgs/Image, 16UC1 mm or 32FC1 m; with "
        "depth_transport 'compressedDepth' its /compressedDepth), e.g. "
        "/camera/camera/aligned_depth_to_color/image_raw"
    ),
    "instruction": "standing instruction topic (std_msgs/String)",
}


def _launch_setup(context: LaunchContext) -> list:
    def argument(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    overrides: dict[str, ParameterValue] = {}
    for name in (*MODEL_ARGUMENTS, *PARAMETER_ARGUMENTS):
        value = argument(name)
        if value:
            overrides[name] = _parameter_value(name, value)
    remappings = [(name, argument(name)) for name in TOPIC_ARGUMENTS if argument(name) != name]

    lisa = LifecycleNode(
        package=PACKAGE,
        executable="lisa_node",
        name=NODE_NAME,
        namespace=argument("namespace"),
        parameters=[argument("params_file"), overrides],
        remappings=remappings,
        output="screen",
        emulate_tty=True,
        on_exit=_end_the_launch,
    )
    if not IfCondition(LaunchConfiguration("use_rviz")).evaluate(context):
        return [lisa]
    if not _package_installed("rviz2"):
        # A robot without a display is the common case: serve it, and say how to watch elsewhere.
        get_logger("lisa.launch").warning(
            "use_rviz:=true, but rviz2 is not installed here: starting lisa_node without RViz. "
            "Install it (apt install ros-$ROS_DISTRO-rviz2) or run "
            f"'rviz2 -d {argument('rviz_config')}' on a machine that sees this ROS graph."
        )
        return [lisa]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", argument("rviz_config")],
        output="log",
    )
    return [lisa, rviz]


def _parameter_value(name: str, value: str) -> ParameterValue:
    if name == "quantization" and value == "none":
        return ParameterValue("", value_type=str)
    if name not in INTEGER_ARGUMENTS:
        return ParameterValue(value, value_type=str)
    try:
        return ParameterValue(int(value), value_type=int)
    except ValueError:
        raise ValueError(f"{name}:={value!r} is not a whole number") from None


def _end_the_launch(event: ProcessExited, context: LaunchContext) -> list | None:
    """Without the node there is nothing to run: end the launch (RViz included) with it. Unless
    the launch is already ending (Ctrl-C): a second Shutdown makes launch_ros stop its ROS adapter
    twice ("Cannot shutdown a ROS adapter that is not running") and launch exit with status 1."""
    if context.is_shutdown:
        return None
    return [Shutdown(reason="lisa_node exited")]


def _package_installed(name: str) -> bool:
    try:
        get_package_prefix(name)
    except PackageNotFoundError:
        return False
    return True


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(share, "config", "lisa.yaml"),
            description="YAML file with the node's parameters",
        ),
        *(
            DeclareLaunchArgument(
                name, default_value="", description=f"{text} (overrides params_file)"
            )
            for name, text in {**MODEL_ARGUMENTS, **PARAMETER_ARGUMENTS}.items()
        ),
        *(
            DeclareLaunchArgument(name, default_value=name, description=text)
            for name, text in TOPIC_ARGUMENTS.items()
        ),
        DeclareLaunchArgument(
            "use_rviz", default_value="false", description="start RViz with lisa.rviz"
        ),
        DeclareLaunchArgument(
            "rviz_config",
            default_value=os.path.join(share, "rviz", "lisa.rviz"),
            description="RViz configuration file",
        ),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_launch_setup)])
