"""Benchmark LISA fine-tuning: one optimizer step, with gradient checkpointing on and off.

The step is lisa-finetune's own (`lisa_ros.training.trainer.FinetuneRun.optimizer_step`, nothing
reimplemented): ``--batch-size`` examples x ``--grad-accumulation``, each a forced forward pass
of the LLM, the [SEG] projection and SAM's mask decoder, the paper's loss, backward, gradient
clipping and AdamW on what LISA trains (LoRA on q_proj/v_proj, embed_tokens, lm_head,
text_hidden_fcs, the mask decoder). The run is set up by the trainer too (accelerate, LoRA,
optimizer, scheduler), on a synthetic dataset: 640x480 frames with a square target. CLIP and SAM's
image encoder are frozen, so, as the trainer does, their features are computed once per image and
cached, outside the timed step (that time is printed on its own).

Both settings of gradient checkpointing run on the same model in the same process, one step of
each in turn (so other load on the machine hits both alike), and the table shows them side by
side with their ratio. Printed per setting: step time (median and p90 over ``--steps`` after
``--warmup``), peak memory (CUDA: ``torch.cuda.max_memory_allocated``, reset before each step;
CPU: the process's peak resident set size, its high-water mark reset before each step on Linux,
and its growth during the step), and how many decoder-layer passes a step made (checkpointing
runs each layer twice: the check that the setting took effect); then the trainable parameters and
the size of the adapter folder `save_adapter` writes.

``--full-size-7b`` builds LISA-7B-v1's shapes with random weights in memory (no download) and
hands that model to the trainer's setup in place of the one it would load from ``--model``.
With ``--num-layers N`` below 32 a third kind of step runs with the LLM's decoder layers skipped
(the fixed cost: embeddings, lm_head, SAM's mask decoder, AdamW on the full modules), and the
script extrapolates linearly to 32 layers: time += (32 - N) x the per-layer time, memory +=
(32 - N) x (a layer's weights + its measured per-layer memory). An estimate, printed as one.

    python -m benchmarks.finetune                        # tiny fixture, CPU
    python -m benchmarks.finetune --full-size-7b --num-layers 2 --steps 2
    python -m benchmarks.finetune --full-size-7b --precision bf16 --device cuda

Its length: one measurement from the synthetic data to the table (the run's set-up, the layer
pass counter, per-step memory on CUDA and on the CPU, the layer-skipping extrapolation, the
report); what the benchmarks share is in :mod:`benchmarks.common`, and the rest serves this one.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from benchmarks.common import (
    FULL_SIZE_LAYERS,
    Clock,
    PeakMemory,
    add_model_source_arguments,
    check_model_source,
    markdown_table,
    random_full_size_checkpoint,
    synthetic_image,
)
from lisa_ros.cli.options import configure_logging

# A ReasonSeg-style sentence instruction; its words are in the random 7B tokenizer's corpus, so a
# random full-size model sees a prompt roughly as long as LLaMA's tokenizer would make it.
INSTRUCTION = "where can I throw away the food scraps?"
IMAGE_HW = (480, 640)
MAX_IMAGES = 4
ON, OFF, FIXED = "checkpointing on", "checkpointing off", "LLM layers skipped"

log = logging.getLogger("benchmark")


# --- measuring ---------------------------------------------------------------------------------


class StepMemory(PeakMemory):
    """PeakMemory plus the memory in use now (CUDA allocated, or the process's RSS).

    On the CPU, `reset` first hands the heap's free memory back to the system (glibc's
    malloc_trim), so the RSS a step starts from is what is alive, not what earlier steps freed.
    """

    def reset(self, trim: bool = True) -> None:
        """Start a new peak (`trim`: first give freed heap memory back, on the CPU; it takes a
        moment, so not inside a timed step)."""
        if trim and self.device.type != "cuda":
            _malloc_trim()
        super().reset()

    def reserved_bytes(self) -> int | None:
        """Peak of what CUDA's caching allocator held (closer to what the card must have)."""
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_reserved(self.device)

    def current_bytes(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except ImportError:
            pass
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def describe(self) -> str:
        if self.device.type == "cuda":
            return "torch.cuda.max_memory_allocated, reset before each step"
        if self.per_mode:
            return (
                "the process's peak resident set size (VmHWM), reset before each step (after "
                "freed heap memory went back to the system); growth = that peak - the RSS at the "
                "step's start"
            )
        return "the process's peak resident set size so far (getrusage; it cannot be reset here)"


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the RSS figures keep what the allocator caches


class PhasePeaks:
    """Splits a step's peak memory at AdamW's update (a hook on the optimizer's `step`): the
    forward + backward part grows with the layers' activations, the update's with their weights
    only, and the step's peak is the larger of the two."""

    def __init__(self, optimizer: torch.optim.Optimizer, memory: StepMemory) -> None:
        self.memory = memory
        self.backward_peak = 0
        self.overhead = 0.0
        """Seconds the hook took (the CPU's heap trim), taken off the step's time."""
        self.handle = optimizer.register_step_pre_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        started = time.perf_counter()
        self.backward_peak = self.memory.peak_bytes()
        self.memory.reset()
        self.overhead = time.perf_counter() - started

    def close(self) -> None:
        self.handle.remove()


class LayerPasses:
    """Counts the decoder layers' MLP calls: a checkpointed layer runs again in backward.

    A pre-hook, because the recomputation stops once it has what backward needs (inside the MLP),
    so a forward hook would not see the second pass.
    """

    def __init__(self, layers: Sequence[torch.nn.Module]) -> None:
        self.count = 0
        self.handles = [layer.mlp.register_forward_pre_hook(self._hook) for layer in layers]

    def _hook(self, *_: Any) -> None:
        self.count += 1

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


@dataclass
class Step:
    seconds: float
    backward_peak_bytes: int
    """Peak from the step's start to the end of backward and gradient clipping."""
    optimizer_peak_bytes: int
    """Peak during AdamW's update."""
    start_bytes: int
    layer_passes: int
    tokens: list[int]
    losses: dict[str, float]
    reserved_bytes: int | None = None

    @property
    def peak_bytes(self) -> int:
        return max(self.backward_peak_bytes, self.optimizer_peak_bytes)

    @property
    def growth_bytes(self) -> int:
        return max(0, self.peak_bytes - self.start_bytes)


@dataclass
class Mode:
    name: str
    checkpointing: bool
    active_layers: int
    steps: list[Step] = field(default_factory=list)
    error: str | None = None

    def times(self) -> list[float]:
        return [step.seconds for step in self.steps]

    def median(self) -> float | None:
        return statistics.median(self.times()) if self.steps else None

    def p90(self) -> float | None:
        return percentile(self.times(), 90) if self.steps else None

    def peak(self, phase: str = "peak_bytes") -> int | None:
        """The largest peak over the steps: of the whole step, or of one phase
        ("backward_peak_bytes", "optimizer_peak_bytes")."""
        return max(getattr(step, phase) for step in self.steps) if self.steps else None

    def growth(self) -> int | None:
        return max(step.growth_bytes for step in self.steps) if self.steps else None

    def reserved(self) -> int | None:
        values = [step.reserved_bytes for step in self.steps if step.reserved_bytes is not None]
        return max(values) if values else None

    def layer_passes(self) -> int | None:
        return self.steps[-1].layer_passes if self.steps else None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (with 2 values, p90 is the larger)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# --- the data and the model -----------------------------------------------------------------------


def write_dataset(folder: Path, count: int) -> Path:
    """`count` 640x480 frames, each with a square target at its own place (simple format)."""
    from lisa_ros.data import write_sample

    height, width = IMAGE_HW
    for index in range(count):
        image = synthetic_image(height, width)
        mask = np.zeros((height, width), np.uint8)
        size, top, left = 160, 80 + 40 * index, 120 + 60 * index
        mask[top : top + size, left : left + size] = 1
        image[mask == 1] = (200, 60, 40)
        write_sample(folder, f"frame_{index}", image, mask, INSTRUCTION, is_sentence=True)
    return folder


def resolve_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> str:
    if precision != "auto":
        return precision
    cuda = torch.device(device).type == "cuda"
    return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"


def random_full_size(args: argparse.Namespace, work_dir: Path) -> tuple[Any, str]:
    """LISA-7B-v1's shapes, random weights built in memory (as benchmarks.model builds them)."""
    from lisa_ros.model import build_model
    from lisa_ros.model.loading import check_options

    check_options(args.precision, None, args.device)  # before a minute of making weights
    checkpoint = random_full_size_checkpoint(work_dir, args.num_layers)
    lisa = build_model(checkpoint, precision=args.precision, device=args.device, progress="log")
    del checkpoint
    return lisa, "random full-size LISA-7B architecture"


def make_run(args: argparse.Namespace, data: Path, output: Path, lisa: Any = None) -> Any:
    """lisa-finetune's run (accelerate, LoRA, AdamW, schedule) on `data`; `lisa` replaces the
    model it would load from ``--model`` (the random full-size one, which is not on disk)."""
    from lisa_ros.model import loading
    from lisa_ros.training.settings import FinetuneSettings
    from lisa_ros.training.trainer import FinetuneRun

    settings = FinetuneSettings(
        model=str(args.model) if lisa is None else "random full-size LISA-7B",
        data=str(data),
        output=output,
        vision_tower=args.vision_tower,
        precision=args.precision,
        device=args.device,
        steps=10**6,  # the schedule's length: the learning rate stays put during the benchmark
        batch_size=args.batch_size,
        grad_accumulation=args.grad_accumulation,
        warmup_steps=0,
        save_every=0,
        gradient_checkpointing=True,
        progress="log",
    )
    if lisa is None:
        return FinetuneRun(settings)
    with mock.patch.object(loading, "load_model", lambda *_, **__: lisa):
        return FinetuneRun(settings)


def set_checkpointing(llm: Any, enabled: bool) -> None:
    """What make_trainable's ``gradient_checkpointing`` sets (non-reentrant), on or off."""
    if hasattr(llm, "activation_checkpointing_enable"):  # transformers >= 5.24's name
        if enabled:
            llm.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        else:
            llm.activation_checkpointing_disable()
    elif enabled:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        llm.gradient_checkpointing_disable()


@contextmanager
def active_layers(decoder: Any, count: int) -> Iterator[None]:
    """Run only the first `count` decoder layers (Llama runs ``layers[:num_hidden_layers]``)."""
    saved = decoder.config.num_hidden_layers
    decoder.config.num_hidden_layers = count
    try:
        yield
    finally:
        decoder.config.num_hidden_layers = saved


def sequence_tokens(run: Any) -> list[int]:
    """LLM positions of each example of the run's next step (text ids + image tokens)."""
    accumulation = run.settings.grad_accumulation
    tokens = []
    for micro in range(accumulation):
        for example in run.examples(run.step * accumulation + micro):
            image_tokens = example.features.image_tokens.shape[1]
            tokens.append(len(example.conversation.input_ids) - 1 + image_tokens)
    return tokens


def parameter_counts(run: Any) -> dict[str, int]:
    """Trainable parameters by kind, and all of the model's (peft's trainable copies included)."""
    lisa = run.lisa
    counts = {"lora": 0, "embed_tokens_lm_head": 0, "text_hidden_fcs": 0, "mask_decoder": 0}
    for name, parameter in run.module.named_parameters():
        if not parameter.requires_grad:
            continue
        if "lora_" in name:
            counts["lora"] += parameter.numel()
        elif ".llm." in f".{name}":
            counts["embed_tokens_lm_head"] += parameter.numel()
        elif "text_hidden_fcs" in name:
            counts["text_hidden_fcs"] += parameter.numel()
        else:
            counts["mask_decoder"] += parameter.numel()
    counts["trainable"] = sum(counts.values())
    counts["total"] = sum(p.numel() for p in lisa.net.parameters())
    return counts


def tensor_bytes(parameters: Iterator[torch.nn.Parameter]) -> int:
    return sum(p.numel() * p.element_size() for p in parameters)


# --- running --------------------------------------------------------------------------------------


def measure(run: Any, modes: list[Mode], memory: StepMemory, warmup: int, steps: int) -> None:
    """One step of every mode per round, in turn; the first `warmup` rounds are not kept."""
    llm = run.lisa.net.llm
    decoder = llm.get_decoder()
    counter = LayerPasses(decoder.layers)
    # accelerate's optimizer wraps AdamW, whose step it calls once per optimizer step
    phases = PhasePeaks(getattr(run.optimizer, "optimizer", run.optimizer), memory)
    clock = Clock(memory.device)
    run.module.train()
    try:
        for number in range(warmup + steps):
            warming = number < warmup
            label = f"warm-up {number + 1}/{warmup}" if warming else f"step {number - warmup + 1}"
            for mode in modes:
                if mode.error:
                    continue
                set_checkpointing(llm, mode.checkpointing)
                tokens = sequence_tokens(run)
                with active_layers(decoder, mode.active_layers):
                    memory.reset()
                    start_bytes = memory.current_bytes()
                    counter.count = 0
                    phases.overhead = 0.0
                    started = clock()
                    try:
                        losses = run.optimizer_step()
                    except torch.OutOfMemoryError as error:
                        mode.error = f"out of memory: {str(error).splitlines()[0]}"
                        run.optimizer.zero_grad(set_to_none=True)
                        if memory.device.type == "cuda":
                            torch.cuda.empty_cache()
                        log.warning("%s: %s", mode.name, mode.error)
                        continue
                    seconds = clock() - started - phases.overhead
                    step = Step(
                        seconds,
                        phases.backward_peak,
                        memory.peak_bytes(),
                        start_bytes,
                        counter.count,
                        tokens,
                        losses,
                        memory.reserved_bytes(),
                    )
                log.info(
                    "%-12s %-20s %7.3f s, peak %.2f GiB (forward + backward %.2f, AdamW %.2f), "
                    "loss %.3f",
                    label,
                    mode.name,
                    seconds,
                    step.peak_bytes / 2**30,
                    step.backward_peak_bytes / 2**30,
                    step.optimizer_peak_bytes / 2**30,
                    losses["loss"],
                )
                if not warming:
                    mode.steps.append(step)
    finally:
        counter.close()
        phases.close()
        set_checkpointing(llm, True)


def adapter_size(run: Any, folder: Path) -> dict[str, int]:
    """The files `save_adapter` writes for this model, and their sizes in bytes."""
    from lisa_ros.model.adapter import save_adapter

    save_adapter(run.lisa.net, folder, run.info())
    return {path.name: path.stat().st_size for path in sorted(folder.iterdir()) if path.is_file()}


PHASES = {"forward + backward": "backward_peak_bytes", "AdamW update": "optimizer_peak_bytes"}


@dataclass
class Extrapolation:
    """Linear in the decoder layers, from the N-layer steps and the layer-skipped ones."""

    layers: int
    target: int
    per_layer_seconds: dict[str, float]
    seconds: dict[str, float]
    per_layer_bytes: dict[str, dict[str, float]]
    """setting -> phase -> what one more layer adds to that phase's peak"""
    phase_peak_bytes: dict[str, dict[str, float]]
    """setting -> phase -> that phase's peak at `target` layers"""
    peak_bytes: dict[str, float]
    """setting -> the step's peak at `target` layers: the larger phase"""
    adapter_bytes: float
    layer_weight_bytes: int
    layer_adapter_bytes: int


def extrapolate(
    modes: list[Mode],
    fixed: Mode,
    layers: int,
    layer_weight_bytes: int,
    layer_adapter_bytes: int,
    adapter_bytes: int,
    target: int = FULL_SIZE_LAYERS,
) -> Extrapolation | None:
    """Each phase's peak grows by a layer's weights plus what running the layer adds to it (the
    measured difference to the layer-skipped step, whose skipped layers' weights stay allocated;
    a difference below 0 is noise, and counts as 0)."""
    if fixed.median() is None:
        return None
    extra = target - layers
    per_seconds, seconds, per_bytes, phase_peaks, peaks = {}, {}, {}, {}, {}
    for mode in modes:
        if mode.median() is None:
            continue
        per_seconds[mode.name] = (mode.median() - fixed.median()) / layers
        seconds[mode.name] = mode.median() + extra * per_seconds[mode.name]
        per_bytes[mode.name], phase_peaks[mode.name] = {}, {}
        for phase, attribute in PHASES.items():
            running = max(0.0, (mode.peak(attribute) - fixed.peak(attribute)) / layers)
            per_bytes[mode.name][phase] = running + layer_weight_bytes
            phase_peaks[mode.name][phase] = (
                mode.peak(attribute) + extra * per_bytes[mode.name][phase]
            )
        peaks[mode.name] = max(phase_peaks[mode.name].values())
    return Extrapolation(
        layers=layers,
        target=target,
        per_layer_seconds=per_seconds,
        seconds=seconds,
        per_layer_bytes=per_bytes,
        phase_peak_bytes=phase_peaks,
        peak_bytes=peaks,
        adapter_bytes=adapter_bytes + extra * layer_adapter_bytes,
        layer_weight_bytes=layer_weight_bytes,
        layer_adapter_bytes=layer_adapter_bytes,
    )


# --- report ---------------------------------------------------------------------------------------


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def size_text(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 2**30:
        return f"{value / 2**30:.2f} GiB"
    return f"{value / 2**20:.1f} MiB" if abs(value) >= 2**20 else f"{value / 2**10:.1f} KiB"


def load_average() -> str:
    """The machine's load over the last 5 minutes: CPU timings are only as good as it is low."""
    try:
        return (
            f", load average {os.getloadavg()[1]:.1f} over the last 5 min on {os.cpu_count()} cores"
        )
    except (AttributeError, OSError):
        return ""


def count_text(count: int) -> str:
    return f"{count / 1e6:.2f} M" if count >= 10**6 else f"{count / 1e3:.1f} K"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def step_table(on: Mode, off: Mode, memory: StepMemory, examples: int) -> str:
    def per_example(mode: Mode) -> float | None:
        median = mode.median()
        return None if median is None else median / examples

    kind = "CUDA allocated" if memory.device.type == "cuda" else "process RSS"
    # (label, value of a setting, shown as)
    measures = [
        ("step time, median", Mode.median, seconds_text),
        ("step time, p90", Mode.p90, seconds_text),
        ("time per example, median", per_example, seconds_text),
        (f"peak memory ({kind})", Mode.peak, size_text),
        *(
            (f"  in {phase}", lambda m, a=attribute: m.peak(a), size_text)
            for phase, attribute in PHASES.items()
        ),
        (f"growth during the step ({kind})", Mode.growth, size_text),
        *(
            [("peak CUDA reserved (caching allocator)", Mode.reserved, size_text)]
            if memory.device.type == "cuda"
            else []
        ),
        ("decoder layer passes / step", Mode.layer_passes, lambda n: "-" if n is None else str(n)),
    ]
    rows = []
    for label, value, show in measures:
        cells = [label]
        for mode in (on, off):
            failed = "OOM" if mode.error and "out of memory" in mode.error else "failed"
            cells.append(failed if mode.error else show(value(mode)))
        cells.append(ratio(value(on), value(off)))
        rows.append(cells)
    return markdown_table(["per optimizer step", ON, OFF, "on / off"], rows)


def extrapolation_table(estimate: Extrapolation, fixed: Mode, memory: StepMemory) -> str:
    names = [name for name in (ON, OFF) if name in estimate.seconds]
    rows = [
        [
            f"step time, median ({estimate.layers} layers measured)",
            *(seconds_text(estimate.seconds[n]) for n in names),
        ],
        ["  of which per layer", *(seconds_text(estimate.per_layer_seconds[n]) for n in names)],
        ["peak memory (the larger phase)", *(size_text(estimate.peak_bytes[n]) for n in names)],
    ]
    for phase in PHASES:
        rows.append(
            [f"  in {phase}", *(size_text(estimate.phase_peak_bytes[n][phase]) for n in names)]
        )
        rows.append(
            ["    per layer", *(size_text(estimate.per_layer_bytes[n][phase]) for n in names)]
        )
    table = markdown_table([f"ESTIMATE for {estimate.target} layers", *names], rows)
    return (
        f"{table}\n"
        f"LINEAR EXTRAPOLATION, not a measurement: {estimate.target} layers = the "
        f"{estimate.layers}-layer step + {estimate.target - estimate.layers} x the per-layer "
        f"cost; per-layer time = ({estimate.layers}-layer median - median of the step with the "
        f"decoder layers skipped, {seconds_text(fixed.median())}) / {estimate.layers}; per-layer "
        f"memory, per phase = (peak difference to that step, 0 if below) / {estimate.layers} + "
        f"one layer's weights ({size_text(estimate.layer_weight_bytes)}).\n"
        + (
            ""
            if memory.device.type == "cuda"
            else "On the CPU the memory is the process's RSS (at this precision, allocator "
            "caching included): a rough guide; a GPU's figure comes from --device cuda.\n"
        )
        + f"adapter folder at {estimate.target} layers: {estimate.adapter_bytes / 2**20:.1f} MiB "
        f"(+{estimate.layer_adapter_bytes / 2**10:.0f} KiB of LoRA per layer)."
    )


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_model_source_arguments(parser, layers_help="fewer decoder layers, extrapolated to 32")
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="what lisa-finetune trains in; auto: bf16 on a GPU that has it, else fp32",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: a GPU if there is one)")
    parser.add_argument("--batch-size", type=int, default=2, help="examples per micro-batch")
    parser.add_argument(
        "--grad-accumulation", type=int, default=1, help="micro-batches per optimizer step"
    )
    parser.add_argument("--steps", type=int, default=5, help="measured steps per setting")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured steps per setting first")
    parser.add_argument("--json", type=Path, help="also write every measured step to this file")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.grad_accumulation, args.steps) < 1 or args.warmup < 0:
        parser.error("--batch-size, --grad-accumulation, --steps must be >= 1, --warmup >= 0")
    check_model_source(parser, args)
    args.device = resolve_device(args.device)
    args.precision = resolve_precision(args.precision, args.device)
    return args


def run_benchmark(args: argparse.Namespace, work_dir: Path) -> int:
    from lisa_ros.model import LisaLoadError

    examples = args.batch_size * args.grad_accumulation
    data = write_dataset(work_dir / "data", min(examples, MAX_IMAGES))
    try:
        if args.full_size_7b:
            lisa, description = random_full_size(args, work_dir)
            run = make_run(args, data, work_dir / "output", lisa)
            del lisa
        else:
            run = make_run(args, data, work_dir / "output")
            description = str(args.model)
    except LisaLoadError as error:
        print(f"benchmark_finetune: error: {error}", file=sys.stderr)
        return 1
    device = run.accelerator.device
    memory = StepMemory(device)
    clock = Clock(device)
    decoder = run.lisa.net.llm.get_decoder()
    layers = len(decoder.layers)

    log.info("Encoding %d image(s) with CLIP and SAM's image encoder (cached)", len(run.source))
    encode_seconds = []
    for index in range(len(run.source)):
        started = clock()
        run.source.features(index)
        encode_seconds.append(clock() - started)
    setup_bytes = memory.current_bytes()

    modes = [Mode(ON, True, layers), Mode(OFF, False, layers)]
    extrapolating = args.full_size_7b and layers < FULL_SIZE_LAYERS
    fixed = Mode(FIXED, True, 0)
    log.info(
        "Benchmarking: %d warm-up + %d measured step(s) per setting, %d example(s) per step",
        args.warmup,
        args.steps,
        examples,
    )
    measure(run, modes + ([fixed] if extrapolating else []), memory, args.warmup, args.steps)
    on, off = modes

    counts = parameter_counts(run)
    adapter_files = adapter_size(run, work_dir / "adapter")
    adapter_bytes = sum(adapter_files.values())
    layer = decoder.layers[0]
    layer_lora_bytes = tensor_bytes(p for n, p in layer.named_parameters() if "lora_" in n)
    estimate = (
        extrapolate(
            modes,
            fixed,
            layers,
            tensor_bytes(layer.parameters()),
            layer_lora_bytes,
            adapter_bytes,
        )
        if extrapolating
        else None
    )

    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads{load_average()})"
    )
    tokens = [t for mode in modes for step in mode.steps for t in step.tokens]
    image_tokens = run.source.features(0).image_tokens.shape[1]
    lora = run.settings.lora
    print(
        f"\nLISA fine-tuning benchmark: {description} ({layers} decoder layers), "
        f"{args.precision}, {device_name}"
    )
    print(
        f"optimizer step = {args.batch_size} example(s) x {args.grad_accumulation} accumulation: "
        "forward + loss + backward + grad clipping + AdamW (FinetuneRun.optimizer_step); "
        f"median and p90 of {args.steps} step(s) after {args.warmup} warm-up step(s) per setting"
    )
    print(
        f"examples: synthetic {IMAGE_HW[1]}x{IMAGE_HW[0]} frames with a square target, "
        f"{min(tokens, default=0)}-{max(tokens, default=0)} LLM positions each "
        f"({image_tokens} image tokens); CLIP + SAM's image encoder ran once per image before the "
        "timed steps, as the trainer caches them: "
        f"{seconds_text(statistics.median(encode_seconds))} per image (median), "
        "not in the step time"
    )
    print(
        f"trainable: {count_text(counts['trainable'])} of {count_text(counts['total'])} "
        f"parameters ({100 * counts['trainable'] / counts['total']:.2f} %): "
        f"LoRA r={lora.r} on {'/'.join(lora.targets)} {count_text(counts['lora'])}, "
        f"embed_tokens + lm_head {count_text(counts['embed_tokens_lm_head'])}, "
        f"text_hidden_fcs {count_text(counts['text_hidden_fcs'])}, "
        f"mask decoder {count_text(counts['mask_decoder'])} "
        "(the total counts peft's trainable copies of embed_tokens and lm_head)"
    )
    print(
        f"adapter folder (save_adapter): {size_text(adapter_bytes)} ("
        + ", ".join(f"{name} {size_text(size)}" for name, size in adapter_files.items())
        + ")"
    )
    print(
        f"memory in use before the first step: {size_text(setup_bytes)} (the model, the cached "
        "features; AdamW's state is allocated by the first, warm-up, step)"
    )
    print(f"memory: {memory.describe()}")
    print()
    print(step_table(on, off, memory, examples))
    print()
    print(
        "decoder layer passes / step: each layer's MLP calls over the step; gradient "
        "checkpointing runs every layer again in backward, so 'on' must be twice 'off'."
    )
    for mode in modes:
        if mode.error:
            print(f"{mode.name}: {mode.error}")
    if estimate is not None:
        print()
        print(extrapolation_table(estimate, fixed, memory))

    if args.json:
        record = {
            "model": description,
            "decoder_layers": layers,
            "precision": args.precision,
            "device": device_name,
            "batch_size": args.batch_size,
            "grad_accumulation": args.grad_accumulation,
            "warmup_steps": args.warmup,
            "image_hw": list(IMAGE_HW),
            "image_encoding_s": encode_seconds,
            "memory_kind": memory.describe(),
            "setup_bytes": setup_bytes,
            "parameters": counts,
            "adapter_files_bytes": adapter_files,
            "adapter_bytes": adapter_bytes,
            "modes": {
                mode.name: {
                    "gradient_checkpointing": mode.checkpointing,
                    "active_layers": mode.active_layers,
                    "median_s": mode.median(),
                    "p90_s": mode.p90(),
                    "peak_bytes": mode.peak(),
                    "backward_peak_bytes": mode.peak("backward_peak_bytes"),
                    "optimizer_peak_bytes": mode.peak("optimizer_peak_bytes"),
                    "growth_bytes": mode.growth(),
                    "reserved_bytes": mode.reserved(),
                    "layer_passes": mode.layer_passes(),
                    "error": mode.error,
                    "steps": [
                        {
                            "seconds": step.seconds,
                            "peak_bytes": step.peak_bytes,
                            "backward_peak_bytes": step.backward_peak_bytes,
                            "optimizer_peak_bytes": step.optimizer_peak_bytes,
                            "start_bytes": step.start_bytes,
                            "reserved_bytes": step.reserved_bytes,
                            "layer_passes": step.layer_passes,
                            "tokens": step.tokens,
                            "losses": step.losses,
                        }
                        for step in mode.steps
                    ],
                }
                for mode in modes + ([fixed] if extrapolating else [])
            },
            "ratio_on_over_off": {
                "median_s": on.median() / off.median() if on.steps and off.steps else None,
                "peak_bytes": on.peak() / off.peak() if on.steps and off.steps else None,
            },
            "estimate": None
            if estimate is None
            else {"note": "linear extrapolation, not a measurement", **estimate.__dict__},
        }
        args.json.write_text(json.dumps(record, indent=2))
    return 0 if not any(mode.error for mode in modes) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("benchmark", quiet=False)
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        return run_benchmark(args, args.work_dir)
    # the synthetic dataset, the adapter written for its size, and (full size) ~1.2 GB of CLIP
    with tempfile.TemporaryDirectory(prefix="lisa-benchmark-finetune-") as temporary:
        return run_benchmark(args, Path(temporary))


if __name__ == "__main__":
    sys.exit(main())
