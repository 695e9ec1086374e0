"""What the benchmarks share: the model they run by default, the local DDS graph, timing, memory and
the tables they print.

The tiny checkpoint, its scripted replies and the DDS settings come from ``testbed``, which the
tests use too: a benchmark measures what the tests check, on the same files and the same graph.
torch is imported only by the functions that time or measure it, so the node benchmarks' set-up
(and ``--help``) does not load it.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from testbed import CONFIG, DEMO, PACKAGE
from testbed.local_dds import use_local_graph
from testbed.tiny_lisa import CHECKPOINT as TINY_CHECKPOINT
from testbed.tiny_lisa import CLIP as TINY_CLIP
from testbed.tiny_lisa import IMAGE as TINY_IMAGE

if TYPE_CHECKING:
    import torch

    from lisa_ros.model.checkpoint import LisaCheckpoint

__all__ = [
    "CONFIG",
    "DEMO",
    "DEMO_ADAPTER",
    "FULL_SIZE_LAYERS",
    "MB",
    "PACKAGE",
    "TINY_CHECKPOINT",
    "TINY_CLIP",
    "TINY_IMAGE",
    "Clock",
    "PeakMemory",
    "add_model_source_arguments",
    "check_model_source",
    "format_seconds",
    "markdown_table",
    "random_full_size_checkpoint",
    "ratio",
    "resident_mb",
    "synthetic_image",
    "use_local_graph",
]

DEMO_ADAPTER = DEMO / "red_box_adapter"  # the demo's toy adapter for the tiny model
FULL_SIZE_LAYERS = 32  # LISA-7B's decoder layers
MB = 1024 * 1024
log = logging.getLogger("benchmark")


# --- the model -----------------------------------------------------------------------------------


def add_model_source_arguments(parser: argparse.ArgumentParser, *, layers_help: str) -> None:
    """Which model a benchmark runs, as every benchmark of the model takes it: a checkpoint
    (default: the tiny fixture) or LISA-7B's shapes with random weights."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model", default=str(TINY_CHECKPOINT), help="LISA checkpoint folder or hub id"
    )
    source.add_argument(
        "--full-size-7b",
        action="store_true",
        help="random weights in LISA-7B-v1's shapes (Llama-7B, CLIP ViT-L/14, SAM ViT-H), "
        "no download",
    )
    parser.add_argument(
        "--num-layers",
        type=int,
        choices=range(1, FULL_SIZE_LAYERS + 1),
        metavar=f"1..{FULL_SIZE_LAYERS}",
        help=f"with --full-size-7b: {layers_help}",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="with --full-size-7b: where to write its tokenizer and CLIP tower "
        "(default: a temporary folder, removed)",
    )
    parser.add_argument("--vision-tower", help="CLIP tower override (hub id or folder)")


def check_model_source(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.num_layers or args.work_dir) and not args.full_size_7b:
        parser.error("--num-layers and --work-dir go with --full-size-7b")


def random_full_size_checkpoint(work_dir: Path, num_layers: int | None = None) -> LisaCheckpoint:
    """LISA-7B-v1's shapes (Llama-7B with ``num_layers`` decoder layers, all 32 by default, CLIP
    ViT-L/14, SAM ViT-H) with random weights made in memory, no download; the tokenizer and the
    CLIP tower are written to ``work_dir``. What ``--full-size-7b`` runs on."""
    from lisa_ros.model.random_checkpoint import RandomLisaSpec, random_checkpoint

    spec = RandomLisaSpec.full_size_7b(num_hidden_layers=num_layers or FULL_SIZE_LAYERS)
    log.info(
        "Making random LISA-7B-shaped weights in memory (%d layers, hidden %d, SAM ViT-H; "
        "tokenizer and CLIP tower in %s); this takes a minute or two",
        spec.num_hidden_layers,
        spec.hidden_size,
        work_dir,
    )
    started = time.perf_counter()
    checkpoint = random_checkpoint(work_dir, spec)
    log.info("Made in %.0f s", time.perf_counter() - started)
    return checkpoint


def synthetic_image(height: int = 480, width: int = 640) -> np.ndarray:
    """A deterministic camera-sized RGB image (a smooth gradient with noise); the content does not
    matter."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:height, :width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


# --- timing and memory ---------------------------------------------------------------------------


class Clock:
    """Wall-clock time that first waits for queued GPU work, so each stage is charged its own
    cost."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self) -> float:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
        return time.perf_counter()


class PeakMemory:
    """Peak memory of a stretch of code: CUDA allocations on a GPU, resident set size on a CPU.

    On Linux the process's RSS high-water mark can be reset (/proc/self/clear_refs), so each mode
    gets its own CPU peak; elsewhere the figure is the process's peak so far (getrusage).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.per_mode = device.type == "cuda" or self._reset_rss_peak()

    def reset(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._reset_rss_peak()

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            import torch

            return torch.cuda.max_memory_allocated(self.device)
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    @property
    def kind(self) -> str:
        return "CUDA allocated" if self.device.type == "cuda" else "RSS"

    @staticmethod
    def _reset_rss_peak() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False


def resident_mb() -> float:
    """This process's resident set size now, in MB (NaN where /proc does not say)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- tables --------------------------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def ratio(value: float, baseline: float, digits: int = 1) -> str:
    """``value / baseline`` as "2.5x" ("-" without a baseline)."""
    return f"{value / baseline:.{digits}f}x" if baseline > 0 else "-"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub table: first column left-aligned, the figures right-aligned, columns padded."""
    widths = [max(len(row[column]) for row in [headers, *rows]) for column in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cells[0].ljust(widths[0]),
            *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)),
        ]
        return "| " + " | ".join(padded) + " |"

    separator = (
        "|"
        + "|".join(["-" * (widths[0] + 2), *("-" * (width + 1) + ":" for width in widths[1:])])
        + "|"
    )
    return "\n".join([line(headers), separator, *map(line, rows)])
