"""``lisa-eval``: how well does LISA segment *your* scenes? gIoU and cIoU over a dataset, no ROS.

    lisa-eval --model xinlai/LISA-7B-v1 --data ReasonSeg/val --output report/

reads a dataset folder (ReasonSeg as the authors publish it, or the simple format the node
records; :mod:`lisa_ros.data`), runs the model on every sample
(:mod:`lisa_ros.evaluation.runner`: the authors' validation protocol by default, ``--mode
generate`` for what the node does), shows a
progress bar with the running gIoU / cIoU, and writes into ``report/``: ``samples.csv`` (one row
per sample), ``worst/NN_<name>.png`` (overlays of the lowest-IoU samples: prediction filled, ground
truth outlined) and ``report.json`` (metrics, exact sums, run settings; written last). stdout gets
one line, ``gIoU 0.xxxx cIoU 0.xxxx over N samples``.

Several processes (``torchrun --nproc_per_node K -m lisa_ros.cli.evaluate ...`` or ``accelerate
launch``) each evaluate every K-th sample, on their own GPU; rank 0 merges the exact sums and
writes the report: the same numbers as one process.

A dataset that cannot be read ends with one ``lisa-eval: error: <file>: ...`` line before any
model is loaded.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from lisa_ros.cli.files import (
    EXIT_BAD_INPUT,
    CommandError,
    prepare_output,
)
from lisa_ros.cli.options import (
    add_model_arguments,
    configure_logging,
    generate_kwargs_from_args,
    load_model_from_args,
    model_options_record,
    positive_int,
    run_command,
)
from lisa_ros.data import DatasetError, Sample, detect_format, load_dataset
from lisa_ros.distributed import (
    Launch,
    LaunchError,
    gather_to_main,
    launch_from_env,
    process_device,
    process_group,
    shard,
)
from lisa_ros.evaluation import MetricSums
from lisa_ros.evaluation.runner import (
    MODES,
    REPORT_FILE,
    SAMPLES_FILE,
    WORST_FOLDER,
    EvaluationResult,
    SampleRow,
    evaluate,
    summary_line,
    write_report,
)
from lisa_ros.model.prompt import QUESTION_STYLES

PROG = "lisa-eval"
LOG_INTERVAL_S = 5.0  # progress as log lines (not a terminal): at most one line per interval
VERSIONED = ("torch", "transformers", "peft", "accelerate", "numpy", "bitsandbytes")

logger = logging.getLogger(PROG)

PROTOCOLS = {
    "validation": "the LISA authors' validation: first instruction, answer forced to '[SEG].', "
    "its mask (logits > 0) scored",
    "generate": "the node's: the model generates its answer, the union of its [SEG] masks scored",
}


# --- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate LISA on a dataset: gIoU and cIoU computed as the LISA authors' "
        "validation computes them, a per-sample table and overlays of the worst samples. "
        "Under torchrun or accelerate launch, the processes share the samples.",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        help="dataset folder: ReasonSeg (<name>.jpg + <name>.json) or the simple format "
        "(<name>.png, <name>_mask.png, <name>.json)",
    )
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        help=f"report folder for {SAMPLES_FILE}, {WORST_FOLDER}/ and {REPORT_FILE} "
        "(created if missing)",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="validation",
        help="validation (default): the authors' protocol and the paper's numbers (answer forced "
        "to '[SEG].', --max-new-tokens unused); generate: the model answers as in the node, the "
        "union of its masks is scored",
    )
    parser.add_argument(
        "--questions",
        choices=QUESTION_STYLES,
        default="authors",
        help="ask each first instruction as the authors' validation does (default), or as it "
        "was recorded: for a model fine-tuned with lisa-finetune --questions as-is",
    )
    parser.add_argument(
        "--format",
        choices=("auto", "reasonseg", "simple"),
        default="auto",
        help="dataset format (default: detected; simple when the folder holds *_mask.png)",
    )
    parser.add_argument(
        "--allow-outside",
        action="store_true",
        help="clip ReasonSeg polygons that leave the image, as the authors' code does, "
        "instead of refusing the sample",
    )
    parser.add_argument(
        "--limit", type=positive_int, help="evaluate only the first N samples (a quick look)"
    )
    parser.add_argument(
        "--worst",
        type=int,
        default=5,
        metavar="N",
        help="overlays of the N lowest-IoU samples (default: %(default)s; 0: none)",
    )
    parser.add_argument(
        "--skip-errors",
        action="store_true",
        help="a sample that fails (out of memory, instruction too long) is recorded and left "
        "out of the metrics instead of stopping the run",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    return parser


# --- progress --------------------------------------------------------------------------------


class Progress:
    """Per-sample progress with the running gIoU / cIoU: a tqdm bar on a terminal, otherwise a
    log line at most every :data:`LOG_INTERVAL_S` seconds and one at the end (log files, CI)."""

    def __init__(self, total: int, description: str, *, enabled: bool) -> None:
        self.total = total
        self.description = description
        self.done = 0
        self.start = time.monotonic()
        self.last_log = self.start
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit="sample", file=sys.stderr)

    def __call__(self, row: SampleRow, sums: MetricSums) -> None:
        self.done += 1
        metrics = f"gIoU {sums.giou:.4f} cIoU {sums.ciou:.4f}"
        if self.bar is not None:
            self.bar.set_postfix_str(metrics, refresh=False)
            self.bar.update(1)
            return
        now = time.monotonic()
        if self.enabled and (now - self.last_log >= LOG_INTERVAL_S or self.done == self.total):
            self.last_log = now
            rate = self.done / max(now - self.start, 1e-9)
            left = (self.total - self.done) / rate if rate else 0.0
            logger.info(
                "%s: %d/%d samples, %s, %.2f samples/s, %.0f s left",
                self.description,
                self.done,
                self.total,
                metrics,
                rate,
                left,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- run -------------------------------------------------------------------------------------


def read_samples(args: argparse.Namespace) -> tuple[list[Sample], str]:
    """The dataset (its first ``--limit`` samples) and its format, or a CommandError naming the
    file at fault: checked before the model loads, so a bad file costs no loading time."""
    try:
        format_name = detect_format(args.data) if args.format == "auto" else args.format
        samples = load_dataset(args.data, format=format_name, allow_outside=args.allow_outside)
    except DatasetError as error:
        raise CommandError(str(error), EXIT_BAD_INPUT) from None
    return (samples[: args.limit] if args.limit else samples), format_name


def versions() -> dict[str, str | None]:
    """The versions that decide the numbers: Python, lisa_ros and the model stack."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("lisa_ros", *VERSIONED):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _failure_message(result: EvaluationResult, total: int) -> str:
    failure = result.failure
    return (
        f"sample {failure.name} ({failure.index + 1} of {total}) failed: {failure.error}; "
        "fix it (e.g. --quantization nf4 for memory) or rerun with --skip-errors to record "
        "it and go on"
    )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _evaluate_here(
    args: argparse.Namespace, samples: list[Sample], launch: Launch, device: str | None
) -> tuple[EvaluationResult, dict[str, Any]]:
    """Load the model on ``device`` and evaluate this process's shard; returns the shard's
    result and what the report says of the shard (rank, device, samples, seconds)."""
    start = time.perf_counter()
    model = load_model_from_args(args, device=device, logger=logger)
    share = shard(samples, launch)
    description = "evaluating" if not launch.distributed else f"evaluating ({launch})"
    progress = Progress(len(share), description, enabled=not args.quiet and launch.is_main)
    try:
        result = evaluate(
            model,
            share,
            mode=args.mode,
            questions=args.questions,
            generate_kwargs=generate_kwargs_from_args(args),
            worst=max(args.worst, 0),
            skip_errors=args.skip_errors,
            on_sample=progress,
        )
    finally:
        progress.close()
    info = {
        "rank": launch.rank,
        "device": str(model.device),
        "samples": len(result.rows),
        "seconds": time.perf_counter() - start,
    }
    return result, info


def run(args: argparse.Namespace) -> int:
    try:
        launch = launch_from_env()
    except LaunchError as error:
        raise CommandError(str(error)) from None
    if not launch.is_main:
        logger.setLevel(logging.WARNING)  # one voice: rank 0 reports for all
        logging.getLogger("lisa_ros").setLevel(logging.WARNING)
    samples, format_name = read_samples(args)
    if launch.is_main:
        prepare_output(args.output)
    started = datetime.now(timezone.utc)
    start = time.perf_counter()

    cuda = _cuda_available() if launch.distributed and not args.device else False
    device = process_device(launch, args.device, cuda)
    with process_group(launch, device):
        gathered = gather_to_main(_evaluate_here(args, samples, launch, device), launch)
    if gathered is None:  # not rank 0: rank 0 reports for all
        return 0
    result = EvaluationResult.combine([part for part, _ in gathered], max(args.worst, 0))
    shards = [info for _, info in gathered]
    if result.failure is not None:
        raise CommandError(_failure_message(result, len(samples)))

    seconds = time.perf_counter() - start
    run_info: dict[str, Any] = {
        "mode": args.mode,
        "questions": args.questions,
        "protocol": PROTOCOLS[args.mode],
        "dataset": {
            "path": str(args.data),
            "format": format_name,
            "samples": len(samples),
            "limit": args.limit,
            "allow_outside": args.allow_outside,
        },
        "model": model_options_record(args, device=shards[0]["device"]),
        "processes": launch.world_size,
        "shards": shards,
        "versions": versions(),
        "started": started.isoformat(timespec="seconds"),
        "seconds": seconds,
        "seconds_per_sample": seconds / len(samples) if samples else None,
    }
    try:
        write_report(args.output, result, samples, run_info)
    except OSError as error:
        raise CommandError(f"cannot write the report into '{args.output}': {error}") from None
    logger.info("Wrote %s", args.output / REPORT_FILE)
    print(summary_line(result), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worst < 0:
        build_parser().error(f"--worst must be 0 or more, got {args.worst}")
    configure_logging(PROG, args.quiet)
    return run_command(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
