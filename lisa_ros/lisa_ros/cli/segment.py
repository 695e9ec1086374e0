"""``lisa-segment``: ask LISA about one image from the command line, without ROS.

    lisa-segment --model xinlai/LISA-7B-v1 --image kitchen.jpg "where can I boil water?" \\
        --output out/

prints the answer and, with ``--output``, writes ``overlay.png`` (masks over the image, answer
drawn), ``mask_<k>.png`` (0/255, one per ``[SEG]``) and ``result.json`` (text, token ids, per-mask
phrase/box/area/score, timings, run settings). ``result.json`` is written last, so its presence
means the run completed; it lists the mask files that belong to it.

With a depth image aligned to the colour image and the colour camera's intrinsics,

    lisa-segment ... --depth depth.png --camera-matrix 525,525,319.5,239.5

each mask is also placed in 3D (:func:`lisa_ros.geometry.locate`): the printed answer is followed
by one line per mask with its centroid, each mask entry of ``result.json`` gains a ``target``
(centroid and extents in metres, in the colour camera's optical frame) and a mask with a target
gets ``points_<k>.ply``, its 3D points coloured from the image.

Mistakes a person can make (a missing file, a folder that is not a LISA checkpoint, an unreadable
image, an empty instruction) end with one ``lisa-segment: error: ...`` line and a non-zero exit
status. Inputs are checked before the model is loaded, so those mistakes cost no loading time.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lisa_ros.cli.files import (
    CAMERA_FRAME,
    EXIT_BAD_INPUT,
    OVERLAY_FILE,
    RESULT_FILE,
    CommandError,
    check_instruction,
    first_line,
    parse_camera_matrix,
    prepare_output,
    print_answer,
    read_depth,
    read_image,
    result_record,
    target_record,
    write_result_files,
)
from lisa_ros.cli.options import (
    add_model_arguments,
    configure_logging,
    generate_kwargs_from_args,
    load_model_from_args,
    positive_float,
    run_command,
)
from lisa_ros.geometry import (
    GeometryError,
    Target3D,
    check_camera_matrix,
    depth_scale_factor,
    depth_to_meters,
    locate,
)
from lisa_ros.visualization import draw_overlay, mask_title

if TYPE_CHECKING:  # the model stack imports torch and transformers: seconds, only when needed
    from lisa_ros.model import LisaModel, SegmentationResult

PROG = "lisa-segment"
# Metres per unit of an integer depth image when --depth-unit is not given: millimetres, the
# convention of 16-bit depth images (ROS 16UC1, RealSense, Kinect). Float depth is in metres.
MILLIMETRE = 0.001

logger = logging.getLogger(PROG)


# --- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Reasoning segmentation with LISA: answer an instruction about an image and "
        "segment what the answer refers to (one mask per [SEG] in the answer).",
    )
    parser.add_argument("instruction", help='what to find, e.g. "where can I boil water?"')
    add_model_arguments(parser)
    parser.add_argument("--image", required=True, type=Path, help="the image file (PNG, JPEG, ...)")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"folder for {OVERLAY_FILE}, mask_<k>.png and {RESULT_FILE} (created if missing)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress messages on stderr")
    depth = parser.add_argument_group(
        "3D targets",
        "place each mask in the colour camera's optical frame (x right, y down, z forward; "
        "metres): centroid and extents in result.json, points_<k>.ply point clouds",
    )
    depth.add_argument(
        "--depth",
        type=Path,
        metavar="DEPTH",
        help="depth image aligned to the colour image, of its size or an integer fraction of it: "
        "a 16-bit PNG in millimetres or a .npy of float metres (0, NaN, inf: no reading)",
    )
    depth.add_argument(
        "--camera-matrix",
        metavar="FX,FY,CX,CY",
        help="the colour camera's intrinsics in pixels of the colour image (needed with --depth)",
    )
    depth.add_argument(
        "--depth-unit",
        type=positive_float,
        metavar="METRES",
        help=f"metres per depth unit (default: {MILLIMETRE} for a 16-bit PNG, 1 for floats)",
    )
    return parser


# --- depth ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepthInput:
    """The depth image in metres (float32, NaN where there is no reading), aligned to the colour
    image, and the colour camera's matrix K."""

    path: Path
    meters: np.ndarray
    unit_m: float
    camera_matrix: np.ndarray

    def record(self) -> dict[str, Any]:
        """``result.json``'s ``depth`` entry: what the 3D values come from, and their frame."""
        return {
            "file": str(self.path),
            "unit_m": self.unit_m,
            "size": {"width": int(self.meters.shape[1]), "height": int(self.meters.shape[0])},
            "camera_matrix": self.camera_matrix.tolist(),
            "frame": CAMERA_FRAME,
        }


def read_depth_input(args: argparse.Namespace, image_hw: tuple[int, int]) -> DepthInput | None:
    """The ``--depth`` / ``--camera-matrix`` / ``--depth-unit`` inputs, checked against the colour
    image of size ``image_hw`` (before any model loads); None when no depth was given."""
    if args.depth is None and args.camera_matrix is None:
        if args.depth_unit is not None:
            raise CommandError("--depth-unit needs --depth", EXIT_BAD_INPUT)
        return None
    if args.camera_matrix is None:
        raise CommandError(
            "--depth needs --camera-matrix fx,fy,cx,cy (the colour camera's intrinsics) to turn "
            "depth into 3D points",
            EXIT_BAD_INPUT,
        )
    if args.depth is None:
        raise CommandError(
            "--camera-matrix needs --depth DEPTH (a depth image aligned to the colour image)",
            EXIT_BAD_INPUT,
        )
    try:
        camera_matrix = check_camera_matrix(parse_camera_matrix(args.camera_matrix))
    except GeometryError as error:
        raise CommandError(
            f"--camera-matrix '{args.camera_matrix}': {first_line(error)}", EXIT_BAD_INPUT
        ) from None
    raw = read_depth(args.depth)
    try:
        depth_scale_factor(image_hw, raw.shape[:2])
    except GeometryError:
        height, width = image_hw
        raise CommandError(
            f"depth '{args.depth}' is {raw.shape[1]}x{raw.shape[0]} pixels and the image "
            f"{width}x{height}: the depth must be aligned to the image, at its size or an integer "
            f"fraction of it (e.g. {width // 2}x{height // 2})",
            EXIT_BAD_INPUT,
        ) from None
    if args.depth_unit is not None:
        unit = args.depth_unit
    else:
        unit = 1.0 if np.issubdtype(raw.dtype, np.floating) else MILLIMETRE
    try:
        meters = depth_to_meters(raw, unit)
    except GeometryError as error:  # read_depth passes only what it converts; kept as a guard
        raise CommandError(f"depth '{args.depth}': {first_line(error)}", EXIT_BAD_INPUT) from None
    if not np.isfinite(meters).any():
        logger.warning("Depth '%s' has no valid reading: no mask will have a target", args.depth)
    return DepthInput(args.depth, meters, unit, camera_matrix)


def locate_targets(masks: np.ndarray, depth: DepthInput) -> list[Target3D]:
    """Each mask of ``masks`` (N, H, W, the colour image's size) placed in 3D."""
    return [locate(mask, depth.meters, depth.camera_matrix) for mask in masks]


def describe_targets(phrases: Sequence[str], targets: Sequence[Target3D]) -> str:
    """One line per mask for the terminal: its centroid (m, camera frame), or why it has none."""
    lines = []
    for position, (phrase, target) in enumerate(zip(phrases, targets, strict=True)):
        label = mask_title(position, phrase)
        if target.ok:
            x, y, z = target.centroid
            lines.append(
                f"{label}: centroid x={x:+.3f} y={y:+.3f} z={z:.3f} m ({target.num_points} points)"
            )
        else:
            lines.append(f"{label}: no 3D target ({target.reason})")
    return "\n".join(lines)


# --- model -----------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> LisaModel:
    return load_model_from_args(args, logger=logger)


def _segment(lisa: LisaModel, image: np.ndarray, args: argparse.Namespace) -> SegmentationResult:
    from lisa_ros.model import LisaOutOfMemoryError

    generate_kwargs = generate_kwargs_from_args(args)
    stage_messages = {
        "encoding_image": "Encoding the image",
        "generating": "Generating the answer",
        "decoding_masks": "Decoding the masks",
    }
    try:
        return lisa.segment(
            image,
            args.instruction,
            on_stage=lambda stage: logger.info(stage_messages.get(stage, stage)),
            on_mask=_log_mask_ready,
            **generate_kwargs,
        )
    except ValueError as error:  # e.g. an instruction too long for the model's context
        raise CommandError(first_line(error), EXIT_BAD_INPUT) from None
    except (LisaOutOfMemoryError, MemoryError) as error:  # the core turns torch's into its own
        raise CommandError(
            f"out of memory while segmenting ({first_line(error)}): "
            "try --max-new-tokens, a smaller image or --quantization"
        ) from None


def _log_mask_ready(partial: SegmentationResult) -> None:
    """Say when each mask is ready: with explanatory checkpoints, long before the answer ends."""
    logger.info(
        "Mask %d ready after %.2f s (%d tokens so far)",
        len(partial.mask_logits),
        partial.timings["elapsed"],
        len(partial.token_ids),
    )


# --- outputs ---------------------------------------------------------------------------------


def write_outputs(
    result: SegmentationResult,
    image_rgb: np.ndarray,
    output_dir: Path,
    run_info: Mapping[str, Any] | None = None,
    targets: Sequence[Target3D] | None = None,
) -> list[Path]:
    """Write the overlay, one 0/255 PNG per mask and ``result.json`` into ``output_dir``
    (created if missing).

    ``run_info`` (model, instruction, image, settings...) is stored in ``result.json`` beside the
    result. ``targets`` (one per mask) add each mask's ``target`` entry, and ``points_<k>.ply``
    (the target's points coloured from ``image_rgb``) for each target that is ok. Returns the
    paths written, in order. Raises OSError if a file cannot be written.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    fields = {**dict(run_info or {}), "token_ids": [int(token) for token in result.token_ids]}
    record = result_record(fields, result.text, result.mask_records(), result.timings)
    record.setdefault(
        "image_size", {"width": int(image_rgb.shape[1]), "height": int(image_rgb.shape[0])}
    )
    point_clouds = None
    if targets is not None:
        for entry, target in zip(record["masks"], targets, strict=True):
            entry["target"] = target_record(target)
        point_clouds = [
            (target.points, image_rgb[target.pixels[:, 0], target.pixels[:, 1]])
            if target.ok
            else None
            for target in targets
        ]
    overlay = draw_overlay(image_rgb, result.masks, result.text)
    return write_result_files(output_dir, record, result.masks, overlay, point_clouds)


# --- main ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    args.instruction = check_instruction(args.instruction)
    image = read_image(args.image)
    depth = read_depth_input(args, image.shape[:2])
    prepare_output(args.output)

    lisa = _load(args)
    result = _segment(lisa, image, args)
    targets = None if depth is None else locate_targets(result.masks, depth)
    print_answer(result.text)
    if targets:
        print_answer(describe_targets(result.phrases, targets))
    logger.info(
        "%d mask(s), %d tokens, %.2f s, first mask at %s (%s)",
        len(result.mask_logits),
        len(result.token_ids),
        result.timings.get("total", float("nan")),
        f"{result.timings['first_mask']:.2f} s" if "first_mask" in result.timings else "-",
        ", ".join(
            f"{name} {seconds:.3f}" for name, seconds in result.timings.items() if name != "total"
        ),
    )
    if args.output is not None:
        run_info = {
            "model": str(args.model),
            "vision_tower": args.vision_tower,
            "adapter": args.adapter,
            "precision": args.precision,
            "quantization": args.quantization,
            "device": str(lisa.device),
            "instruction": args.instruction,
            "image": str(args.image),
        }
        if depth is not None:
            run_info["depth"] = depth.record()
        try:
            written = write_outputs(result, image, args.output, run_info, targets)
        except OSError as error:
            raise CommandError(f"cannot write the results into '{args.output}': {error}") from None
        logger.info("Wrote %s", ", ".join(path.name for path in written))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(PROG, args.quiet)
    return run_command(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
