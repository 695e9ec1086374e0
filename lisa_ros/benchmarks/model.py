"""Benchmark LISA inference: this implementation against the authors' way of generating.

Both modes run in one process on the same weights, the same image, the same instruction and the
same forced answer (``--answer-tokens`` tokens holding one ``[SEG]``, scripted through a logits
processor, so a random-weight model gives the answer length a real one would):

- cached: ``LisaModel.segment``: CLIP and SAM encode the image once, generation uses the KV cache
  and picks up the ``[SEG]`` state while decoding. Measured on a new image (what a camera frame
  costs) and again on the same image (a follow-up instruction, which reuses the image encodings).
- followed frame: ``LisaModel.follow``: the new-image answer's [SEG] prompts decoded on a later
  camera frame (the image shifted a little, so nothing is cached): SAM's image encoder and mask
  decoder only, no CLIP, no LLM. What a node pays per frame between reasoned answers; the table's
  "reasoned / followed" column says how much cheaper that is than reasoning again.
- reference-style: what the authors' ``chat.py`` does: SAM encodes the image once, then greedy
  generation WITHOUT a KV cache that, for every new token, re-runs CLIP and the whole sequence
  through the LLM (logits for every position), and takes the ``[SEG]`` state from the last full
  pass.

Printed: per-stage latency medians over ``--repeats`` (after ``--warmup`` runs), tokens/s, peak
memory, the reference/cached and reasoned/followed ratios, plus a check that the cached and the
reference-style modes produced the same masks.

    python -m benchmarks.model                              # tiny fixture, CPU
    python -m benchmarks.model --full-size-7b --precision bf16 --device cuda

(from the lisa_ros package folder: see benchmarks/__init__.py).

Its length: four modes of one measurement (the reference-style loop written out as the authors'
code runs), their table and the checks that they agree; what the benchmarks share is in
:mod:`benchmarks.common`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    Clock,
    PeakMemory,
    add_model_source_arguments,
    check_model_source,
    format_seconds,
    markdown_table,
    random_full_size_checkpoint,
    ratio,
    synthetic_image,
)
from lisa_ros.cli.options import configure_logging
from lisa_ros.model import LisaLoadError, LisaModel, build_model, load_model
from lisa_ros.model.generation import ScriptedReply
from lisa_ros.model.lisa import ImageEncoding
from lisa_ros.model.options import DEVICE_FORMS, PRECISIONS, QUANTIZATIONS, spoken_choices
from lisa_ros.model.result import SegmentationResult

INSTRUCTION = "What in this picture could I boil water in? Please output segmentation mask."
# Words the scripted answer is made of (any ids would do; these read like a LISA answer).
ANSWER_WORDS = (
    "Sure, it is the kettle on the left side of the table, next to the cups and the bowl of fruit; "
    "it can be filled with water and put on the stove to boil it. "
)
STAGES = (
    "clip",
    "sam_encoder",
    "prefill",
    "decode",
    "decode_per_token",
    "mask_decoder",
    "first_mask",
    "total",
)
STAGE_LABELS = {
    "clip": "CLIP (all runs)",
    "sam_encoder": "SAM image encoder",
    "prefill": "prefill",
    "decode": "decode (all tokens)",
    "decode_per_token": "decode / token",
    "mask_decoder": "mask decoding",
    "first_mask": "time to first mask",
    "total": "total",
}
# What LisaModel.follow times; the other stages do not run for a followed frame.
FOLLOW_STAGES = ("sam_encoder", "mask_decoder", "total")

log = logging.getLogger("benchmark")


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One segmentation: stage seconds, generated ids, mask logits (and the model's answer, for a
    mode that follows it)."""

    timings: dict[str, float]
    token_ids: list[int]
    mask_logits: np.ndarray
    peak_bytes: int = 0
    result: SegmentationResult | None = field(default=None, repr=False)


@dataclass
class ModeSummary:
    name: str
    runs: list[Run] = field(default_factory=list)

    def median(self, stage: str) -> float | None:
        """None for a stage this mode does not run (CLIP, prefill, decode of a followed frame)."""
        if any(stage not in run.timings for run in self.runs):
            return None
        return statistics.median(run.timings[stage] for run in self.runs)

    def tokens_per_second(self) -> float | None:
        """Generated tokens over the generation time (prefill + decode; the reference's CLIP
        re-runs too); None for a mode that generates nothing."""
        if any("generation" not in run.timings for run in self.runs):
            return None
        return statistics.median(
            len(run.token_ids) / run.timings["generation"]
            for run in self.runs
            if run.timings["generation"] > 0
        )

    def peak_bytes(self) -> int:
        return max(run.peak_bytes for run in self.runs)


# --- the forced answer -------------------------------------------------------------------------


def scripted_answer_ids(lisa: LisaModel, length: int) -> list[int]:
    """``length`` ids: answer words with one [SEG] as the third token (as in "Sure, [SEG] ..."),
    then EOS."""
    if length < 2:
        raise ValueError("the answer needs at least 2 tokens: [SEG] and EOS")
    words = lisa.tokenizer(ANSWER_WORDS, add_special_tokens=False).input_ids
    body = list(itertools.islice(itertools.cycle(words), length - 2))
    seg_at = min(2, len(body))
    return body[:seg_at] + [lisa.layout.seg] + body[seg_at:] + [lisa.layout.eos]


# --- this implementation --------------------------------------------------------------------------


def cached_segment(lisa: LisaModel, image: np.ndarray, answer: list[int]) -> Run:
    """`LisaModel.segment` as the node calls it: each mask handed over (`on_mask`) at the step
    that generates its [SEG], so "first_mask" is when a robot could act."""
    result = lisa.segment(
        image,
        INSTRUCTION,
        logits_processor=[ScriptedReply(answer)],
        max_new_tokens=len(answer),
        on_mask=lambda _partial: None,
    )
    timings = {stage: float(result.timings.get(stage, 0.0)) for stage in STAGES}
    timings["generation"] = timings["prefill"] + timings["decode"]
    return Run(timings, list(result.token_ids), result.mask_logits, result=result)


def follow_segment(lisa: LisaModel, frame: np.ndarray, reasoned: SegmentationResult) -> Run:
    """`reasoned`'s targets on `frame` with `LisaModel.follow`: SAM alone, the answer not
    re-read."""
    result = lisa.follow(frame, reasoned)
    timings = {stage: float(result.timings[stage]) for stage in FOLLOW_STAGES}
    return Run(timings, list(result.token_ids), result.mask_logits, result=result)


# --- the authors' way ----------------------------------------------------------------------------


@torch.inference_mode()
def reference_style_segment(lisa: LisaModel, image: np.ndarray, answer: list[int]) -> Run:
    """Generate like the authors' code: no KV cache, CLIP and the whole sequence re-run every step.

    Uses the loaded model's own parts (CLIP tower, projector, LLM, SAM, [SEG] projection), so the
    only difference from `cached_segment` is how the work is organised.
    """
    clock = Clock(lisa.device)
    scripted = ScriptedReply(answer)
    start = clock()

    # SAM: once per request, as in chat.py
    pixels, resize_hw = lisa.sam_pixels(image)
    sam_embeddings = lisa.net.sam_embedding(pixels)
    sam_done = clock()

    # chat.py pre-processes once; the model re-encodes each step
    clip_pixels = lisa.clip_pixels(image)
    prompt_ids = lisa.prompt_ids(INSTRUCTION)
    decoder, lm_head = lisa.net.llm.get_decoder(), lisa.net.llm.get_output_embeddings()
    embed_tokens = lisa.net.llm.get_input_embeddings()
    generated = torch.zeros((1, 0), dtype=torch.long, device=lisa.device)
    clip_seconds, llm_seconds = 0.0, []
    image_tokens = hidden = None
    for _ in range(len(answer)):
        step_start = clock()
        image_tokens = lisa.net.image_tokens(clip_pixels)
        clip_done = clock()
        embeddings = torch.cat(
            [lisa.net.embed_prompt(prompt_ids, image_tokens), embed_tokens(generated)], dim=1
        )
        hidden = decoder(
            inputs_embeds=embeddings, use_cache=False
        ).last_hidden_state  # after the final norm
        logits = lm_head(hidden)  # every position, as transformers 4.31 computed them
        next_token = scripted(generated, logits[:, -1].float()).argmax(dim=-1, keepdim=True)
        generated = torch.cat([generated, next_token], dim=1)
        step_done = clock()
        clip_seconds += clip_done - step_start
        llm_seconds.append(step_done - clip_done)
        if next_token.item() == lisa.layout.eos:
            break
    generation_done = clock()

    # The [SEG] states, from the last full pass: the position before each [SEG] predicted it.
    token_ids = generated[0].tolist()
    prompt_length = hidden.shape[1] - (len(token_ids) - 1)
    positions = [
        prompt_length + step - 1 for step, token in enumerate(token_ids) if token == lisa.layout.seg
    ]
    mask_start = clock()
    if positions:
        encoding = ImageEncoding(
            key="reference-style",
            image_tokens=image_tokens,
            sam_embeddings=sam_embeddings,
            resize_hw=resize_hw,
            original_hw=image.shape[:2],
            timings={},
        )
        logits, _ = lisa.net.masks(lisa.net.seg_prompts(hidden[0, positions]), encoding)
        mask_logits = logits.float().cpu().numpy()
    else:
        mask_logits = np.zeros((0, *image.shape[:2]), np.float32)
    end = clock()

    decode = sum(llm_seconds[1:])
    timings = {
        "clip": clip_seconds,
        "sam_encoder": sam_done - start,
        "prefill": llm_seconds[0],
        "decode": decode,
        "decode_per_token": decode / (len(llm_seconds) - 1) if len(llm_seconds) > 1 else 0.0,
        "mask_decoder": end - mask_start,
        "first_mask": end - start,  # every mask comes with the whole answer
        "total": end - start,
        "generation": generation_done - sam_done,
    }
    return Run(timings, token_ids, mask_logits)


# --- running --------------------------------------------------------------------------------------


def new_image_variant(image: np.ndarray, number: int) -> np.ndarray:
    """The image with one pixel changed: a new image for the encoding cache, the same one for the
    model."""
    variant = image.copy()
    variant[0, 0, 0] ^= (number % 255) + 1
    return variant


def frame_shift(image: np.ndarray) -> tuple[int, int]:
    """(rows, columns) the followed frame is moved by: 1/40 of the image, as a camera that panned
    a little since the reasoned frame (16x12 px on 640x480)."""
    height, width = image.shape[:2]
    return max(1, height // 40), max(1, width // 40)


def followed_frame(image: np.ndarray) -> np.ndarray:
    """A later camera frame of the same scene: `image` moved by `frame_shift` (wrapping round).

    Never the cached image: a variant's changed pixel moves with it, so the frame differs from
    the variant even if the rest of the image were uniform.
    """
    return np.roll(image, frame_shift(image), axis=(0, 1))


def measure_rounds(
    modes: dict[str, Callable[[np.ndarray], Run]],
    image: np.ndarray,
    memory: PeakMemory,
    warmup: int,
    repeats: int,
) -> dict[str, ModeSummary]:
    """Run every mode once per round, in turn, so that load from other processes hits them alike.

    Each round uses a new variant of the image, so the first cached mode pays for encoding it and a
    following one finds it in the model's image cache, as a follow-up instruction would.
    """
    summaries = {name: ModeSummary(name) for name in modes}
    for number in range(warmup + repeats):
        is_warmup = number < warmup
        label = (
            f"warm-up {number + 1}/{warmup}"
            if is_warmup
            else f"run {number - warmup + 1}/{repeats}"
        )
        variant = new_image_variant(image, number)
        for name, segment in modes.items():
            memory.reset()
            run = segment(variant)
            run.peak_bytes = memory.peak_bytes()
            log.info(
                "%-12s %-20s %.3f s (%d tokens, %d mask(s))",
                label,
                name,
                run.timings["total"],
                len(run.token_ids),
                len(run.mask_logits),
            )
            if not is_warmup:
                summaries[name].runs.append(run)
    return summaries


def read_image(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


# --- the model ------------------------------------------------------------------------------------


def load(args: argparse.Namespace, work_dir: Path) -> tuple[LisaModel, str]:
    """The model to benchmark and a description of it."""
    if not args.full_size_7b:
        lisa = load_model(
            args.model,
            vision_tower=args.vision_tower,
            precision=args.precision,
            quantization=args.quantization,
            device=args.device,
        )
        return lisa, str(args.model)

    from lisa_ros.model.loading import check_options

    # before a minute of making weights
    check_options(args.precision, args.quantization, args.device)
    checkpoint = random_full_size_checkpoint(work_dir, args.num_layers)
    lisa = build_model(
        checkpoint, precision=args.precision, quantization=args.quantization, device=args.device
    )
    layers = f", {args.num_layers} layers" if args.num_layers else ""
    return lisa, f"random full-size LISA-7B architecture{layers}"


def parameter_count(lisa: LisaModel) -> int:
    return sum(p.numel() for p in lisa.net.parameters())


# --- report ---------------------------------------------------------------------------------------


def table(
    cached_new: ModeSummary,
    cached_same: ModeSummary,
    reference: ModeSummary,
    followed: ModeSummary,
    memory: PeakMemory,
) -> str:
    """Stages down, modes across, then the reference/cached ratio and the reasoned/followed one
    (the new-image answer against the frame that follows it); "-" where a mode skips a stage."""
    modes = (cached_new, cached_same, reference, followed)
    headers = [
        "stage (median)",
        *(mode.name for mode in modes),
        "reference / cached",
        "reasoned / followed",
    ]

    def cells(values: Sequence[float | None], show: Callable[[float], str]) -> list[str]:
        return ["-" if value is None else show(value) for value in values]

    def ratio_cell(numerator: float | None, denominator: float | None, suffix: str = "") -> str:
        if numerator is None or denominator is None:
            return "-"
        return ratio(numerator, denominator) + suffix

    rows = []
    for stage in STAGES:
        new, same, ref, follow = (mode.median(stage) for mode in modes)
        rows.append(
            [
                STAGE_LABELS[stage],
                *cells((new, same, ref, follow), format_seconds),
                ratio_cell(ref, new),
                ratio_cell(new, follow, " cheaper" if stage == "total" else ""),
            ]
        )
    speeds = [mode.tokens_per_second() for mode in modes]
    rows.append(
        [
            "tokens / s (generation)",
            *cells(speeds, lambda speed: f"{speed:.1f}"),
            ratio_cell(speeds[0], speeds[2], " faster"),
            "-",
        ]
    )
    peaks = [mode.peak_bytes() / 2**30 for mode in modes]
    peak_label = f"peak memory, {memory.kind}" + ("" if memory.per_mode else " (process)")
    rows.append(
        [
            peak_label,
            *(f"{p:.2f} GiB" for p in peaks),
            ratio_cell(peaks[2], peaks[0]),
            ratio_cell(peaks[0], peaks[3]),
        ]
    )
    return markdown_table(headers, rows)


def first_mask_share(mode: ModeSummary, *, after_encoding: bool = False) -> float | None:
    """The median time to the first mask as a share of the median total; `after_encoding`: both
    counted from the end of image encoding (CLIP, SAM's encoder), which precedes any answer and
    dominates on a CPU or with a tiny LLM."""
    first, total = mode.median("first_mask"), mode.median("total")
    if first is None or not total:
        return None
    if after_encoding:
        encoding = (mode.median("clip") or 0.0) + (mode.median("sam_encoder") or 0.0)
        first, total = first - encoding, total - encoding
    return first / total if total > 0 else None


def follow_summary(reasoned: ModeSummary, followed: ModeSummary) -> dict[str, float | None]:
    """The follow figures in seconds (medians) and their ratio, for the JSON record."""
    reasoned_total, followed_total = reasoned.median("total"), followed.median("total")
    return {
        "reasoned_total_s": reasoned_total,
        "followed_total_s": followed_total,
        "followed_sam_encoder_s": followed.median("sam_encoder"),
        "followed_mask_decoder_s": followed.median("mask_decoder"),
        "reasoned_over_followed": reasoned_total / followed_total if followed_total else None,
    }


def agreement(cached: ModeSummary, reference: ModeSummary) -> str:
    """Both modes must compute the same thing; the masks are the evidence."""
    a, b = cached.runs[-1], reference.runs[-1]
    if a.token_ids != b.token_ids:
        return f"token ids DIFFER: cached {a.token_ids} vs reference-style {b.token_ids}"
    if a.mask_logits.shape != b.mask_logits.shape:
        return f"mask counts DIFFER: {a.mask_logits.shape} vs {b.mask_logits.shape}"
    if not a.mask_logits.size:
        return "same token ids; no masks to compare"
    difference = float(np.abs(a.mask_logits - b.mask_logits).max())
    same_pixels = float(((a.mask_logits > 0) == (b.mask_logits > 0)).mean() * 100)
    return (
        f"same token ids; mask logits max |difference| {difference:.2e}; "
        f"binary masks agree on {same_pixels:.3f} % of pixels"
    )


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_model_source_arguments(parser, layers_help="fewer decoder layers, for a quick trial")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32")
    parser.add_argument("--quantization", choices=QUANTIZATIONS)
    parser.add_argument(
        "--device",
        default=None,
        help=f"{spoken_choices(DEVICE_FORMS)} (default: a GPU if there is one)",
    )
    parser.add_argument(
        "--answer-tokens", type=int, default=30, help="forced answer length, [SEG] and EOS included"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="measured runs per mode (medians are reported)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs per mode first")
    parser.add_argument(
        "--image", type=Path, help="image file (default: a synthetic 640x480 image)"
    )
    parser.add_argument("--json", type=Path, help="also write every measured run to this JSON file")
    args = parser.parse_args(argv)
    if args.answer_tokens < 2:
        parser.error("--answer-tokens must be at least 2 ([SEG] and EOS)")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    check_model_source(parser, args)
    return args


def run_benchmark(args: argparse.Namespace, work_dir: Path) -> int:
    try:
        lisa, description = load(args, work_dir)
    except LisaLoadError as error:
        print(f"benchmark_model: error: {error}", file=sys.stderr)
        return 1
    image = read_image(args.image) if args.image else synthetic_image()
    answer = scripted_answer_ids(lisa, args.answer_tokens)
    memory = PeakMemory(lisa.device)
    weights = torch.cuda.memory_allocated(lisa.device) if lisa.device.type == "cuda" else None

    log.info(
        "Benchmarking: %d warm-up + %d measured rounds, %d-token answer",
        args.warmup,
        args.repeats,
        len(answer),
    )

    # this round's reasoned answer, which the followed frame follows
    latest: dict[str, SegmentationResult] = {}

    def reasoned(variant: np.ndarray) -> Run:
        run = cached_segment(lisa, variant, answer)
        latest["answer"] = run.result
        return run

    def cached(variant: np.ndarray) -> Run:
        return cached_segment(lisa, variant, answer)

    def follow(variant: np.ndarray) -> Run:
        return follow_segment(lisa, followed_frame(variant), latest["answer"])

    def reference_style(variant: np.ndarray) -> Run:
        return reference_style_segment(lisa, variant, answer)

    # "same image" runs right after "new image" on the same variant: its encodings are in the cache.
    # "followed frame" comes after both (its frame replaces the cached encoding) and follows the
    # new-image answer, so "reasoned / followed" compares the two costs of a new camera frame.
    modes = {
        "cached, new image": reasoned,
        "cached, same image": cached,
        "followed frame": follow,
        "reference-style": reference_style,
    }
    summaries = measure_rounds(modes, image, memory, args.warmup, args.repeats)
    cached_new, cached_same = summaries["cached, new image"], summaries["cached, same image"]
    followed, reference = summaries["followed frame"], summaries["reference-style"]

    device_name = (
        torch.cuda.get_device_name(lisa.device)
        if lisa.device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    quantization = f", {args.quantization} LLM" if args.quantization else ""
    print(
        f"\nLISA benchmark: {description}, {parameter_count(lisa) / 1e9:.3f} B parameters, "
        f"{args.precision}{quantization}, {device_name}"
    )
    print(
        f"image {image.shape[1]}x{image.shape[0]}, "
        f"forced answer of {len(answer)} tokens with one [SEG], medians of {args.repeats} run(s)"
    )
    if weights is not None:
        print(f"GPU memory after loading: {weights / 2**30:.2f} GiB")
    print()
    print(table(cached_new, cached_same, reference, followed, memory))
    print()
    print("check: " + agreement(cached_new, reference))
    print(
        "cached, same image = a further instruction on an image already seen "
        "(its CLIP/SAM encodings are reused)."
    )
    rows, columns = frame_shift(image)
    figures = follow_summary(cached_new, followed)
    masks = len(followed.runs[-1].mask_logits)
    cheaper = figures["reasoned_over_followed"]
    print(
        f"followed frame = LisaModel.follow of the new-image answer's {masks} [SEG] prompt(s) on "
        f"that image moved {columns}x{rows} px (a later camera frame): SAM encoder + mask decoder, "
        f"no CLIP, no LLM; {format_seconds(figures['followed_total_s'])} against "
        f"{format_seconds(figures['reasoned_total_s'])} for the reasoned answer"
        + (f", {cheaper:.1f}x cheaper." if cheaper else ".")
    )
    print(
        "tokens / s = generated tokens / (prefill + decode); "
        "reference-style generation includes its CLIP re-runs."
    )
    first_share = first_mask_share(cached_new)
    answer_share = first_mask_share(cached_new, after_encoding=True)
    if first_share is not None and answer_share is not None:
        print(
            f"time to first mask = from the start of segment to the [SEG]'s mask (on_mask), "
            f"the [SEG] being answer token {answer.index(lisa.layout.seg) + 1} of {len(answer)}: "
            f"{first_share:.0%} of the total (cached, new image), {answer_share:.0%} of the time "
            "after image encoding; the reference-style code hands every mask over with the "
            "whole answer."
        )

    if args.json:
        record = {
            "model": description,
            "precision": args.precision,
            "quantization": args.quantization,
            "device": device_name,
            "answer_tokens": len(answer),
            "image_hw": list(image.shape[:2]),
            "weights_gpu_bytes": weights,
            "modes": {
                summary.name: [
                    {"timings_s": run.timings, "peak_bytes": run.peak_bytes} for run in summary.runs
                ]
                for summary in (cached_new, cached_same, reference, followed)
            },
            "follow": {"frame_shift_px": list(frame_shift(image)), **figures},
            "first_mask_share": first_mask_share(cached_new),
            "first_mask_share_after_encoding": first_mask_share(cached_new, after_encoding=True),
        }
        args.json.write_text(json.dumps(record, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging("benchmark", quiet=False)
    if not args.full_size_7b or args.work_dir is not None:
        return run_benchmark(args, args.work_dir or Path("."))
    with tempfile.TemporaryDirectory(
        prefix="lisa-random-7b-"
    ) as temporary:  # ~1.2 GB (CLIP), removed afterwards
        return run_benchmark(args, Path(temporary))


if __name__ == "__main__":
    sys.exit(main())
