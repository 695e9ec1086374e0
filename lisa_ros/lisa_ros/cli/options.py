"""The model options every command-line tool that loads LISA shares, and the load itself.

``lisa-segment``, ``lisa-eval`` and ``lisa-finetune`` take the same ``--model``, ``--vision-tower``,
``--precision``, ``--quantization``, ``--adapter``, ``--device`` and ``--max-new-tokens``, with the
same help and the same error lines: a person who learnt one tool knows the others, and a fix to a
message reaches all of them. They also share how they log and how they end (:func:`run_command`).
Torch-free at import (the tools' ``--help`` and their input checks must not wait seconds for the
model stack); :func:`load_model_from_args` imports it.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lisa_ros.cli.files import EXIT_INTERRUPTED, CommandError, first_line
from lisa_ros.model.options import DEVICE_FORMS, PRECISIONS, QUANTIZATIONS, spoken_choices

if TYPE_CHECKING:
    from lisa_ros.model import LisaModel

__all__ = [
    "add_model_arguments",
    "configure_logging",
    "generate_kwargs_from_args",
    "load_model_from_args",
    "model_options_record",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "run_command",
]


def _integer_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1, with a message that says what was wrong."""
    return _integer_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0 (0 often meaning "off")."""
    return _integer_at_least(text, 0)


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def configure_logging(prog: str, quiet: bool) -> None:
    """Progress (the core's and the tool's INFO messages) on stderr; other libraries only warn."""
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    level = logging.WARNING if quiet else logging.INFO
    logging.getLogger("lisa_ros").setLevel(level)
    logging.getLogger(prog).setLevel(level)


def run_command(prog: str, run: Callable[[], int], *, interrupted: str = "interrupted") -> int:
    """`run()`'s exit status; a CommandError as one ``<prog>: error: ...`` line and its status,
    Ctrl-C as ``<prog>: <interrupted>`` and 130, as shells report it."""
    try:
        return run()
    except CommandError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED


def add_model_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    max_new_tokens: bool = True,
    adapter_help: str | None = None,
) -> None:
    """Add the model options to ``parser``: ``--model`` (required) and how to load and run it.

    ``max_new_tokens=False`` leaves out ``--max-new-tokens`` for a tool that never generates;
    ``adapter_help`` replaces the help of ``--adapter`` for a tool that treats it differently.
    """
    parser.add_argument(
        "--model", required=True, help="LISA checkpoint: Hugging Face hub id or local folder"
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
        "--adapter",
        help=adapter_help
        or "a lisa-finetune output folder (or hub id): restores its LoRA, embeddings, lm_head, "
        "text_hidden_fcs and SAM mask decoder",
    )
    parser.add_argument(
        "--device", help=f"{spoken_choices(DEVICE_FORMS)} (default: a GPU if there is one)"
    )
    if max_new_tokens:
        parser.add_argument(
            "--max-new-tokens", type=positive_int, help="longest answer in tokens (default: 512)"
        )


def generate_kwargs_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``generate`` keyword arguments the options ask for (``max_new_tokens`` if given)."""
    max_new_tokens = getattr(args, "max_new_tokens", None)
    return {"max_new_tokens": max_new_tokens} if max_new_tokens else {}


def model_options_record(args: argparse.Namespace, device: str | None = None) -> dict[str, Any]:
    """The model options as a report records them (JSON-ready); ``device`` the one used."""
    return {
        "model": str(args.model),
        "vision_tower": args.vision_tower,
        "adapter": args.adapter,
        "precision": args.precision,
        "quantization": args.quantization,
        "device": device if device is not None else args.device,
        "max_new_tokens": getattr(args, "max_new_tokens", None),
    }


def load_model_from_args(
    args: argparse.Namespace,
    *,
    device: str | None = None,
    logger: logging.Logger | None = None,
) -> LisaModel:
    """The model the options name, or a :class:`CommandError` whose message is one line.

    ``device`` overrides ``--device`` (a sharded run puts each process on its own GPU);
    ``args.quiet``, when the tool has it, turns the loading progress bars off. Out of memory
    says which option helps.
    """
    import torch

    from lisa_ros.model import LisaLoadError, load_model

    if getattr(args, "quiet", False):
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    (logger or logging.getLogger("lisa_ros")).info("Loading LISA from %s", args.model)
    try:
        return load_model(
            args.model,
            vision_tower=args.vision_tower,
            precision=args.precision,
            quantization=args.quantization,
            device=device if device is not None else args.device,
            adapter=args.adapter,
        )
    except LisaLoadError as error:
        raise CommandError(first_line(error)) from None
    except (torch.OutOfMemoryError, MemoryError) as error:
        raise CommandError(
            f"out of memory while loading the model ({first_line(error)}): "
            "try --quantization nf4 or int8"
        ) from None
