"""Input and output of the command-line tools, ``lisa-segment`` (runs the model) and ``lisa-ask``
(asks a running lisa_node).

Both read an image file and an instruction a person typed, print the answer and write the same
files, so that their mistakes read the same and a folder from one tool looks like a folder from
the other: ``overlay.png`` (masks over the image, answer drawn), ``mask_<k>.png`` (0/255, one per
mask) and ``result.json``. Kept free of rclpy: ``lisa-segment`` runs without ROS.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from lisa_ros.visualization import mask_colors

if TYPE_CHECKING:
    from lisa_ros.model.result import MaskRecord

OVERLAY_FILE = "overlay.png"
RESULT_FILE = "result.json"
EXIT_FAILURE = 1  # the model, the node or the file system failed
EXIT_BAD_INPUT = 2  # what the user gave is wrong (argparse uses 2 for usage errors too)
EXIT_INTERRUPTED = 130  # what shells report for Ctrl-C


class CommandError(Exception):
    """A failure to report as one ``<prog>: error: ...`` line, with the exit status to end with."""

    def __init__(self, message: str, exit_status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def mask_file_name(index: int) -> str:
    return f"mask_{index}.png"


# --- inputs: checked before any model or node is involved, so a mistake costs no waiting ------


def check_instruction(instruction: str) -> str:
    """``instruction`` without surrounding blanks; an empty one is an error, not a question."""
    if not instruction.strip():
        raise CommandError(
            'the instruction is empty: say what to segment, e.g. "where is the mug?"',
            EXIT_BAD_INPUT,
        )
    return instruction.strip()


def read_image(path: Path) -> np.ndarray:
    """The image at ``path`` as RGB uint8 HxWx3 (read like the reference: OpenCV, EXIF-rotated)."""
    if not path.is_file():
        raise CommandError(
            f"image '{path}' {'is not a file' if path.exists() else 'does not exist'}",
            EXIT_BAD_INPUT,
        )
    if not os.access(path, os.R_OK):
        raise CommandError(f"image '{path}' is not readable (permissions)", EXIT_BAD_INPUT)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CommandError(
            f"image '{path}' cannot be decoded: use a PNG, JPEG, BMP, TIFF or WebP file",
            EXIT_BAD_INPUT,
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def prepare_output(folder: Path | None) -> None:
    """Create ``folder`` (if one is given) and check it is writable: a result that cannot be saved
    should not cost a model load or an inference first."""
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(
            f"output folder '{folder}' cannot be created: {error.strerror or error}", EXIT_BAD_INPUT
        ) from None
    if not os.access(folder, os.W_OK):
        raise CommandError(f"output folder '{folder}' is not writable", EXIT_BAD_INPUT)


# --- outputs ---------------------------------------------------------------------------------


def print_answer(text: str) -> None:
    """The answer on stdout, alone. A random or odd model may emit text the terminal's encoding
    cannot show: such characters are replaced rather than failing the run at its very end."""
    encoding = sys.stdout.encoding or "utf-8"
    sys.stdout.write(text.encode(encoding, errors="replace").decode(encoding) + "\n")
    sys.stdout.flush()


def result_record(
    fields: Mapping[str, Any], text: str, masks: Sequence[MaskRecord], timings: Mapping[str, float]
) -> dict[str, Any]:
    """What ``result.json`` holds, in the same form from both tools: the tool's own ``fields``
    (run settings, outcome), the answer ``text``, one entry per mask and the ``timings`` (s).

    Mask entry ``k`` describes ``mask_<k>.png`` and the mask drawn in ``overlay_color_rgb`` on
    ``overlay.png``; its other keys are the :class:`MaskRecord` fields.
    """
    colors = mask_colors(len(masks))
    return {
        **fields,
        "text": text,
        "masks": [
            {
                "index": mask.index,
                "file": mask_file_name(position),
                "phrase": mask.phrase,
                "text_offset": mask.text_offset,
                "bbox_xywh": list(mask.bbox_xywh),
                "area_px": mask.area_px,
                # The shortest decimal that reads back as the same float32: the score the node
                # sends is float32, so both tools write the same digits for the same mask.
                "score": float(str(np.float32(mask.score))),
                "overlay_color_rgb": colors[position].tolist(),
            }
            for position, mask in enumerate(masks)
        ],
        "timings_s": {stage: float(seconds) for stage, seconds in timings.items()},
    }


def write_result_files(
    folder: Path, record: dict[str, Any], masks: np.ndarray, overlay_rgb: np.ndarray | None
) -> list[Path]:
    """Write ``overlay_rgb`` (if any), one 0/255 PNG per mask of ``masks`` (N, H, W) and ``record``
    as ``result.json`` into the existing ``folder``.

    The JSON goes last, through a rename: a ``result.json`` always belongs to a finished run and
    every file it names is there. Returns the paths written, in order; raises OSError if a file
    cannot be written.
    """
    result_path = folder / RESULT_FILE
    # A result.json of an earlier run in this folder would name the images being overwritten.
    result_path.unlink(missing_ok=True)
    written = []
    if overlay_rgb is not None:
        written.append(_write_png(folder / OVERLAY_FILE, overlay_rgb))
        record = {**record, "overlay": OVERLAY_FILE}
    for index, mask in enumerate(masks):
        written.append(_write_png(folder / mask_file_name(index), mask.astype(np.uint8) * 255))
    partial = result_path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(result_path)
    return [*written, result_path]


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    """Write RGB (H, W, 3) or grey (H, W) uint8 pixels (OpenCV wants BGR, and reports failure
    by returning False)."""
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), pixels):
        raise OSError(f"cannot write '{path}'")
    return path
