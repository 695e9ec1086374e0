"""``lisa-finetune``: adapt LISA to your scenes with LoRA, the authors' recipe on current libraries.

    lisa-finetune --model xinlai/LISA-7B-v1 --data my_scenes/train --eval-data my_scenes/val \\
        --output my_adapter/

trains LoRA on the LLM's attention projections plus the token embeddings, ``lm_head``,
``text_hidden_fcs`` and SAM's mask decoder (:mod:`lisa_ros.training`), showing the losses as it
goes, evaluating on ``--eval-data`` with lisa-eval's metrics, saving resumable checkpoints, and
writes the adapter into ``--output``: what ``lisa-segment --adapter``, ``lisa-eval --adapter`` and
the node's ``adapter`` parameter load.

Several GPUs or machines: start the same command under ``accelerate launch`` (or ``torchrun``);
accelerate's config picks DDP, FSDP or DeepSpeed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lisa_ros.cli.files import EXIT_BAD_INPUT, CommandError, first_line
from lisa_ros.cli.options import (
    add_model_arguments,
    configure_logging,
    non_negative_int,
    positive_float,
    positive_int,
    run_command,
)
from lisa_ros.data import DatasetError
from lisa_ros.model.prompt import QUESTION_STYLES
from lisa_ros.training.settings import FinetuneSettings, LoraSettings, LossWeights

PROG = "lisa-finetune"


def _fraction(text: str) -> float:
    """An argparse type: a probability below 1 (LoRA's dropout)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    # the defaults are the settings' own: one place holds the authors' values
    run = FinetuneSettings(model="", data="", output=Path())
    lora, weights = run.lora, run.loss_weights
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fine-tune LISA on a dataset folder (ReasonSeg or the node's recordings) "
        "with LoRA; writes an adapter folder.",
        epilog="Starting from an earlier adapter: --init-adapter DIR begins a new run (its own "
        "--output, step 0, a fresh optimizer and learning-rate schedule) from DIR's trained "
        "weights, e.g. to go on training on new recordings; --resume continues an interrupted "
        "run in --output where it stopped (same schedule, optimizer state). --adapter, which "
        "lisa-segment, lisa-eval and the node take to USE an adapter, is refused here.",
    )
    add_model_arguments(
        parser,
        max_new_tokens=False,
        adapter_help="not accepted for training (it loads an adapter to use, merged into the "
        "model): train on from an adapter with --init-adapter",
    )
    parser.add_argument("--data", required=True, type=Path, help="training dataset folder")
    parser.add_argument(
        "--output", required=True, type=Path, help="adapter folder (checkpoints go inside)"
    )
    parser.add_argument(
        "--eval-data", type=Path, help="held-out dataset folder, scored as lisa-eval scores it"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="warnings and errors only")

    train = parser.add_argument_group("training (defaults: the LISA authors')")
    train.add_argument(
        "--steps", type=positive_int, default=run.steps, help="optimizer steps (%(default)s)"
    )
    train.add_argument(
        "--batch-size",
        type=positive_int,
        default=run.batch_size,
        help="examples per process (%(default)s)",
    )
    train.add_argument(
        "--grad-accumulation",
        type=positive_int,
        default=run.grad_accumulation,
        help="batches per optimizer step (%(default)s)",
    )
    train.add_argument(
        "--lr", type=positive_float, default=run.learning_rate, help="peak (%(default)s)"
    )
    train.add_argument(
        "--warmup-steps", type=non_negative_int, default=run.warmup_steps, help="(%(default)s)"
    )
    train.add_argument(
        "--weight-decay", type=float, default=run.weight_decay, help="AdamW (%(default)s)"
    )
    train.add_argument(
        "--max-grad-norm", type=float, default=run.max_grad_norm, help="clip; 0 = off (%(default)s)"
    )
    train.add_argument(
        "--no-gradient-checkpointing",
        action="store_true",
        help="faster, more memory (checkpointing is on by default)",
    )
    train.add_argument(
        "--questions",
        choices=QUESTION_STYLES,
        default=run.questions,
        help="ask each instruction through the authors' templates, or as it was recorded "
        "(what the node's users send) (%(default)s)",
    )
    train.add_argument("--seed", type=non_negative_int, default=run.seed, help="(%(default)s)")
    train.add_argument(
        "--init-adapter",
        metavar="DIR",
        help="start this run from a lisa-finetune adapter's trained weights (same base model "
        "and LoRA shape) instead of fresh LoRA; the result goes to --output, DIR is not changed",
    )

    lora_group = parser.add_argument_group("LoRA")
    lora_group.add_argument("--lora-r", type=positive_int, default=lora.r, help="(%(default)s)")
    lora_group.add_argument(
        "--lora-alpha", type=positive_int, default=lora.alpha, help="(%(default)s)"
    )
    lora_group.add_argument(
        "--lora-dropout", type=_fraction, default=lora.dropout, help="(%(default)s)"
    )
    lora_group.add_argument(
        "--lora-targets",
        default=",".join(lora.targets),
        help="the LLM's linear layers to adapt, comma-separated (%(default)s)",
    )

    loss = parser.add_argument_group("loss: text + bce x BCE + dice x Dice")
    loss.add_argument("--bce-weight", type=float, default=weights.bce, help="(%(default)s)")
    loss.add_argument("--dice-weight", type=float, default=weights.dice, help="(%(default)s)")
    loss.add_argument("--text-weight", type=float, default=weights.text, help="(%(default)s)")

    runs = parser.add_argument_group("evaluation and checkpoints")
    runs.add_argument(
        "--eval-every",
        type=non_negative_int,
        default=run.eval_every,
        help="evaluate every N steps (0: at the end only)",
    )
    runs.add_argument(
        "--save-every",
        type=non_negative_int,
        default=run.save_every,
        help="write checkpoint-<step>/ every N steps, 0 = never (%(default)s)",
    )
    runs.add_argument(
        "--keep-checkpoints",
        type=positive_int,
        default=run.keep_checkpoints,
        help="newest kept (%(default)s)",
    )
    runs.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="CHECKPOINT",
        help="continue a run: the newest checkpoint in --output, or the folder given",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> FinetuneSettings:
    """The trainer's settings; CommandError for option combinations it cannot train with."""
    if args.quantization:
        raise CommandError(
            "lisa-finetune trains a bf16 or fp32 model: quantised (QLoRA) training is not "
            "supported, drop --quantization",
            EXIT_BAD_INPUT,
        )
    if args.adapter:
        raise CommandError(
            "--adapter loads an adapter for inference; to train on from one, "
            "use --init-adapter (or --resume to continue an interrupted run)",
            EXIT_BAD_INPUT,
        )
    targets = tuple(name.strip() for name in args.lora_targets.split(",") if name.strip())
    if not targets:
        raise CommandError("--lora-targets names no layer", EXIT_BAD_INPUT)
    return FinetuneSettings(
        model=args.model,
        data=str(args.data),
        output=args.output.expanduser(),
        eval_data=str(args.eval_data) if args.eval_data else None,
        vision_tower=args.vision_tower,
        precision=args.precision,
        device=args.device,
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accumulation=args.grad_accumulation,
        learning_rate=args.lr,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        lora=LoraSettings(args.lora_r, args.lora_alpha, args.lora_dropout, targets),
        loss_weights=LossWeights(args.text_weight, args.bce_weight, args.dice_weight),
        gradient_checkpointing=not args.no_gradient_checkpointing,
        questions=args.questions,
        eval_every=args.eval_every,
        save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints,
        seed=args.seed,
        resume=args.resume,
        init_adapter=args.init_adapter,
    )


def summary(result: object) -> str:
    """The one stdout line: where the adapter is, how the loss went, the last evaluation."""
    first, last = result.losses[0]["loss"], result.losses[-1]["loss"]
    line = f"adapter {result.adapter} after {result.steps} steps: loss {first:.4f} -> {last:.4f}"
    if result.evaluations:
        scores = result.evaluations[-1]
        line += f"; eval gIoU {scores['giou']:.4f} cIoU {scores['ciou']:.4f}"
    return line


def run(args: argparse.Namespace) -> int:
    import torch

    from lisa_ros.model import LisaLoadError, LisaOutOfMemoryError
    from lisa_ros.training.trainer import TrainingError, finetune

    settings = settings_from_args(args)
    try:
        result = finetune(settings)
    except DatasetError as error:
        raise CommandError(str(error), EXIT_BAD_INPUT) from None
    except ValueError as error:
        raise CommandError(first_line(error), EXIT_BAD_INPUT) from None
    except (LisaLoadError, TrainingError) as error:
        raise CommandError(first_line(error)) from None
    except (torch.OutOfMemoryError, LisaOutOfMemoryError, MemoryError) as error:
        raise CommandError(
            f"out of memory while training ({first_line(error)}): lower --batch-size "
            "(raise --grad-accumulation to keep the step), keep gradient checkpointing on, "
            "or shard with accelerate (FSDP / DeepSpeed ZeRO)"
        ) from None
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        print(summary(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(PROG, args.quiet)
    return run_command(PROG, lambda: run(args), interrupted="interrupted (continue with --resume)")


if __name__ == "__main__":
    sys.exit(main())
