"""lisa-segment on the tiny fixture: the real CLI in a subprocess, and its writer on a real result.

The random fixture model babbles, so the end-to-end run checks what the CLI promises whatever the
answer is; the writer is checked on a real result with a scripted answer holding two [SEG] tokens.
The 3D runs (--depth) need masks, so there the CLI runs with the scripted answer: the same CLI,
its model's choice of the next token forced (every layer still runs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from file_mode_check import files_with_other_modes

from lisa_ros.cli.files import write_ply
from lisa_ros.cli.segment import write_outputs
from lisa_ros.geometry import depth_to_meters, locate
from lisa_ros.visualization import draw_overlay, mask_colors, mask_title
from testbed import PACKAGE as PACKAGE_ROOT
from testbed.fixture_replies import REPLY_WITH_EOS
from testbed.tiny_lisa import CHECKPOINT, FIXTURE, IMAGE

INSTRUCTION = "Where is the thing? Please output segmentation mask."
SCRIPTED_REPLY = REPLY_WITH_EOS  # "Sure, [SEG] and [SEG] ." + EOS
CPU_FP32 = ["--precision", "fp32", "--device", "cpu"]


def run_cli(*args: str | os.PathLike) -> subprocess.CompletedProcess:
    """Run ``lisa-segment`` as a user would, in a fresh process, offline."""
    return _run([sys.executable, "-m", "lisa_ros.cli.segment", *map(str, args)])


# lisa-segment whose model answers SCRIPTED_REPLY: LisaModel.segment gets the ScriptedReply
# logits processor the in-process tests pass, and nothing else changes.
SCRIPTED_CLI = """
import sys

from lisa_ros.cli import segment as segment_cli
from lisa_ros.model import LisaModel
from lisa_ros.model.generation import ScriptedReply

reply = [int(token) for token in sys.argv[1].split(",")]
segment = LisaModel.segment


def scripted_segment(self, *args, **kwargs):
    return segment(self, *args, logits_processor=[ScriptedReply(reply)], **kwargs)


LisaModel.segment = scripted_segment
sys.exit(segment_cli.main(sys.argv[2:]))
"""


def run_scripted_cli(*args: str | os.PathLike) -> subprocess.CompletedProcess:
    """Run ``lisa-segment`` in a fresh process, its model answering "Sure, [SEG] and [SEG] ."."""
    reply = ",".join(map(str, SCRIPTED_REPLY))
    return _run([sys.executable, "-c", SCRIPTED_CLI, reply, *map(str, args)])


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")])
        ),
    }
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def read_png(path: Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    pixels = cv2.imread(str(path), flags)
    assert pixels is not None, f"{path} is not a readable image"
    return pixels


def rgb_image() -> np.ndarray:
    return cv2.cvtColor(read_png(IMAGE, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --- end to end --------------------------------------------------------------------------------


def test_cli_answers_and_writes_every_output(tmp_path):
    output = tmp_path / "out"
    completed = run_cli(
        "--model",
        CHECKPOINT,
        "--image",
        IMAGE,
        INSTRUCTION,
        "--output",
        output,
        "--max-new-tokens",
        "8",
        *CPU_FP32,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    assert "Loading LISA" in completed.stderr  # progress while loading
    assert "Generating" in completed.stderr

    record = json.loads((output / "result.json").read_text(encoding="utf-8"))
    assert completed.stdout.rstrip("\n") == record["text"]
    assert 1 <= len(record["token_ids"]) <= 8
    assert all(isinstance(token, int) for token in record["token_ids"])
    assert record["instruction"] == INSTRUCTION
    assert record["model"] == str(CHECKPOINT)
    assert record["precision"] == "fp32" and record["device"] == "cpu"
    assert record["image_size"] == {"width": 420, "height": 300}
    assert {"clip", "sam_encoder", "prefill", "decode", "mask_decoder", "total"} <= set(
        record["timings_s"]
    )
    assert record["timings_s"]["total"] > 0

    image = rgb_image()
    assert len(record["masks"]) == record["text"].count("[SEG]")
    overlay = cv2.cvtColor(
        read_png(output / record["overlay"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )
    assert overlay.shape == image.shape
    for mask in record["masks"]:
        assert read_png(output / mask["file"]).shape == image.shape[:2]
    assert files_with_other_modes(output) == {}


def test_cli_help_lists_the_options():
    completed = run_cli("--help")
    assert completed.returncode == 0
    for option in [
        "--model",
        "--image",
        "--output",
        "--vision-tower",
        "--precision",
        "--quantization",
        "--device",
        "--max-new-tokens",
        "--adapter",
        "--depth",
        "--camera-matrix",
        "--depth-unit",
    ]:
        assert option in completed.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "lisa-segment"
    if not script.exists():
        pytest.skip("lisa_ros is not pip-installed in this environment (make setup installs it)")
    completed = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and "--model" in completed.stdout


# --- the writer on a real result with [SEG] tokens ------------------------------------------------


@pytest.fixture(scope="module")
def scripted_result():
    from lisa_ros.model import load_model
    from lisa_ros.model.generation import ScriptedReply

    lisa = load_model(CHECKPOINT, precision="fp32", device="cpu")
    result = lisa.segment(
        rgb_image(), INSTRUCTION, logits_processor=[ScriptedReply(SCRIPTED_REPLY)]
    )
    assert len(result.mask_logits) == 2  # what the rest of this module relies on
    return result


def test_write_outputs_writes_overlay_masks_and_json(scripted_result, tmp_path):
    image = rgb_image()
    run_info = {"model": "tiny", "instruction": INSTRUCTION}
    written = write_outputs(scripted_result, image, tmp_path / "new" / "folder", run_info)
    folder = tmp_path / "new" / "folder"

    assert [path.name for path in written] == [
        "overlay.png",
        "mask_0.png",
        "mask_1.png",
        "result.json",
    ]
    overlay = cv2.cvtColor(read_png(folder / "overlay.png", cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(
        overlay, draw_overlay(image, scripted_result.masks, scripted_result.text)
    )

    for index, expected in enumerate(scripted_result.masks):
        mask = read_png(folder / f"mask_{index}.png")
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, expected)

    record = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    assert record["model"] == "tiny" and record["instruction"] == INSTRUCTION
    assert record["text"] == scripted_result.text == "Sure, [SEG] and [SEG] ."
    assert record["token_ids"] == SCRIPTED_REPLY
    assert record["image_size"] == {"width": 420, "height": 300}
    assert record["overlay"] == "overlay.png"
    boxes, colors = scripted_result.boxes(), mask_colors(2)
    for index, mask in enumerate(record["masks"]):
        assert mask["file"] == f"mask_{index}.png"
        assert mask["phrase"] == scripted_result.phrases[index]
        assert mask["text_offset"] == scripted_result.text.index("[SEG]", mask["text_offset"])
        assert mask["bbox_xywh"] == boxes[index].tolist()
        assert mask["area_px"] == int(scripted_result.masks[index].sum()) > 0
        assert mask["score"] == pytest.approx(float(scripted_result.scores[index]))
        assert mask["overlay_color_rgb"] == colors[index].tolist()
    assert [mask["phrase"] for mask in record["masks"]] == ["Sure", "and"]
    assert set(record["timings_s"]) >= {
        "clip",
        "sam_encoder",
        "prefill",
        "decode",
        "mask_decoder",
        "total",
    }
    assert not list(folder.glob("*.partial"))


def test_a_failed_rewrite_leaves_no_result_json_of_the_earlier_run(scripted_result, tmp_path):
    write_outputs(scripted_result, rgb_image(), tmp_path)
    (tmp_path / "mask_1.png").unlink()
    (tmp_path / "mask_1.png").mkdir()  # the second run cannot write its second mask
    with pytest.raises(OSError):
        write_outputs(scripted_result, rgb_image(), tmp_path)
    # The overlay and mask_0.png are the second run's now: no result.json may claim them.
    assert not (tmp_path / "result.json").exists()


def test_write_outputs_reports_an_unwritable_folder(scripted_result, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        write_outputs(scripted_result, rgb_image(), blocker / "out")


# --- bad input: one line, non-zero exit, no traceback -------------------------------------------


def assert_one_line_error(completed: subprocess.CompletedProcess, *fragments: str) -> str:
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""
    errors = [
        line for line in completed.stderr.splitlines() if line.startswith("lisa-segment: error:")
    ]
    assert len(errors) == 1, completed.stderr
    assert completed.stderr.rstrip("\n").endswith(errors[0])  # the error is the last thing said
    for fragment in fragments:
        assert fragment in errors[0]
    return errors[0]


def test_missing_image_file(tmp_path):
    completed = run_cli(
        "--model", CHECKPOINT, "--image", tmp_path / "nope.png", INSTRUCTION, *CPU_FP32
    )
    assert_one_line_error(completed, "nope.png", "does not exist")
    assert "Loading LISA" not in completed.stderr  # checked before spending time on the model


def test_image_that_is_not_an_image():
    completed = run_cli(
        "--model", CHECKPOINT, "--image", FIXTURE / "README.md", INSTRUCTION, *CPU_FP32
    )
    assert_one_line_error(completed, "README.md", "cannot be decoded")


def test_image_that_is_a_folder():
    completed = run_cli("--model", CHECKPOINT, "--image", FIXTURE, INSTRUCTION, *CPU_FP32)
    assert_one_line_error(completed, "not a file")


@pytest.mark.parametrize("instruction", ["", "   "], ids=["empty", "blank"])
def test_empty_instruction(instruction):
    completed = run_cli("--model", CHECKPOINT, "--image", IMAGE, instruction, *CPU_FP32)
    assert_one_line_error(completed, "instruction is empty")


def test_an_instruction_longer_than_the_context_says_so_without_the_tokenizer_warning():
    # The fixture's context is 512 tokens: about 700 here. transformers would add "Token indices
    # sequence length is longer than the specified maximum ... indexing errors" on stderr.
    completed = run_cli("--model", CHECKPOINT, "--image", IMAGE, "where is it? " * 175, *CPU_FP32)
    assert_one_line_error(completed, "the instruction is too long", "shorten it")
    assert "Token indices" not in completed.stderr and "indexing errors" not in completed.stderr


def test_missing_model_folder(tmp_path):
    completed = run_cli(
        "--model", tmp_path / "no_such_model", "--image", IMAGE, INSTRUCTION, *CPU_FP32
    )
    assert_one_line_error(completed, "no_such_model")


def test_folder_that_is_not_a_lisa_checkpoint(tmp_path):
    shutil.copy(IMAGE, tmp_path / "image.png")  # a folder with something in it, but no checkpoint
    completed = run_cli("--model", tmp_path, "--image", IMAGE, INSTRUCTION, *CPU_FP32)
    assert_one_line_error(completed, "not a LISA checkpoint")


def test_settings_the_model_cannot_run_with():
    completed = run_cli(
        "--model", CHECKPOINT, "--image", IMAGE, INSTRUCTION, "--quantization", "nf4", *CPU_FP32
    )
    assert_one_line_error(completed, "nf4", "bf16")


def test_missing_adapter(tmp_path):
    completed = run_cli(
        "--model",
        CHECKPOINT,
        "--image",
        IMAGE,
        INSTRUCTION,
        "--adapter",
        tmp_path / "no_lora",
        *CPU_FP32,
    )
    assert_one_line_error(completed, "no_lora")


def test_output_that_is_a_file(tmp_path):
    blocker = tmp_path / "result"
    blocker.write_text("keep me")
    completed = run_cli(
        "--model", CHECKPOINT, "--image", IMAGE, INSTRUCTION, "--output", blocker, *CPU_FP32
    )
    assert_one_line_error(completed, "cannot be created")
    assert blocker.read_text() == "keep me"


# --- 3D targets: --depth and --camera-matrix --------------------------------------------------

# The fixture image is 420 x 300; a camera with a 70 degree horizontal field of view.
FX, FY, CX, CY = 300.0, 300.0, 209.5, 149.5
CAMERA_MATRIX = np.array([[FX, 0.0, CX], [0.0, FY, CY], [0.0, 0.0, 1.0]])
K_ARGUMENT = f"{FX},{FY},{CX},{CY}"
FRAME = "camera optical frame (x right, y down, z forward)"


def box_before_wall_mm(height: int, width: int) -> np.ndarray:
    """uint16 millimetres: a wall at 1.5 m, a box at 0.7 m in the middle, no reading (0) in the
    top-left corner; the same scene at any resolution."""
    rows, cols = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    depth = np.full((height, width), 1500, np.uint16)
    depth[(rows > 0.2) & (rows < 0.8) & (cols > 0.25) & (cols < 0.75)] = 700
    depth[(rows < 0.15) & (cols < 0.15)] = 0
    return depth


def depth_arguments(depth_path: Path, *extra: str) -> list[str | os.PathLike]:
    return [
        "--model",
        CHECKPOINT,
        "--image",
        IMAGE,
        INSTRUCTION,
        "--depth",
        depth_path,
        "--camera-matrix",
        K_ARGUMENT,
        *extra,
        *CPU_FP32,
    ]


def read_ply(path: Path) -> np.ndarray:
    """The vertices of a binary little-endian PLY file, as a structured array named like its
    properties; read here from the format's definition, not with the writer's code."""
    data = path.read_bytes()
    header, separator, body = data.partition(b"end_header\n")
    assert separator, f"{path} has no end_header"
    lines = header.decode("ascii").splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    elements = [line.split() for line in lines if line.startswith("element ")]
    assert [element[:2] for element in elements] == [["element", "vertex"]]
    types = {"float": "<f4", "uchar": "u1"}
    properties = [line.split()[1:] for line in lines if line.startswith("property ")]
    dtype = np.dtype([(name, types[kind]) for kind, name in properties])
    count = int(elements[0][2])
    assert len(body) == count * dtype.itemsize
    return np.frombuffer(body, dtype)


def check_targets(folder: Path, record: dict, depth_m: np.ndarray, stdout: str) -> list[bool]:
    """Each mask's target in result.json is geometry.locate's on the mask file and the depth, its
    PLY file holds the target's points coloured from the image, and the answer printed lists it.
    Returns which masks had a target."""
    image = rgb_image()
    lines = stdout.rstrip("\n").split("\n")
    assert lines[0] == record["text"]
    assert len(lines) == 1 + len(record["masks"])
    found = []
    for position, entry in enumerate(record["masks"]):
        mask = read_png(folder / entry["file"]) == 255
        expected = locate(mask, depth_m, CAMERA_MATRIX)
        target = entry["target"]
        assert target["ok"] is expected.ok
        assert target["reason"] == expected.reason
        assert target["num_points"] == expected.num_points
        assert target["valid_ratio"] == pytest.approx(expected.valid_ratio, abs=1e-12)
        assert lines[1 + position].startswith(f"{mask_title(position, entry['phrase'])}: ")
        ply = folder / f"points_{position}.ply"
        found.append(expected.ok)
        if not expected.ok:
            assert "centroid_m" not in target and entry["points_file"] is None
            assert not ply.exists()
            assert "no 3D target" in lines[1 + position]
            continue
        assert target["centroid_m"] == expected.centroid.tolist()
        assert target["extent_min_m"] == expected.extent_min.tolist()
        assert target["extent_max_m"] == expected.extent_max.tolist()
        x, y, z = expected.centroid
        assert f"x={x:+.3f} y={y:+.3f} z={z:.3f} m" in lines[1 + position]
        assert entry["points_file"] == ply.name
        vertices = read_ply(ply)
        assert len(vertices) == target["num_points"] == len(expected.points) > 0
        np.testing.assert_array_equal(
            np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1), expected.points
        )
        rows, cols = expected.pixels[:, 0], expected.pixels[:, 1]
        assert mask[rows, cols].all()
        np.testing.assert_array_equal(
            np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1),
            image[rows, cols],
        )
    return found


def test_write_ply_reads_back(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 3))
    colors = rng.integers(0, 256, size=(500, 3))  # int64: any integer type 0-255 will do
    path = write_ply(tmp_path / "cloud.ply", points, colors)

    assert path == tmp_path / "cloud.ply"
    assert f"comment metres, {FRAME}\n".encode() in path.read_bytes()
    vertices = read_ply(path)
    assert vertices.dtype.names == ("x", "y", "z", "red", "green", "blue")
    np.testing.assert_array_equal(
        np.stack([vertices[axis] for axis in "xyz"], axis=1), points.astype(np.float32)
    )
    np.testing.assert_array_equal(
        np.stack([vertices[channel] for channel in ("red", "green", "blue")], axis=1), colors
    )
    empty = write_ply(tmp_path / "empty.ply", np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    assert len(read_ply(empty)) == 0


@pytest.mark.parametrize(
    "points, colors",
    [
        (np.zeros((4, 2)), np.zeros((4, 3), np.uint8)),
        (np.zeros((4, 3)), np.zeros((3, 3), np.uint8)),
        (np.zeros((4, 3)), np.full((4, 3), 256)),
        (np.zeros((4, 3)), np.full((4, 3), 0.5)),
    ],
    ids=["points-not-xyz", "colors-count", "colors-over-255", "colors-float"],
)
def test_write_ply_refuses_arrays_it_cannot_store(tmp_path, points, colors):
    with pytest.raises(ValueError):
        write_ply(tmp_path / "cloud.ply", points, colors)


def test_cli_places_each_mask_in_3d(tmp_path):
    depth_mm = box_before_wall_mm(300, 420)
    depth_path = tmp_path / "depth.png"
    assert cv2.imwrite(str(depth_path), depth_mm)
    output = tmp_path / "out"
    completed = run_scripted_cli(*depth_arguments(depth_path, "--output", output))
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr

    record = json.loads((output / "result.json").read_text(encoding="utf-8"))
    assert record["text"] == "Sure, [SEG] and [SEG] ."
    assert record["depth"] == {
        "file": str(depth_path),
        "unit_m": 0.001,
        "size": {"width": 420, "height": 300},
        "camera_matrix": CAMERA_MATRIX.tolist(),
        "frame": FRAME,
    }
    found = check_targets(output, record, depth_to_meters(depth_mm, 0.001), completed.stdout)
    assert any(found), record["masks"]
    ply_files = sorted(path.name for path in output.glob("points_*.ply"))
    assert ply_files == [f"points_{k}.ply" for k, ok in enumerate(found) if ok]


def test_cli_takes_half_resolution_depth_and_a_unit(tmp_path):
    # A wall at 1.0 m stored in centimetres, at half the image's resolution.
    depth_cm = np.full((150, 210), 100, np.uint16)
    depth_path = tmp_path / "depth_half.png"
    assert cv2.imwrite(str(depth_path), depth_cm)
    output = tmp_path / "out"
    completed = run_scripted_cli(
        *depth_arguments(depth_path, "--depth-unit", "0.01", "--output", output)
    )
    assert completed.returncode == 0, completed.stderr

    record = json.loads((output / "result.json").read_text(encoding="utf-8"))
    assert record["depth"]["unit_m"] == 0.01
    assert record["depth"]["size"] == {"width": 210, "height": 150}
    found = check_targets(output, record, depth_to_meters(depth_cm, 0.01), completed.stdout)
    assert any(found)
    for position, ok in enumerate(found):
        if ok:  # every point is on the wall, where the camera sees its pixel
            vertices = read_ply(output / f"points_{position}.ply")
            np.testing.assert_allclose(vertices["z"], 1.0, rtol=1e-6)
            assert record["masks"][position]["target"]["centroid_m"][2] == pytest.approx(1.0)


def test_cli_takes_npy_metres_with_gaps(tmp_path):
    depth = box_before_wall_mm(300, 420).astype(np.float32) / 1000
    depth[depth == 0] = np.nan
    depth[:, :20] = 0.0  # no reading, as some drivers write it
    depth[:, -20:] = np.inf
    depth[-20:, :] = -1.0
    depth_path = tmp_path / "depth.npy"
    np.save(depth_path, depth)
    output = tmp_path / "out"
    completed = run_scripted_cli(*depth_arguments(depth_path, "--output", output))
    assert completed.returncode == 0, completed.stderr

    record = json.loads((output / "result.json").read_text(encoding="utf-8"))
    assert record["depth"]["unit_m"] == 1.0
    assert any(check_targets(output, record, depth_to_meters(depth), completed.stdout))


def test_masks_without_usable_depth_have_no_target(tmp_path):
    depth_path = tmp_path / "depth.npy"
    np.save(depth_path, np.full((300, 420), np.nan, np.float32))
    output = tmp_path / "out"
    completed = run_scripted_cli(*depth_arguments(depth_path, "--output", output))
    assert completed.returncode == 0, completed.stderr  # no target is an answer, not a failure

    record = json.loads((output / "result.json").read_text(encoding="utf-8"))
    assert not any(check_targets(output, record, np.full((300, 420), np.nan), completed.stdout))
    for entry in record["masks"]:
        assert entry["target"]["ok"] is False and entry["target"]["reason"]
    assert not list(output.glob("*.ply"))
    assert "no valid reading" in completed.stderr


def test_without_output_the_answer_lists_the_targets(tmp_path):
    depth_path = tmp_path / "depth.png"
    assert cv2.imwrite(str(depth_path), box_before_wall_mm(300, 420))
    completed = run_scripted_cli(*depth_arguments(depth_path))
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.rstrip("\n").split("\n")
    assert lines[0] == "Sure, [SEG] and [SEG] ."
    # named as the overlay labels them: "Sure" and "and" are LISA's fixed words, no name
    assert [line.split(":")[0] for line in lines[1:]] == ["mask 0", "mask 1"]


# --- 3D targets: refused before the model loads ----------------------------------------------


def write_depth_file(folder: Path, kind: str) -> Path:
    """A depth file that is wrong in one way."""
    if kind == "colour":
        path = folder / "colour.png"
        shutil.copy(IMAGE, path)
    elif kind == "8-bit":
        path = folder / "grey8.png"
        cv2.imwrite(str(path), np.full((300, 420), 100, np.uint8))
    elif kind == "wrong-size":
        path = folder / "depth_200x150.png"
        cv2.imwrite(str(path), np.full((150, 200), 1000, np.uint16))
    elif kind == "not-npy":
        path = folder / "depth.npy"
        path.write_text("not an array")
    elif kind == "npy-3d":
        path = folder / "depth3.npy"
        np.save(path, np.ones((300, 420, 3), np.float32))
    elif kind == "npy-int":
        path = folder / "depth_int.npy"
        np.save(path, np.ones((300, 420), np.int64))
    elif kind == "npy-float16":
        path = folder / "depth_half_float.npy"
        np.save(path, np.ones((300, 420), np.float16))
    elif kind == "not-decodable":
        path = folder / "depth.png"
        path.write_text("not a PNG")
    return path


@pytest.mark.parametrize(
    "kind, fragments",
    [
        ("colour", ["colour.png", "3 channels"]),
        ("8-bit", ["grey8.png", "8-bit"]),
        ("wrong-size", ["200x150", "420x300", "integer fraction"]),
        ("not-npy", ["depth.npy", "cannot be read"]),
        ("npy-3d", ["depth3.npy", "3 channels"]),
        ("npy-int", ["depth_int.npy", "int64"]),
        ("npy-float16", ["depth_half_float.npy", "float16"]),
        ("not-decodable", ["depth.png", "cannot be decoded"]),
    ],
)
def test_depth_the_cli_cannot_use(tmp_path, kind, fragments):
    completed = run_cli(*depth_arguments(write_depth_file(tmp_path, kind)))
    assert completed.returncode == 2
    assert_one_line_error(completed, *fragments)
    assert "Loading LISA" not in completed.stderr


def test_missing_depth_file(tmp_path):
    completed = run_cli(*depth_arguments(tmp_path / "no_depth.png"))
    assert completed.returncode == 2
    assert_one_line_error(completed, "no_depth.png", "does not exist")
    assert "Loading LISA" not in completed.stderr


@pytest.mark.parametrize(
    "camera_matrix",
    ["525,525,319.5", "525,525,319.5,239.5,1", "a,b,c,d", "0,525,319.5,239.5", "525,nan,1,1", ""],
)
def test_malformed_camera_matrix(tmp_path, camera_matrix):
    depth_path = tmp_path / "depth.png"
    cv2.imwrite(str(depth_path), box_before_wall_mm(300, 420))
    arguments = depth_arguments(depth_path)
    arguments[arguments.index("--camera-matrix") + 1] = camera_matrix
    completed = run_cli(*arguments)
    assert completed.returncode == 2
    assert_one_line_error(completed, "--camera-matrix", "fx,fy,cx,cy")
    assert "Loading LISA" not in completed.stderr


def test_negative_camera_matrix(tmp_path):
    depth_path = tmp_path / "depth.png"
    cv2.imwrite(str(depth_path), box_before_wall_mm(300, 420))
    arguments = depth_arguments(depth_path)
    # "--camera-matrix -300,..." would read as an option: a negative value goes after "=".
    arguments[arguments.index("--camera-matrix") : arguments.index(K_ARGUMENT) + 1] = [
        "--camera-matrix=-300,300,209.5,149.5"
    ]
    completed = run_cli(*arguments)
    assert completed.returncode == 2
    assert_one_line_error(completed, "--camera-matrix", "four positive numbers")


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        (["--depth", "depth.png"], "--depth needs --camera-matrix"),
        (["--camera-matrix", K_ARGUMENT], "--camera-matrix needs --depth"),
        (["--depth-unit", "0.001"], "--depth-unit needs --depth"),
    ],
    ids=["depth-alone", "camera-matrix-alone", "unit-alone"],
)
def test_depth_options_that_need_each_other(tmp_path, arguments, fragment):
    depth_path = tmp_path / "depth.png"
    cv2.imwrite(str(depth_path), box_before_wall_mm(300, 420))
    arguments = [depth_path if argument == "depth.png" else argument for argument in arguments]
    completed = run_cli("--model", CHECKPOINT, "--image", IMAGE, INSTRUCTION, *arguments, *CPU_FP32)
    assert completed.returncode == 2
    assert_one_line_error(completed, fragment)
    assert "Loading LISA" not in completed.stderr


@pytest.mark.parametrize("unit", ["0", "-0.001", "mm"])
def test_depth_unit_that_is_not_a_positive_number(tmp_path, unit):
    depth_path = tmp_path / "depth.png"
    cv2.imwrite(str(depth_path), box_before_wall_mm(300, 420))
    completed = run_cli(*depth_arguments(depth_path), f"--depth-unit={unit}")
    assert completed.returncode == 2
    assert_one_line_error(completed, "--depth-unit")
