"""``lisa-segment``: ask LISA about one image from the command line, without ROS.

    lisa-segment --model xinlai/LISA-7B-v1 --image kitchen.jpg "where can I boil water?" \\
        --output out/

prints the answer and, with ``--output``, writes ``overlay.png`` (masks over the image, answer
drawn), ``mask_<k>.png`` (0/255, one per ``[SEG]``) and ``result.json`` (text, token ids, per-mask
phrase/box/area/score, timings, run settings). ``result.json`` is written last, so its presence
means the run completed; it lists the mask files that belong to it.

Mistakes a person can make (a missing file, a folder that is not a LISA checkpoint, an unreadable
image, an empty instruction) end with one ``lisa-segment: error: ...`` line and a non-zero exit
status. Inputs are checked before the model is loaded, so those mistakes cost no loading time.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lisa_ros.cli_io import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    OVERLAY_FILE,
    RESULT_FILE,
    CommandError,
    check_instruction,
    prepare_output,
    print_answer,
    read_image,
    result_record,
    write_result_files,
)
from lisa_ros.model.options import DEVICE_FORMS, PRECISIONS, QUANTIZATIONS, spoken_choices
from lisa_ros.visualization import draw_overlay

if TYPE_CHECKING:  # the model stack imports torch and transformers: seconds, only when needed
    from lisa_ros.model import LisaModel, SegmentationResult

PROG = "lisa-segment"

logger = logging.getLogger(PROG)


# --- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Reasoning segmentation with LISA: answer an instruction about an image and "
        "segment what the answer refers to (one mask per [SEG] in the answer).",
    )
    parser.add_argument("instruction", help='what to find, e.g. "where can I boil water?"')
    parser.add_argument(
        "--model", required=True, help="LISA checkpoint: Hugging Face hub id or local folder"
    )
    parser.add_argument("--image", required=True, type=Path, help="the image file (PNG, JPEG, ...)")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"folder for {OVERLAY_FILE}, mask_<k>.png and {RESULT_FILE} (created if missing)",
    )
    parser.add_argument(
        "--vision-tower", help="CLIP tower to use instead of the checkpoint's (hub id or folder)"
    )
    parser.add_argument(
        "--precision", choices=tuple(PRECISIONS), default="bf16", help="default: %(default)s"
    )
    parser.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        help="quantise the LLM with bitsandbytes (for CUDA; needs --precision bf16 or fp16)",
    )
    parser.add_argument(
        "--adapter", help="a peft LoRA adapter (folder or hub id) to apply to the LLM"
    )
    parser.add_argument(
        "--device", help=f"{spoken_choices(DEVICE_FORMS)} (default: a GPU if there is one)"
    )
    parser.add_argument(
        "--max-new-tokens", type=_positive_int, help="longest answer in tokens (default: 512)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress messages on stderr")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _configure_logging(quiet: bool) -> None:
    """Progress (the core's INFO messages) on stderr; third-party libraries only warn."""
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    level = logging.WARNING if quiet else logging.INFO
    logging.getLogger("lisa_ros").setLevel(level)
    logger.setLevel(level)


# --- model -----------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> LisaModel:
    import torch

    from lisa_ros.model import LisaLoadError, load_model

    if args.quiet:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    logger.info("Loading LISA from %s", args.model)
    try:
        return load_model(
            args.model,
            vision_tower=args.vision_tower,
            precision=args.precision,
            quantization=args.quantization,
            device=args.device,
            adapter=args.adapter,
        )
    except LisaLoadError as error:
        raise CommandError(str(error).splitlines()[0]) from None
    except (torch.OutOfMemoryError, MemoryError) as error:
        raise CommandError(
            f"out of memory while loading the model ({_first_line(error)}): "
            "try --quantization nf4 or int8"
        ) from None


def _segment(lisa: LisaModel, image: np.ndarray, args: argparse.Namespace) -> SegmentationResult:
    from lisa_ros.model import LisaOutOfMemoryError

    generate_kwargs = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
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
            **generate_kwargs,
        )
    except ValueError as error:  # e.g. an instruction too long for the model's context
        raise CommandError(_first_line(error), EXIT_BAD_INPUT) from None
    except (LisaOutOfMemoryError, MemoryError) as error:  # the core turns torch's into its own
        raise CommandError(
            f"out of memory while segmenting ({_first_line(error)}): "
            "try --max-new-tokens, a smaller image or --quantization"
        ) from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# --- outputs ---------------------------------------------------------------------------------


def write_outputs(
    result: SegmentationResult,
    image_rgb: np.ndarray,
    output_dir: Path,
    run_info: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write the overlay, one 0/255 PNG per mask and ``result.json`` into ``output_dir``
    (created if missing).

    ``run_info`` (model, instruction, image, settings...) is stored in ``result.json`` beside the
    result. Returns the paths written, in order. Raises OSError if a file cannot be written.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    fields = {**dict(run_info or {}), "token_ids": [int(token) for token in result.token_ids]}
    record = result_record(fields, result.text, result.mask_records(), result.timings)
    record.setdefault(
        "image_size", {"width": int(image_rgb.shape[1]), "height": int(image_rgb.shape[0])}
    )
    overlay = draw_overlay(image_rgb, result.masks, result.text)
    return write_result_files(output_dir, record, result.masks, overlay)


# --- main ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    args.instruction = check_instruction(args.instruction)
    image = read_image(args.image)
    prepare_output(args.output)

    lisa = _load(args)
    result = _segment(lisa, image, args)
    print_answer(result.text)
    logger.info(
        "%d mask(s), %d tokens, %.2f s (%s)",
        len(result.mask_logits),
        len(result.token_ids),
        result.timings.get("total", float("nan")),
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
        try:
            written = write_outputs(result, image, args.output, run_info)
        except OSError as error:
            raise CommandError(f"cannot write the results into '{args.output}': {error}") from None
        logger.info("Wrote %s", ", ".join(path.name for path in written))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.quiet)
    try:
        return run(args)
    except CommandError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
