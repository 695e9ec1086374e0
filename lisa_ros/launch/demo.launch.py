"""The demo: lisa_node, a player for a bundled RGB-D scene, and one goal; then it ends.

    ros2 launch lisa_ros demo.launch.py                   # CPU, the tiny model + its toy adapter
    ros2 launch lisa_ros demo.launch.py model:=xinlai/LISA-7B-v1 adapter:= device:=cuda

Starts ``rgbd_player`` in the namespace ``camera`` (the scene in share/lisa_ros/demo/scene as
/camera/color/image_raw, /camera/color/camera_info and /camera/aligned_depth_to_color/image_raw
at 5 Hz) and ``lisa_node`` reading them. Once the node is active (its lifecycle transition event)
and a few frames have arrived, ``lisa-ask`` sends ``question`` as a goal on the node's latest
frame: it prints the answer, each mask's 3D centroid in the camera frame and the files it wrote
(``overlay.png``, ``mask_<k>.png``, ``result.json`` in ``output``). When it exits, the launch
shuts down; an unanswered goal makes ``ros2 launch`` exit with status 1.

By default the model is the repository's tiny random-weight LISA with a toy adapter trained by
lisa_ros/tools/make_demo_adapter.py to answer this one question about this one scene: it shows
the plumbing, not LISA's intelligence. With a GPU and the Hugging Face hub, ``model:=`` a
released checkpoint and ``adapter:=`` (empty: none) run the same demo with the real model.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    Shutdown,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.events.process import ProcessExited
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition

from lisa_ros.cli.files import OVERLAY_FILE

PACKAGE = "lisa_ros"
CAMERA = "/camera"
# Frames the node receives between its activation and the goal (the player runs at 5 Hz).
SETTLE_S = 1.0


class DemoFailed(RuntimeError):
    """Raised inside the launch so that ``ros2 launch`` reports the failure in its exit status."""


def _arguments(share: str) -> list[DeclareLaunchArgument]:
    demo = os.path.join(share, "demo")
    tiny = os.path.join(demo, "lisa-tiny-7b")
    ros_home = os.environ.get("ROS_HOME") or os.path.join("~", ".ros")
    defaults = {
        "model": (
            os.path.join(tiny, "checkpoint"),
            "LISA checkpoint (hub id or folder); default: the bundled tiny random-weight model",
        ),
        "vision_tower": (
            "",
            "CLIP tower; empty: the bundled one for the tiny model, else the checkpoint's",
        ),
        "adapter": (
            os.path.join(demo, "red_box_adapter"),
            "lisa-finetune adapter; default: the toy one trained for this scene; empty: none",
        ),
        "device": ("cpu", "cpu, cuda, cuda:1, ..."),
        "precision": ("", "bf16, fp16 or fp32; empty: fp32 on the CPU, bf16 on a GPU"),
        "max_new_tokens": ("64", "longest answer in tokens"),
        "question": ("Where is the red box?", "the instruction sent as a goal"),
        "output": (
            os.path.join(ros_home, "lisa_demo"),
            "folder for lisa-ask's overlay.png, mask_<k>.png and result.json",
        ),
        "scene": (os.path.join(demo, "scene"), "the RGB-D scene folder rgbd_player publishes"),
    }
    return [
        DeclareLaunchArgument(name, default_value=value, description=text)
        for name, (value, text) in defaults.items()
    ]


def _model_parameters(argument, tiny_checkpoint: str, tiny_clip: str) -> dict[str, object]:
    """The node's model parameters from the launch arguments (see their descriptions)."""
    model, device = argument("model"), argument("device")
    vision_tower = argument("vision_tower")
    if not vision_tower and os.path.realpath(model) == os.path.realpath(tiny_checkpoint):
        vision_tower = tiny_clip  # its config.json names "../clip", relative to no folder we know
    return {
        "model": model,
        "vision_tower": vision_tower,
        "adapter": argument("adapter"),
        "device": device,
        "precision": argument("precision") or ("fp32" if device == "cpu" else "bf16"),
        "max_new_tokens": int(argument("max_new_tokens")),
    }


def _launch_setup(context: LaunchContext) -> list:
    def argument(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    share = get_package_share_directory(PACKAGE)
    tiny = os.path.join(share, "demo", "lisa-tiny-7b")
    output = os.path.expanduser(argument("output"))
    image = f"{CAMERA}/color/image_raw"

    player = Node(
        package=PACKAGE,
        executable="rgbd_player",
        namespace=CAMERA,
        parameters=[{"scene": argument("scene"), "rate_hz": 5.0}],
        output="screen",
    )
    lisa = LifecycleNode(
        package=PACKAGE,
        executable="lisa_node",
        name="lisa",
        namespace="",
        parameters=[
            os.path.join(share, "config", "lisa.yaml"),
            _model_parameters(
                argument, os.path.join(tiny, "checkpoint"), os.path.join(tiny, "clip")
            ),
        ],
        remappings=[
            ("image", image),
            ("camera_info", f"{CAMERA}/color/camera_info"),
            ("depth", f"{CAMERA}/aligned_depth_to_color/image_raw"),
        ],
        output="screen",
        emulate_tty=True,
        # Without the node the goal never comes: end the demo (unless it is ending already).
        on_exit=OpaqueFunction(function=_shut_down, args=["lisa_node exited"]),
    )
    ask = Node(
        package=PACKAGE,
        executable="lisa-ask",
        name="lisa_ask",
        arguments=[argument("question"), "--image-topic", image, "--output", output],
        output="screen",
    )

    def finished(event: ProcessExited, _: LaunchContext) -> list:
        if event.returncode == 0:
            return [
                LogInfo(msg=f"Demo done: the overlay is {os.path.join(output, OVERLAY_FILE)}"),
                Shutdown(reason="the demo's goal was answered"),
            ]
        return [
            Shutdown(reason=f"lisa-ask exited with status {event.returncode}"),
            OpaqueFunction(function=_fail, args=[event.returncode]),
        ]

    return [
        player,
        lisa,
        RegisterEventHandler(
            OnStateTransition(
                target_lifecycle_node=lisa,
                goal_state="active",
                entities=[TimerAction(period=SETTLE_S, actions=[ask])],
            )
        ),
        RegisterEventHandler(OnProcessExit(target_action=ask, on_exit=finished)),
    ]


def _shut_down(context: LaunchContext, reason: str) -> list:
    """Shutdown once: a second Shutdown event makes launch_ros stop its ROS adapter twice, which
    fails and turns the exit status to 1."""
    return [] if context.is_shutdown else [Shutdown(reason=reason)]


def _fail(_: LaunchContext, returncode: int) -> list:
    raise DemoFailed(f"the demo's goal was not answered (lisa-ask exited with {returncode})")


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([*_arguments(share), OpaqueFunction(function=_launch_setup)])
