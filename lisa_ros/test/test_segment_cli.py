"""lisa-segment on the tiny fixture: the real CLI in a subprocess, and its writer on a real result.

The random fixture model babbles, so the end-to-end run checks what the CLI promises whatever the
answer is; the writer is checked on a real result with a scripted answer holding two [SEG] tokens.
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
from conftest import CHECKPOINT, FIXTURE, IMAGE

from lisa_ros.segment_cli import write_outputs
from lisa_ros.visualization import draw_overlay, mask_colors

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = "Where is the thing? Please output segmentation mask."
SCRIPTED_REPLY = [368, 432, 503, 290, 503, 402, 416, 2]  # "Sure, [SEG] and [SEG] ." + EOS
CPU_FP32 = ["--precision", "fp32", "--device", "cpu"]


def run_cli(*args: str | os.PathLike) -> subprocess.CompletedProcess:
    """Run ``lisa-segment`` as a user would, in a fresh process, offline."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")])
        ),
    }
    command = [sys.executable, "-m", "lisa_ros.segment_cli", *map(str, args)]
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
