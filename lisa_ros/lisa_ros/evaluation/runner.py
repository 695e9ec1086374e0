"""Running LISA over a dataset and scoring it as the LISA authors do: the engine of ``lisa-eval``.

ROS-free; torch comes only with the model (the teacher-forced pass is imported when used). Two
protocols (``mode``):

- ``"validation"``: the authors' validation (``validate()`` in ``train_ds.py`` with their
  ``ValDataset``), which the paper's ReasonSeg numbers come from. Only the sample's *first*
  instruction is used, asked as :func:`~lisa_ros.model.prompt.validation_question` builds it
  (sentences as they are, phrases inside "What is ... in this image?"), and the answer is not
  generated but given: ``"[SEG]."`` (teacher forcing). The prediction is that one ``[SEG]``'s
  mask (logits > 0), so the number measures the masks, whatever the model would have said.
- ``"generate"``: what the node does. The same question; the model generates its answer, and the
  prediction is the union of the masks of all its ``[SEG]`` tokens (none: an empty prediction).
  This measures the whole system, the decision to answer with ``[SEG]`` included.

Each sample gives a :class:`SampleRow` and exact :class:`~lisa_ros.evaluation.MetricSums`;
:func:`evaluate` runs a list (or a process's shard) of samples, :func:`gather_results` merges the
shards of a ``torchrun`` / ``accelerate launch`` run on rank 0 with metrics identical to one
process, and :func:`write_report` writes ``samples.csv``, the worst samples' overlays and
``report.json``. ``lisa-finetune`` evaluates its held-out split with the same functions.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from lisa_ros.data import IGNORE, TARGET, DatasetError, Sample, write_atomically
from lisa_ros.distributed import Launch, gather_to_main
from lisa_ros.evaluation import MetricSums, SegmentationMetrics
from lisa_ros.model.errors import LisaOutOfMemoryError
from lisa_ros.model.prompt import QUESTION_STYLES, validation_question
from lisa_ros.visualization import draw_overlay

if TYPE_CHECKING:
    from lisa_ros.model import LisaModel

__all__ = [
    "MODES",
    "REPORT_FILE",
    "ROW_FIELDS",
    "SAMPLES_FILE",
    "WORST_FOLDER",
    "EvaluationResult",
    "Prediction",
    "SampleFailure",
    "SampleRow",
    "WorstSample",
    "draw_evaluation_overlay",
    "evaluate",
    "evaluate_sample",
    "gather_results",
    "predict",
    "question_for",
    "read_rows",
    "summary_line",
    "write_report",
    "write_rows",
]

logger = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("validation", "generate")
"""``validation``: the authors' protocol (first instruction, answer forced to "[SEG]."), the
paper's numbers; ``generate``: the model answers as in the node, union of its masks."""

SAMPLES_FILE = "samples.csv"
REPORT_FILE = "report.json"
WORST_FOLDER = "worst"

# Errors a sample can end in that say nothing about the other samples: the device ran out of
# memory on this image, an instruction too long for the context, an image unreadable since the
# dataset was loaded. Anything else is a bug and stops the run with its traceback.
SAMPLE_ERRORS: tuple[type[BaseException], ...] = (
    LisaOutOfMemoryError,
    MemoryError,
    ValueError,  # DatasetError included
)

# The overlay's ground-truth outlines (RGB): the target in white, ignored pixels in grey, each
# on a dark line so they read on any background; the prediction is the overlay's first colour.
_TARGET_OUTLINE = (255, 255, 255)
_IGNORE_OUTLINE = (150, 150, 150)
_DARK = (0, 0, 0)


# --- one sample -------------------------------------------------------------------------------


def question_for(sample: Sample, questions: str = "authors") -> str:
    """The question asked about ``sample`` in both modes: its first instruction, as the
    authors' validation asks it (see :func:`~lisa_ros.model.prompt.validation_question`), or
    as it was recorded (``questions="as-is"``, for a model fine-tuned on instructions as said)."""
    if questions == "as-is":
        return sample.instructions[0].strip()
    if questions != "authors":
        raise ValueError(f"unknown question style {questions!r}: use one of {QUESTION_STYLES}")
    return validation_question(sample.instructions[0], sample.is_sentence)


@dataclass(frozen=True)
class Prediction:
    """What the model predicted for one sample."""

    mask: np.ndarray
    """bool (H, W): the predicted object (the union of the masks in generate mode)."""
    answer: str
    """The answer: the forced "[SEG]." in validation mode, the generated text otherwise."""
    mask_count: int
    """Masks the answer produced (always 1 in validation mode)."""


def predict(
    model: LisaModel,
    image: np.ndarray,
    question: str,
    mode: str,
    generate_kwargs: Mapping[str, Any] | None = None,
) -> Prediction:
    """The prediction of ``model`` for ``question`` about ``image`` under protocol ``mode``.

    ``generate_kwargs`` (``max_new_tokens``, ...) go to ``LisaModel.segment`` in generate mode;
    validation mode generates nothing and ignores them.
    """
    if mode == "validation":
        from lisa_ros.model.teacher_forcing import forced_answer

        result = forced_answer(model, image, question)
        if len(result.masks) != 1:  # "[SEG]." holds one [SEG]: a guard, not a case
            raise RuntimeError(f"the forced answer gave {len(result.masks)} masks, not 1")
        return Prediction(result.masks[0], result.text, 1)
    if mode == "generate":
        result = model.segment(image, question, **dict(generate_kwargs or {}))
        masks = result.masks
        union = masks.any(axis=0) if len(masks) else np.zeros(image.shape[:2], dtype=bool)
        return Prediction(union, result.text, len(masks))
    raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")


@dataclass(frozen=True)
class SampleRow:
    """One line of ``samples.csv``: a sample's score and what produced it.

    ``intersection`` and ``union`` are the authors' pixel counts (ignored pixels excluded);
    ``iou`` their per-mask IoU (``i / (u + 1e-5)``, 1.0 for an empty target predicted empty).
    ``answer`` and ``masks`` are filled in generate mode only. A sample skipped after an error
    (``lisa-eval --skip-errors``) has ``error`` set, no score, and counts in no metric.
    """

    index: int
    name: str
    instruction: str
    question: str
    iou: float | None
    intersection: int | None
    union: int | None
    target_px: int
    predicted_px: int | None
    ignored_px: int
    answer: str | None
    masks: int | None
    seconds: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ROW_FIELDS: tuple[str, ...] = tuple(item.name for item in fields(SampleRow))


@dataclass(frozen=True)
class WorstSample:
    """A low-scoring sample with its prediction, bit-packed, kept to draw its overlay."""

    index: int
    name: str
    iou: float
    packed: np.ndarray
    shape: tuple[int, int]
    answer: str | None

    @classmethod
    def of(cls, row: SampleRow, prediction: Prediction) -> WorstSample:
        return cls(
            row.index,
            row.name,
            float(row.iou),
            np.packbits(prediction.mask),
            prediction.mask.shape,
            row.answer,
        )

    @property
    def mask(self) -> np.ndarray:
        height, width = self.shape
        return np.unpackbits(self.packed, count=height * width).reshape(height, width).astype(bool)

    @property
    def order(self) -> tuple[float, int]:
        """Worst first; ties in sample order, so every sharding picks the same samples."""
        return (self.iou, self.index)


@dataclass(frozen=True)
class SampleFailure:
    """The sample an evaluation stopped at, and why (one line)."""

    index: int
    name: str
    error: str


def _target_counts(target: np.ndarray) -> tuple[int, int]:
    return int(np.count_nonzero(target == TARGET)), int(np.count_nonzero(target == IGNORE))


def evaluate_sample(
    model: LisaModel,
    sample: Sample,
    index: int,
    mode: str,
    generate_kwargs: Mapping[str, Any] | None = None,
    questions: str = "authors",
) -> tuple[SampleRow, MetricSums, Prediction]:
    """Predict ``sample`` (number ``index`` of its dataset) and score it against its mask."""
    start = time.perf_counter()
    question = question_for(sample, questions)
    prediction = predict(model, sample.image(), question, mode, generate_kwargs)
    metrics = SegmentationMetrics()
    score = metrics.add_sample(sample.name, [prediction.mask], [sample.mask])
    target_px, ignored_px = _target_counts(sample.mask)
    generated = mode == "generate"
    row = SampleRow(
        index=index,
        name=sample.name,
        instruction=sample.instructions[0],
        question=question,
        iou=score.iou,
        intersection=score.intersection,
        union=score.union,
        target_px=target_px,
        predicted_px=int(np.count_nonzero(prediction.mask)),
        ignored_px=ignored_px,
        answer=prediction.answer if generated else None,
        masks=prediction.mask_count if generated else None,
        seconds=time.perf_counter() - start,
    )
    return row, metrics.sums(), prediction


def _error_row(
    sample: Sample, index: int, question: str, error: BaseException, seconds: float
) -> SampleRow:
    target_px, ignored_px = _target_counts(sample.mask)
    return SampleRow(
        index=index,
        name=sample.name,
        instruction=sample.instructions[0],
        question=question,
        iou=None,
        intersection=None,
        union=None,
        target_px=target_px,
        predicted_px=None,
        ignored_px=ignored_px,
        answer=None,
        masks=None,
        seconds=seconds,
        error=_one_line(error),
    )


def _one_line(error: BaseException) -> str:
    if isinstance(error, DatasetError):
        return str(error)
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# --- many samples -----------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """The rows, exact sums and worst samples of a run (or of one process's shard)."""

    rows: list[SampleRow] = field(default_factory=list)
    sums: MetricSums = field(default_factory=MetricSums)
    worst: list[WorstSample] = field(default_factory=list)
    failure: SampleFailure | None = None
    """The sample the run stopped at (without ``skip_errors``); None when it went through."""

    @property
    def giou(self) -> float:
        return self.sums.giou

    @property
    def ciou(self) -> float:
        return self.sums.ciou

    @property
    def scored(self) -> int:
        """Samples with a score (the skipped ones are not)."""
        return sum(1 for row in self.rows if row.error is None)

    @property
    def skipped(self) -> list[SampleRow]:
        return [row for row in self.rows if row.error is not None]

    @classmethod
    def combine(cls, parts: Iterable[EvaluationResult], worst: int) -> EvaluationResult:
        """The shards' results as one run's: rows in dataset order, sums added (exactly), the
        ``worst`` lowest IoUs over all shards, the failure of the earliest sample if any."""
        parts = list(parts)
        combined = cls()
        for part in parts:
            combined.sums += part.sums
        combined.rows = sorted((row for part in parts for row in part.rows), key=_index)
        combined.worst = sorted(
            (item for part in parts for item in part.worst), key=lambda item: item.order
        )[:worst]
        failures = [part.failure for part in parts if part.failure is not None]
        combined.failure = min(failures, key=_index) if failures else None
        return combined


def _index(item: SampleRow | SampleFailure) -> int:
    return item.index


ProgressCallback = Callable[[SampleRow, MetricSums], None]


def evaluate(
    model: LisaModel,
    samples: Sequence[tuple[int, Sample]],
    *,
    mode: str = "validation",
    generate_kwargs: Mapping[str, Any] | None = None,
    worst: int = 5,
    skip_errors: bool = False,
    on_sample: ProgressCallback | None = None,
    questions: str = "authors",
) -> EvaluationResult:
    """Score every ``(index, sample)`` of ``samples`` (a dataset, or a process's shard of it).

    ``questions``: how each first instruction is asked (:func:`question_for`).
    ``worst``: how many lowest-IoU samples to keep with their predictions for overlays.
    ``on_sample(row, sums_so_far)`` is called after each sample (progress). A sample that ends
    in an out-of-memory error, a bad image or an instruction too long for the model stops the
    run (``result.failure`` says which) unless ``skip_errors``: then its row records the error
    and it counts in no metric.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if questions not in QUESTION_STYLES:
        raise ValueError(f"unknown question style {questions!r}: use one of {QUESTION_STYLES}")
    result = EvaluationResult()
    for index, sample in samples:
        start = time.perf_counter()
        try:
            row, sums, prediction = evaluate_sample(
                model, sample, index, mode, generate_kwargs, questions
            )
        except SAMPLE_ERRORS as error:
            row = _error_row(
                sample, index, question_for(sample, questions), error, time.perf_counter() - start
            )
            result.rows.append(row)
            if not skip_errors:
                result.failure = SampleFailure(index, sample.name, row.error)
                break
            logger.warning("Sample %s skipped: %s", sample.name, row.error)
        else:
            result.rows.append(row)
            result.sums += sums
            _keep_worst(result.worst, WorstSample.of(row, prediction), worst)
        if on_sample is not None:
            on_sample(row, result.sums)
    return result


def _keep_worst(kept: list[WorstSample], candidate: WorstSample, limit: int) -> None:
    if limit <= 0:
        return
    kept.append(candidate)
    kept.sort(key=lambda item: item.order)
    del kept[limit:]


def gather_results(result: EvaluationResult, launch: Launch, worst: int) -> EvaluationResult | None:
    """Every process's result merged on rank 0 (None on the others); the result itself when
    alone. Must be called by every process of a distributed launch."""
    parts = gather_to_main(result, launch)
    if parts is None:
        return None
    return EvaluationResult.combine(parts, worst)


# --- report -----------------------------------------------------------------------------------


def draw_evaluation_overlay(
    image_rgb: np.ndarray, target: np.ndarray, prediction: np.ndarray, caption: str
) -> np.ndarray:
    """The image with the prediction filled (the overlay's first colour, red) and the ground
    truth outlined: the target in white, ignored pixels in grey (each on a dark line).

    ``caption`` is written as the overlay writes an answer (for images of 32 pixels and more).
    """
    overlay = draw_overlay(image_rgb, prediction[None], caption, draw_labels=False)
    thickness = max(1, round(min(image_rgb.shape[:2]) / 300))
    for value, color in ((IGNORE, _IGNORE_OUTLINE), (TARGET, _TARGET_OUTLINE)):
        region = (target == value).astype(np.uint8)
        contours, _ = cv2.findContours(region, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        if contours:
            cv2.drawContours(overlay, contours, -1, _DARK, thickness * 2 + 1)
            cv2.drawContours(overlay, contours, -1, color, thickness)
    return overlay


def _worst_file(position: int, name: str) -> str:
    return f"{WORST_FOLDER}/{position + 1:02d}_{name}.png"


def _write_worst(
    folder: Path, result: EvaluationResult, samples: Sequence[Sample]
) -> list[dict[str, Any]]:
    """An overlay per worst sample under ``folder/worst``; their entries for the report."""
    worst_folder = folder / WORST_FOLDER
    if worst_folder.is_dir():
        for old in worst_folder.glob("*.png"):
            old.unlink()  # an earlier run's overlays would pass for this run's
    if result.worst:
        worst_folder.mkdir(exist_ok=True)
    entries = []
    rows = {row.index: row for row in result.rows}
    for position, item in enumerate(result.worst):
        sample = samples[item.index]
        row = rows[item.index]
        caption = f"{sample.name} IoU {item.iou:.3f}: {row.instruction}"
        if item.answer is not None:
            caption += f" -> {item.answer}"
        overlay = draw_evaluation_overlay(sample.image(), sample.mask, item.mask, caption)
        relative = _worst_file(position, sample.name)
        if not cv2.imwrite(str(folder / relative), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write '{folder / relative}'")
        entries.append(
            {"name": sample.name, "index": item.index, "iou": item.iou, "overlay": relative}
        )
    return entries


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


def write_rows(path: Path, rows: Iterable[SampleRow]) -> Path:
    """``rows`` as CSV, a header of :data:`ROW_FIELDS`; floats written in full (``repr``)."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(ROW_FIELDS)
        for row in rows:
            writer.writerow([_csv_value(getattr(row, name)) for name in ROW_FIELDS])
    return path


_ROW_TYPES: dict[str, Callable[[str], Any]] = {
    "index": int,
    "iou": float,
    "intersection": int,
    "union": int,
    "target_px": int,
    "predicted_px": int,
    "ignored_px": int,
    "masks": int,
    "seconds": float,
}
_OPTIONAL = {"iou", "intersection", "union", "predicted_px", "answer", "masks", "error"}


def read_rows(path: Path) -> list[SampleRow]:
    """The rows of a ``samples.csv`` written by :func:`write_rows` (empty cells: None)."""
    rows = []
    with Path(path).open(newline="", encoding="utf-8") as file:
        for record in csv.DictReader(file):
            values = {}
            for name in ROW_FIELDS:
                text = record[name]
                if text == "" and name in _OPTIONAL:
                    values[name] = None
                else:
                    values[name] = _ROW_TYPES.get(name, str)(text)
            rows.append(SampleRow(**values))
    return rows


def report_record(
    result: EvaluationResult, run_info: Mapping[str, Any], worst_entries: list[dict[str, Any]]
) -> dict[str, Any]:
    """What ``report.json`` holds: the metrics first, then how they were obtained."""
    sums = result.sums
    return {
        "giou": sums.giou,
        "ciou": sums.ciou,
        "samples": result.scored,
        "masks": sums.count,
        "skipped": len(result.skipped),
        "sums": sums.to_dict(),
        **dict(run_info),
        "worst": worst_entries,
        "errors": [{"name": row.name, "error": row.error} for row in result.skipped],
        "rows": [row.to_dict() for row in result.rows],
        "files": {"samples": SAMPLES_FILE},
    }


def write_report(
    folder: Path,
    result: EvaluationResult,
    samples: Sequence[Sample],
    run_info: Mapping[str, Any],
) -> dict[str, Any]:
    """Write ``samples.csv``, the worst samples' overlays and ``report.json`` into ``folder``.

    ``samples`` is the whole dataset the rows' indices refer to; ``run_info`` (mode, model
    options, dataset, versions, times) goes into the report as it is. ``report.json`` comes
    last, through a rename: if it exists the evaluation finished and the other files are its.
    Returns the report. Raises OSError when a file cannot be written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    report_path = folder / REPORT_FILE
    report_path.unlink(missing_ok=True)
    write_rows(folder / SAMPLES_FILE, result.rows)
    record = report_record(result, run_info, _write_worst(folder, result, samples))
    text = json.dumps(record, indent=1, ensure_ascii=False) + "\n"
    write_atomically(report_path, lambda file: file.write(text.encode("utf-8")))
    return record


def summary_line(result: EvaluationResult) -> str:
    """``gIoU 0.xxxx cIoU 0.xxxx over N samples`` (and how many were skipped)."""
    line = f"gIoU {result.giou:.4f} cIoU {result.ciou:.4f} over {result.scored} samples"
    if result.skipped:
        line += f" ({len(result.skipped)} skipped after errors, see {REPORT_FILE})"
    return line
