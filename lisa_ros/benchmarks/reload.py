"""Memory across model reloads in lisa_node: cleanup -> configure -> activate, a goal each time.

A robot swaps checkpoints or adapters by cycling the node's lifecycle, so a cleanup must give back
everything the configure before it took: on the GPU (what PyTorch has allocated, and what its
cache holds) and on the host (resident memory). The real ``LisaNode`` runs in this process, with
the node's own configure and cleanup; one goal (the fixture image) is answered after each
activate. After every cleanup and every goal the script prints the process's RSS and, with CUDA,
``torch.cuda.memory_allocated`` / ``memory_reserved``; last, the growth after the first cycle.
Where there is no CUDA (this CPU machine, CI) it runs the same cycles and reports the host only.

    python -m benchmarks.reload                       # tiny fixture, CPU
    python -m benchmarks.reload --full-size-7b --precision bf16 --device cuda

With ``--full-size-7b`` the random LISA-7B-shaped weights are made once, in memory; each configure
builds the model from them (``build_model``) instead of reading a folder: the node's cleanup, the
part measured here, is the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    MB,
    TINY_CHECKPOINT,
    TINY_CLIP,
    TINY_IMAGE,
    resident_mb,
    use_local_graph,
)


def memory() -> dict[str, float]:
    """The process's RSS, and the CUDA memory PyTorch has allocated and reserved (MB)."""
    import torch

    figures = {"rss_mb": resident_mb()}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        figures["cuda_allocated_mb"] = torch.cuda.memory_allocated() / MB
        figures["cuda_reserved_mb"] = torch.cuda.memory_reserved() / MB
    return figures


def describe(figures: dict[str, float]) -> str:
    text = f"RSS {figures['rss_mb']:7.0f} MB"
    if "cuda_allocated_mb" in figures:
        text += (
            f", CUDA allocated {figures['cuda_allocated_mb']:8.1f} MB"
            f" (reserved {figures['cuda_reserved_mb']:8.1f} MB)"
        )
    return text


def make_node_class(args: argparse.Namespace, work_dir: Path) -> type:
    """LisaNode, or with --full-size-7b one whose configure builds the random 7B made once here."""
    from lisa_ros.node.lisa_node import LisaNode

    if not args.full_size_7b:
        return LisaNode
    from lisa_ros.model import build_model
    from lisa_ros.model.random_checkpoint import RandomLisaSpec, random_checkpoint

    overrides = {"num_hidden_layers": args.num_layers} if args.num_layers else {}
    print("Making random LISA-7B-shaped weights in memory (a minute or two)", flush=True)
    checkpoint = random_checkpoint(work_dir, RandomLisaSpec.full_size_7b(**overrides))

    class RandomSevenB(LisaNode):
        def load_model(self, settings: Any) -> Any:
            return build_model(
                checkpoint,
                precision=settings.precision,
                quantization=settings.quantization or None,
                device=settings.device or None,
            )

    return RandomSevenB


def run_cycles(args: argparse.Namespace, node_class: type) -> list[dict[str, Any]]:
    import numpy as np
    import rclpy
    from lisa_ros_interfaces.action import Segment
    from PIL import Image as PILImage
    from rclpy.action import ActionClient
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Image

    from lisa_ros.conversion.images import fill_image_msg
    from lisa_ros.model import host_memory

    host_memory.return_large_blocks_on_free()  # as lisa_node's run() does
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    values = {
        "model": str(args.model),
        "precision": args.precision,
        "device": args.device,
        "autostart": False,
        "max_new_tokens": args.max_new_tokens,
    }
    if args.vision_tower:
        values["vision_tower"] = args.vision_tower
    node = node_class(
        "reload_benchmark",
        context=context,
        parameter_overrides=[Parameter(name, value=value) for name, value in values.items()],
    )
    client_node = rclpy.create_node("reload_benchmark_client", context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    executor.add_node(client_node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    client = ActionClient(client_node, Segment, "/reload_benchmark/segment")
    picture = np.asarray(PILImage.open(TINY_IMAGE).convert("RGB"))
    goal = Segment.Goal(
        instruction="where is the thing?", image=fill_image_msg(Image(), picture, "rgb8")
    )

    def wait(future: Any, what: str) -> Any:
        deadline = time.monotonic() + args.goal_timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {args.goal_timeout:g} s")
            time.sleep(0.01)
        return future.result()

    def transition(trigger: Any, name: str) -> None:
        if trigger() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError(f"{name} failed: see the node's log above")

    rows: list[dict[str, Any]] = []
    try:
        for cycle in range(args.cycles):
            if cycle:
                transition(node.trigger_deactivate, "deactivate")
                transition(node.trigger_cleanup, "cleanup")
            unloaded = memory()
            transition(node.trigger_configure, "configure")
            transition(node.trigger_activate, "activate")
            if not client.wait_for_server(timeout_sec=30):
                raise RuntimeError("the node's ~/segment action server did not appear")
            handle = wait(client.send_goal_async(goal), "goal acceptance")
            code = wait(handle.get_result_async(), "result").result.error_code
            answered = memory()
            rows.append({"cycle": cycle, "after_cleanup": unloaded, "after_goal": answered})
            print(
                f"cycle {cycle:2d}: before configure: {describe(unloaded)} | "
                f"after a goal (code {code}): {describe(answered)}",
                flush=True,
            )
    finally:
        executor.shutdown(timeout_sec=5)
        node.destroy_node()
        client_node.destroy_node()
        rclpy.try_shutdown(context=context)
    return rows


def summarize(rows: list[dict[str, Any]]) -> None:
    if len(rows) < 3:
        return
    for key, label in (("after_cleanup", "before configure"), ("after_goal", "after a goal")):
        first, last = rows[1][key], rows[-1][key]
        changes = ", ".join(
            f"{name.removesuffix('_mb')} {last[name] - first[name]:+.1f} MB" for name in first
        )
        print(f"growth from cycle 1 to {rows[-1]['cycle']} ({label}): {changes}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model", default=str(TINY_CHECKPOINT), help="LISA checkpoint (folder, hub id)"
    )
    source.add_argument(
        "--full-size-7b", action="store_true", help="random weights in LISA-7B-v1's shapes"
    )
    parser.add_argument("--num-layers", type=int, help="with --full-size-7b: fewer decoder layers")
    parser.add_argument("--vision-tower", help="CLIP tower override (default: the tiny fixture's)")
    parser.add_argument("--precision", default="fp32", help="bf16, fp16 or fp32")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--cycles", type=int, default=6, help="configure/goal/cleanup cycles")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="of each goal's answer")
    parser.add_argument("--goal-timeout", type=float, default=300.0, help="seconds per goal")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.num_layers and not args.full_size_7b:
        parser.error("--num-layers goes with --full-size-7b")
    if (
        args.vision_tower is None
        and not args.full_size_7b
        and args.model == parser.get_default("model")
    ):
        args.vision_tower = str(TINY_CLIP)
    if args.cycles < 1:
        parser.error("--cycles must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    use_local_graph()
    with tempfile.TemporaryDirectory(prefix="lisa-reload-") as work_dir:
        rows = run_cycles(args, make_node_class(args, Path(work_dir)))
    summarize(rows)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
