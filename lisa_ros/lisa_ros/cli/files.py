"""Input and output of the command-line tools, ``lisa-segment`` (runs the model) and ``lisa-ask``
(asks a running lisa_node).

Both read an image file and an instruction a person typed, print the answer and write the same
files, so that their mistakes read the same and a folder from one tool looks like a folder from
the other: ``overlay.png`` (masks over the image, answer drawn), ``mask_<k>.png`` (0/255, one per
mask) and ``result.json``; given a depth image, ``points_<k>.ply`` (the mask's 3D points, coloured).
Kept free of rclpy: ``lisa-segment`` runs without ROS.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from lisa_ros.visualization import mask_colors

if TYPE_CHECKING:
    from lisa_ros.geometry import Target3D
    from lisa_ros.model.result import MaskRecord

OVERLAY_FILE = "overlay.png"
RESULT_FILE = "result.json"
EXIT_FAILURE = 1  # the model, the node or the file system failed
EXIT_BAD_INPUT = 2  # what the user gave is wrong (argparse uses 2 for usage errors too)
EXIT_INTERRUPTED = 130  # what shells report for Ctrl-C
DEPTH_FORMS = "use a 16-bit PNG in millimetres or a .npy of float metres"
# The axes of every 3D value the tools write (result.json, PLY files): the colour camera's.
CAMERA_FRAME = "camera optical frame (x right, y down, z forward)"


class CommandError(Exception):
    """A failure to report as one ``<prog>: error: ...`` line, with the exit status to end with."""

    def __init__(self, message: str, exit_status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def mask_file_name(index: int) -> str:
    return f"mask_{index}.png"


def points_file_name(index: int) -> str:
    return f"points_{index}.ply"


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
    _check_readable_file(path, "image")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CommandError(
            f"image '{path}' cannot be decoded: use a PNG, JPEG, BMP, TIFF or WebP file",
            EXIT_BAD_INPUT,
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_depth(path: Path) -> np.ndarray:
    """The depth image at ``path``, one value per pixel, as stored: uint16 (a 16-bit PNG, by
    convention millimetres) or float32/float64 (a ``.npy`` of metres; a float TIFF also works).

    Converting to metres, and checking the size against the colour image, is the caller's part.
    A colour or 8-bit image is refused: such a file is a picture, not depth readings.
    """
    _check_readable_file(path, "depth")
    if path.suffix.lower() == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise CommandError(
                f"depth '{path}' cannot be read as a .npy array: {first_line(error)}",
                EXIT_BAD_INPUT,
            ) from None
        if not isinstance(depth, np.ndarray):  # np.load gives an archive for .npz content
            raise CommandError(
                f"depth '{path}' holds several arrays: save one H x W array with numpy.save",
                EXIT_BAD_INPUT,
            )
    else:
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise CommandError(f"depth '{path}' cannot be decoded: {DEPTH_FORMS}", EXIT_BAD_INPUT)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim == 3:
        raise CommandError(
            f"depth '{path}' has {depth.shape[2]} channels, depth has one (is it a colour "
            f"image?): {DEPTH_FORMS}",
            EXIT_BAD_INPUT,
        )
    if depth.ndim != 2 or depth.size == 0:
        raise CommandError(
            f"depth '{path}' has shape {depth.shape}, not height x width: {DEPTH_FORMS}",
            EXIT_BAD_INPUT,
        )
    if depth.dtype == np.uint8:
        raise CommandError(
            f"depth '{path}' is 8-bit, too coarse for depth (is it a picture?): {DEPTH_FORMS}",
            EXIT_BAD_INPUT,
        )
    if depth.dtype not in (np.uint16, np.float32, np.float64):
        raise CommandError(
            f"depth '{path}' holds {depth.dtype} values: {DEPTH_FORMS}", EXIT_BAD_INPUT
        )
    return depth


def parse_camera_matrix(text: str) -> np.ndarray:
    """``fx,fy,cx,cy`` (pixels) as the 3x3 matrix K; anything but four positive numbers is an
    input error."""
    parts = [part.strip() for part in text.split(",")]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(value) and value > 0 for value in values):
        raise CommandError(
            f"--camera-matrix '{text}' is not fx,fy,cx,cy (four positive numbers, pixels of the "
            "colour image), e.g. 525,525,319.5,239.5",
            EXIT_BAD_INPUT,
        )
    fx, fy, cx, cy = values
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _check_readable_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise CommandError(
            f"{what} '{path}' {'is not a file' if path.exists() else 'does not exist'}",
            EXIT_BAD_INPUT,
        )
    if not os.access(path, os.R_OK):
        raise CommandError(f"{what} '{path}' is not readable (permissions)", EXIT_BAD_INPUT)


def first_line(error: BaseException) -> str:
    """What a one-line error message says of `error`: its first line, or its type's name when
    it has no message (library errors often carry pages of context after the first line)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


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


def target_record(target: Target3D) -> dict[str, Any]:
    """A mask's ``target`` entry in ``result.json``: where the mask is in the camera frame (m).

    A target without usable depth has no centroid or extents, only ``ok: false``, the reason and
    the counts that explain it.
    """
    entry: dict[str, Any] = {"ok": bool(target.ok), "reason": str(target.reason)}
    if target.ok:
        entry["centroid_m"] = [float(value) for value in target.centroid]
        entry["extent_min_m"] = [float(value) for value in target.extent_min]
        entry["extent_max_m"] = [float(value) for value in target.extent_max]
    ratio = float(target.valid_ratio)
    entry["num_points"] = int(target.num_points)
    # JSON has no NaN: a ratio without pixels to count (an empty mask) is written as null.
    entry["valid_ratio"] = ratio if math.isfinite(ratio) else None
    return entry


def write_result_files(
    folder: Path,
    record: dict[str, Any],
    masks: np.ndarray,
    overlay_rgb: np.ndarray | None,
    point_clouds: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None,
) -> list[Path]:
    """Write ``overlay_rgb`` (if any), one 0/255 PNG per mask of ``masks`` (N, H, W) and ``record``
    as ``result.json`` into the existing ``folder``.

    ``point_clouds``, if given, has one entry per mask: ``(points, colors_rgb)`` to write as
    ``points_<k>.ply`` (named by the mask's ``points_file``), or None for no file (``points_file``
    null). The JSON goes last, through a rename: a ``result.json`` always belongs to a finished
    run and every file it names is there. Returns the paths written, in order; raises OSError if a
    file cannot be written.
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
    if point_clouds is not None:
        entries = [dict(entry) for entry in record["masks"]]
        for index, (entry, cloud) in enumerate(zip(entries, point_clouds, strict=True)):
            entry["points_file"] = None
            if cloud is not None:
                written.append(write_ply(folder / points_file_name(index), *cloud))
                entry["points_file"] = points_file_name(index)
        record = {**record, "masks": entries}
    partial = result_path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(result_path)
    return [*written, result_path]


# The vertex of the PLY files: what point-cloud viewers (MeshLab, CloudCompare, Open3D) read.
PLY_VERTEX = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
)


def write_ply(path: Path, points: np.ndarray, colors_rgb: np.ndarray) -> Path:
    """Write ``points`` (N, 3) as a binary little-endian PLY point cloud, vertex ``k`` coloured
    ``colors_rgb[k]`` (N, 3, 0-255). The coordinates are stored as float32 as they come; the
    header's comment says what the tools give: metres in the :data:`CAMERA_FRAME`.

    Raises ValueError for arrays of the wrong shape or colours outside 0-255, OSError if the file
    cannot be written.
    """
    points = np.asarray(points)
    colors = np.asarray(colors_rgb)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    if colors.shape != points.shape:
        raise ValueError(
            f"colors_rgb must be (N, 3) like points {points.shape}, got {colors.shape}"
        )
    if colors.dtype != np.uint8:
        integral = np.issubdtype(colors.dtype, np.integer)
        if not integral or (colors.size and (colors.min() < 0 or colors.max() > 255)):
            raise ValueError(f"colors_rgb must be integers 0-255, got {colors.dtype}")
    vertices = np.empty(len(points), PLY_VERTEX)
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = colors[:, channel]
    header = (
        "ply\n"
        "format binary_little_endian 1.0\n"
        f"comment metres, {CAMERA_FRAME}\n"
        f"element vertex {len(vertices)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "end_header\n"
    )
    path = Path(path)
    with path.open("wb") as file:
        file.write(header.encode("ascii"))
        file.write(vertices.tobytes())
    return path


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    """Write RGB (H, W, 3) or grey (H, W) uint8 pixels (OpenCV wants BGR, and reports failure
    by returning False)."""
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), pixels):
        raise OSError(f"cannot write '{path}'")
    return path
