"""Reading and writing reasoning-segmentation datasets for evaluation and fine-tuning.

ROS-free and torch-free (numpy, OpenCV, json). :func:`load_dataset` reads a folder in one of two
formats, detected by :func:`detect_format`, into :class:`Sample` objects sorted by name; every
problem ends in a :class:`DatasetError` whose message is one line starting with the file at fault.

**ReasonSeg** (``"reasonseg"``), as the LISA authors publish it: a split folder (e.g.
``ReasonSeg/val``) of ``<name>.jpg`` + ``<name>.json`` pairs. The JSON holds ``text`` (a list of
instructions for the same target), ``is_sentence`` (bool) and ``shapes``, a list of
``{"label": ..., "points": [[x, y], ...]}`` polygons. The mask is rasterised exactly like
``get_mask_from_json`` in ``utils/data_processing.py`` of dvlab-research/LISA:

- the image is the one ``cv2.imread`` returns (so its EXIF orientation applies), and a JSON that
  is not UTF-8 is read as cp1252;
- shapes labelled ``flag`` (any case) are skipped entirely (deprecated annotations);
- each other shape is rasterised on its own (``cv2.polylines`` closed, thickness 1, then
  ``cv2.fillPoly``; points converted with ``np.array(..., dtype=np.int32)``, i.e. truncated toward
  zero) and counted; shapes are then drawn largest first in the order of
  ``np.argsort(areas)[::-1]``, so a smaller shape lies over a larger one whatever their labels;
- a shape whose label contains ``ignore`` (any case) is drawn with 255, every other label with 1.

One deliberate difference: the authors let OpenCV clip a point outside the image silently; here a
point outside the closed rectangle ``0 <= x <= width, 0 <= y <= height`` is an error naming the
shape and the point, unless ``load_dataset(..., allow_outside=True)`` asks for the authors'
behaviour. Inside that rectangle the masks are identical. If the folder's parent holds
``explanatory/<split>.json`` (the authors' ``[{"image": "<name>.jpg", "query": ..., "outputs":
...}]``), each sample listed there gets ``outputs`` as its ``answer``; otherwise ``answer`` is None.

**Simple** (``"simple"``), which a robot can record with :func:`write_sample`; per sample:

- ``<name>.json``: ``{"instruction": str, "answer": str | null, "is_sentence": bool}``; only
  ``instruction`` is required (``answer`` defaults to null, ``is_sentence`` to false);
- ``<name>.png`` or ``<name>.jpg`` (or ``.jpeg``, exactly one of them): the image;
- ``<name>_mask.png``: a single-channel target mask, any non-zero value is target (so 0/1 and
  0/255 masks both work), same size as the image;
- optionally ``<name>_ignore.png``: the same, non-zero pixels become 255 (ignored in evaluation)
  and win over the target mask.

A folder is "simple" when it holds at least one ``*_mask.png``, otherwise "reasonseg". In both
formats the samples are the ``*.json`` files of the folder (not its sub-folders).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from lisa_ros.file_modes import default_file_mode

__all__ = [
    "DatasetError",
    "Sample",
    "detect_format",
    "load_dataset",
    "rasterize_shapes",
    "write_atomically",
    "write_sample",
]

TARGET = 1
IGNORE = 255
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DatasetError(ValueError):
    """A dataset file that can't be read; the message is one line starting with the file."""

    def __init__(self, path: os.PathLike | str, message: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(str(message).split())
        super().__init__(f"{self.path}: {self.reason}")


@dataclass(eq=False)
class Sample:
    """One image with its instructions and ground-truth mask.

    ``mask`` is uint8 (H, W) of the image's size: 0 background, 1 target, 255 ignored in
    evaluation. ``instructions`` are alternative phrasings of the same request (ReasonSeg gives
    several; the simple format one).
    """

    name: str
    image_path: Path
    instructions: list[str]
    is_sentence: bool
    mask: np.ndarray
    answer: str | None = None

    def image(self) -> np.ndarray:
        """The image as RGB uint8 (H, W, 3), read from disk on every call."""
        return _read_image(self.image_path)


def _read_image(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(path, "cannot read the image (missing or not an image file)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_json(path: Path) -> object:
    """The JSON in ``path``; like the authors, text that isn't UTF-8 is read as cp1252."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DatasetError(path, f"cannot read: {error.strerror or error}") from error
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(path, f"not JSON ({error})") from error


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def rasterize_shapes(shapes: list[dict], height: int, width: int) -> np.ndarray:
    """The uint8 (height, width) mask of ReasonSeg ``shapes``, as ``get_mask_from_json`` draws it.

    ``shapes`` must already be validated (labels str, points [[x, y], ...]); ``flag`` shapes are
    skipped. See the module docstring for the drawing order and values.
    """
    kept = [shape for shape in shapes if shape["label"].lower() != "flag"]
    polygons = [np.array([shape["points"]], dtype=np.int32) for shape in kept]
    areas = []
    for polygon in polygons:
        alone = np.zeros((height, width), dtype=np.uint8)
        cv2.polylines(alone, polygon, True, 1, 1)
        cv2.fillPoly(alone, polygon, 1)
        areas.append(alone.sum())
    mask = np.zeros((height, width), dtype=np.uint8)
    # The authors' exact call: ties keep their (not necessarily stable) argsort order.
    for index in np.argsort(areas)[::-1].astype(np.int32):
        value = IGNORE if "ignore" in kept[index]["label"].lower() else TARGET
        cv2.polylines(mask, polygons[index], True, value, 1)
        cv2.fillPoly(mask, polygons[index], value)
    return mask


def _check_reasonseg(path: Path, anno: object) -> tuple[list[str], bool, list[dict]]:
    """``text``, ``is_sentence`` and ``shapes`` of a ReasonSeg annotation, type-checked."""
    if not isinstance(anno, dict):
        raise DatasetError(path, f"not a ReasonSeg annotation (a JSON {type(anno).__name__})")
    missing = [key for key in ("text", "is_sentence", "shapes") if key not in anno]
    if missing:
        raise DatasetError(path, f"not a ReasonSeg annotation: missing {', '.join(missing)}")
    text, is_sentence, shapes = anno["text"], anno["is_sentence"], anno["shapes"]
    if isinstance(text, str):
        raise DatasetError(path, "'text' must be a list of instructions, not a string")
    if not isinstance(text, list):
        raise DatasetError(path, f"'text' must be a list, not {type(text).__name__}")
    if not text:
        raise DatasetError(path, "'text' is empty: no instruction for this sample")
    for index, item in enumerate(text):
        if not isinstance(item, str) or not item.strip():
            raise DatasetError(path, f"'text'[{index}] must be a non-empty string, got {item!r}")
    if not isinstance(is_sentence, bool):
        raise DatasetError(path, f"'is_sentence' must be true or false, got {is_sentence!r}")
    if not isinstance(shapes, list):
        raise DatasetError(path, f"'shapes' must be a list, not {type(shapes).__name__}")
    for index, shape in enumerate(shapes):
        if not isinstance(shape, dict) or "label" not in shape or "points" not in shape:
            raise DatasetError(path, f"shape {index} must be an object with label and points")
        if not isinstance(shape["label"], str):
            raise DatasetError(path, f"shape {index}: label must be a string")
        if shape["label"].lower() == "flag":
            continue
        points = shape["points"]
        if not isinstance(points, list) or not points:
            raise DatasetError(path, f"shape {index} ({shape['label']}): points must be a list")
        for number, point in enumerate(points):
            if (
                not isinstance(point, list)
                or len(point) != 2
                or not all(_is_number(v) and math.isfinite(v) for v in point)
            ):
                raise DatasetError(
                    path,
                    f"shape {index} ({shape['label']}) point {number} is {point!r}, not [x, y]",
                )
    return text, is_sentence, shapes


def _check_inside(path: Path, shapes: list[dict], height: int, width: int) -> None:
    for index, shape in enumerate(shapes):
        if shape["label"].lower() == "flag":
            continue
        for number, (x, y) in enumerate(shape["points"]):
            if not (0 <= x <= width and 0 <= y <= height):
                raise DatasetError(
                    path,
                    f"shape {index} ({shape['label']}) point {number} [{x}, {y}] is outside "
                    f"the {width}x{height} image",
                )


def _explanations(folder: Path) -> dict[str, str]:
    """Image name -> ``outputs`` from the authors' ``../explanatory/<split>.json``, if any."""
    path = folder.parent / "explanatory" / f"{folder.name}.json"
    if not path.is_file():
        return {}
    items = _read_json(path)
    if not isinstance(items, list):
        raise DatasetError(path, "not an explanatory list ([{image, query, outputs}, ...])")
    answers = {}
    for index, item in enumerate(items):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("image"), str)
            or not isinstance(item.get("outputs"), str)
        ):
            raise DatasetError(path, f"item {index} needs string 'image' and 'outputs'")
        answers[item["image"]] = item["outputs"]
    return answers


def _load_reasonseg(folder: Path, json_paths: list[Path], allow_outside: bool) -> list[Sample]:
    answers = _explanations(folder)
    samples = []
    for json_path in json_paths:
        text, is_sentence, shapes = _check_reasonseg(json_path, _read_json(json_path))
        image_path = json_path.with_suffix(".jpg")
        if not image_path.is_file():
            raise DatasetError(json_path, f"its image {image_path.name} is missing")
        height, width = _read_image(image_path).shape[:2]
        if not allow_outside:
            _check_inside(json_path, shapes, height, width)
        samples.append(
            Sample(
                name=json_path.stem,
                image_path=image_path,
                instructions=list(text),
                is_sentence=is_sentence,
                mask=rasterize_shapes(shapes, height, width),
                answer=answers.get(image_path.name),
            )
        )
    return samples


def _read_binary(path: Path, height: int, width: int) -> np.ndarray:
    """Non-zero pixels of the single-channel PNG ``path``, which must be height x width."""
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DatasetError(path, "cannot read the mask (not an image file)")
    if array.ndim != 2:
        raise DatasetError(path, f"the mask must have one channel, it has {array.shape[2]}")
    if array.shape != (height, width):
        raise DatasetError(
            path,
            f"the mask is {array.shape[1]}x{array.shape[0]}, the image {width}x{height}",
        )
    return array != 0


def _load_simple(json_paths: list[Path]) -> list[Sample]:
    samples = []
    for json_path in json_paths:
        record = _read_json(json_path)
        if not isinstance(record, dict) or "instruction" not in record:
            raise DatasetError(json_path, "not a simple-format sample: no 'instruction' key")
        instruction = record["instruction"]
        answer = record.get("answer")
        is_sentence = record.get("is_sentence", False)
        if not isinstance(instruction, str) or not instruction.strip():
            raise DatasetError(json_path, "'instruction' must be a non-empty string")
        if answer is not None and not isinstance(answer, str):
            raise DatasetError(json_path, f"'answer' must be a string or null, got {answer!r}")
        if not isinstance(is_sentence, bool):
            raise DatasetError(json_path, "'is_sentence' must be true or false")
        stem = json_path.with_suffix("")
        images = [
            stem.with_name(stem.name + suffix)
            for suffix in IMAGE_SUFFIXES
            if stem.with_name(stem.name + suffix).is_file()
        ]
        if not images:
            raise DatasetError(json_path, f"its image {stem.name}.png or .jpg is missing")
        if len(images) > 1:
            names = " and ".join(image.name for image in images)
            raise DatasetError(json_path, f"more than one image: {names}")
        height, width = _read_image(images[0]).shape[:2]
        mask_path = stem.with_name(stem.name + "_mask.png")
        if not mask_path.is_file():
            raise DatasetError(json_path, f"its mask {mask_path.name} is missing")
        mask = _read_binary(mask_path, height, width).astype(np.uint8) * TARGET
        ignore_path = stem.with_name(stem.name + "_ignore.png")
        if ignore_path.is_file():
            mask[_read_binary(ignore_path, height, width)] = IGNORE
        samples.append(
            Sample(
                name=json_path.stem,
                image_path=images[0],
                instructions=[instruction],
                is_sentence=is_sentence,
                mask=mask,
                answer=answer,
            )
        )
    return samples


def detect_format(folder: os.PathLike | str) -> str:
    """``"simple"`` when ``folder`` holds a ``*_mask.png``, otherwise ``"reasonseg"``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(folder, "not a folder")
    return "simple" if any(folder.glob("*_mask.png")) else "reasonseg"


def load_dataset(
    folder: os.PathLike | str, *, format: str | None = None, allow_outside: bool = False
) -> list[Sample]:
    """The samples in ``folder`` sorted by name (see the module docstring for the formats).

    ``format`` ("reasonseg" or "simple") skips the detection. ``allow_outside`` lets ReasonSeg
    polygons leave the image and be clipped, as the authors' code does, instead of failing.
    Raises :class:`DatasetError` naming the file at fault.
    """
    folder = Path(folder)
    detected = detect_format(folder)
    format = format or detected
    if format not in ("reasonseg", "simple"):
        raise ValueError(f"unknown dataset format {format!r} (use 'reasonseg' or 'simple')")
    if format == "reasonseg":
        for image_path in sorted(folder.glob("*.jpg")):
            if not image_path.with_suffix(".json").is_file():
                raise DatasetError(image_path, f"no annotation {image_path.stem}.json next to it")
    json_paths = sorted(folder.glob("*.json"), key=lambda path: path.stem)
    if not json_paths:
        raise DatasetError(folder, "no samples: the folder holds no *.json")
    if format == "simple":
        return _load_simple(json_paths)
    return _load_reasonseg(folder, json_paths, allow_outside)


def write_sample(
    folder: os.PathLike | str,
    name: str,
    image_rgb: np.ndarray,
    mask: np.ndarray,
    instruction: str,
    answer: str | None = None,
    *,
    is_sentence: bool = False,
) -> Path:
    """Write one sample in the simple format and return its JSON path.

    ``mask`` is either bool (True = target) or integer in the :class:`Sample` convention (0
    background, 1 target, 255 ignored; any other value is refused). Writes ``<name>.png``,
    ``<name>_mask.png`` (0/255), ``<name>_ignore.png`` only when some pixel is ignored, and
    ``<name>.json`` last, through a rename, so a reader never sees a half-written sample.
    Rewriting a name replaces that sample.
    """
    folder = Path(folder)
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ValueError(f"sample name {name!r} must be a plain file name")
    if name.endswith(("_mask", "_ignore")):
        raise ValueError(f"sample name {name!r} must not end with _mask or _ignore")
    image_rgb = np.asarray(image_rgb)
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(
            f"image_rgb must be uint8 (H, W, 3), got {image_rgb.dtype} {image_rgb.shape}"
        )
    mask = np.asarray(mask)
    if mask.shape != image_rgb.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} differs from the image's {image_rgb.shape[:2]}")
    if mask.dtype == bool:
        target, ignore = mask, np.zeros_like(mask)
    elif np.issubdtype(mask.dtype, np.integer):
        unknown = np.setdiff1d(np.unique(mask), [0, TARGET, IGNORE])
        if unknown.size:
            raise ValueError(f"mask values must be 0, 1 or 255, found {unknown.tolist()}")
        target, ignore = mask == TARGET, mask == IGNORE
    else:
        raise ValueError(f"mask must be bool or integer, got {mask.dtype}")
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("instruction must be a non-empty string")
    if answer is not None and not isinstance(answer, str):
        raise ValueError("answer must be a string or None")

    folder.mkdir(parents=True, exist_ok=True)
    outputs = {
        folder / f"{name}.png": cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
        folder / f"{name}_mask.png": target.astype(np.uint8) * 255,
    }
    ignore_path = folder / f"{name}_ignore.png"
    if ignore.any():
        outputs[ignore_path] = ignore.astype(np.uint8) * 255
    for path, array in outputs.items():
        if not cv2.imwrite(str(path), array):
            raise OSError(f"{path}: cv2.imwrite failed")
    stale = [folder / f"{name}.jpg", folder / f"{name}.jpeg"]
    if not ignore.any():
        stale.append(ignore_path)
    for path in stale:
        path.unlink(missing_ok=True)

    record = {"instruction": instruction, "answer": answer, "is_sentence": bool(is_sentence)}
    json_path = folder / f"{name}.json"
    write_atomically(json_path, lambda file: file.write(_json_bytes(record)))
    return json_path


def _json_bytes(record: object) -> bytes:
    return (json.dumps(record, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def write_atomically(path: os.PathLike | str, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file through a hidden temporary file beside it and a rename, so a reader (or a
    run interrupted half-way) never sees half a file: `write` gets the open binary file. The file
    ends with the mode a plain write gives (umask), not mkstemp's owner-only 0600."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        os.fchmod(handle, default_file_mode())
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
