"""lisa-finetune on the tiny fixture: it learns, the adapter reloads as exactly the trained model,
runs resume, bad input stops early, and two processes train as one (DDP on 127.0.0.1)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import test_eval_cli
import torch
from file_mode_check import files_with_other_modes
from safetensors.torch import load_file
from squares import ANSWER, INSTRUCTION, settings, write_squares

from lisa_ros.cli import finetune as finetune_cli
from lisa_ros.data import load_dataset
from lisa_ros.evaluation import intersection_and_union, mask_iou
from lisa_ros.model import load_model
from lisa_ros.model.adapter import LISA_MODULES_FILE, PEFT_WEIGHTS_FILE
from lisa_ros.model.teacher_forcing import forced_answer
from lisa_ros.training.trainer import (
    TRAIN_LOG_FILE,
    batch_indices,
    finetune,
    lr_factor,
)
from testbed import PACKAGE as PACKAGE_ROOT
from testbed.tiny_lisa import CHECKPOINT, CLIP


def _env(**extra: str) -> dict[str, str]:
    """A subprocess's environment: offline, one thread, this package importable."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")])
        ),
        **extra,
    }


@pytest.fixture(autouse=True)
def _logging_restored():
    """The CLI runs in this process here: give later test modules their logging back."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    names = ("lisa_ros", finetune_cli.PROG)
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def iou_of_answer(model, sample) -> float:
    result = model.segment(sample.image(), sample.instructions[0], max_new_tokens=16)
    predicted = result.masks.any(0) if len(result.masks) else np.zeros(sample.mask.shape, bool)
    return mask_iou(*intersection_and_union(predicted, sample.mask))


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> Path:
    return write_squares(tmp_path_factory.mktemp("squares"), 4)


@pytest.fixture(scope="module")
def trained(squares, tmp_path_factory):
    return finetune(settings(squares, tmp_path_factory.mktemp("run") / "adapter"))


# --- it learns --------------------------------------------------------------------------------


def test_training_drives_the_loss_down(trained):
    log = [json.loads(line) for line in (trained.adapter / TRAIN_LOG_FILE).read_text().splitlines()]
    steps = [entry for entry in log if entry["kind"] == "train"]
    assert [entry["step"] for entry in steps] == list(range(1, 61))
    assert steps[-1]["loss"] < 0.1 * steps[0]["loss"]
    assert steps[-1]["bce"] < steps[0]["bce"] and steps[-1]["dice"] < steps[0]["dice"]


def test_the_reloaded_adapter_segments_the_squares_through_segment(trained, squares):
    """From near zero to above 0.9: generation says [SEG] and SAM's mask covers the square."""
    base = load_model(CHECKPOINT, vision_tower=CLIP, precision="fp32", device="cpu")
    tuned = load_model(
        CHECKPOINT, vision_tower=CLIP, precision="fp32", device="cpu", adapter=trained.adapter
    )
    for sample in load_dataset(squares):
        assert iou_of_answer(base, sample) < 0.1
        assert iou_of_answer(tuned, sample) > 0.9
        assert "[SEG]" in tuned.segment(sample.image(), INSTRUCTION, max_new_tokens=16).text


def test_lisa_segment_loads_the_adapter(trained, squares, tmp_path):
    """The CLI a person tries first: the same answer and mask through `lisa-segment --adapter`."""
    sample = load_dataset(squares)[0]
    output = tmp_path / "segmented"
    command = [
        sys.executable, "-m", "lisa_ros.cli.segment", INSTRUCTION,
        "--model", str(CHECKPOINT), "--vision-tower", str(CLIP), "--precision", "fp32",
        "--device", "cpu", "--adapter", str(trained.adapter), "--image", str(sample.image_path),
        "--output", str(output), "--max-new-tokens", "16", "--quiet",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert completed.returncode == 0, completed.stderr
    result = json.loads((output / "result.json").read_text())
    assert "[SEG]" in result["text"] and len(result["masks"]) == 1
    mask = cv2.imread(str(output / "mask_0.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert mask_iou(*intersection_and_union(mask, sample.mask)) > 0.9


def test_the_adapter_is_exactly_the_trained_model(trained, squares):
    reloaded = load_model(
        CHECKPOINT, vision_tower=CLIP, precision="fp32", device="cpu", adapter=trained.adapter
    )
    trained.model.net.llm.eval()
    for sample in load_dataset(squares)[:2]:
        image = sample.image()
        live = forced_answer(trained.model, image, INSTRUCTION, ANSWER)
        loaded = forced_answer(reloaded, image, INSTRUCTION, ANSWER)
        np.testing.assert_allclose(loaded.prompts, live.prompts, atol=1e-4)
        np.testing.assert_allclose(loaded.mask_logits, live.mask_logits, atol=1e-3)


def test_the_adapter_folder_holds_peft_files_lisa_modules_and_how_it_was_made(trained):
    assert trained.evaluations == []  # no eval data: nothing scored
    info = json.loads((trained.adapter / "lisa_adapter.json").read_text())
    assert info["steps"] == 60 and info["base_model"] == str(CHECKPOINT)
    assert {PEFT_WEIGHTS_FILE, LISA_MODULES_FILE, "adapter_config.json"} <= {
        path.name for path in trained.adapter.iterdir()
    }
    # safetensors alone would leave the weights owner-only: the node may run as another user
    assert files_with_other_modes(trained.adapter) == {}


# --- the loop's parts ---------------------------------------------------------------------


def test_learning_rate_warms_up_then_decays_to_zero():
    assert [lr_factor(step, 4, 12) for step in (0, 1, 3)] == [0.25, 0.5, 1.0]
    assert lr_factor(4, 4, 12) == 1.0
    assert lr_factor(8, 4, 12) == 0.5
    assert lr_factor(12, 4, 12) == 0.0


def test_batches_cover_each_epoch_once_and_split_between_processes():
    count, batch, world = 5, 2, 2
    seen = [
        batch_indices(step, batch, rank, world, count, seed=3)
        for step in range(5)
        for rank in range(world)
    ]
    flat = [pair for share in seen for pair in share]  # 20 positions = 4 epochs of 5
    for epoch in range(4):
        assert sorted(index for e, index in flat if e == epoch) == list(range(count))
    one_process = [pair for step in range(10) for pair in batch_indices(step, 2, 0, 1, 5, 3)]
    assert flat == one_process  # two processes take the one-process order between them


def test_resume_continues_exactly(squares, tmp_path):
    straight = finetune(
        settings(squares, tmp_path / "straight", steps=4, save_every=2, warmup_steps=1)
    )
    resumed_output = tmp_path / "resumed"
    resumed_output.mkdir()
    (straight.adapter / "checkpoint-2").rename(resumed_output / "checkpoint-2")
    resumed = finetune(
        settings(squares, resumed_output, steps=4, save_every=2, warmup_steps=1, resume="latest")
    )
    assert resumed.steps == 4
    assert [loss["loss"] for loss in resumed.losses] == pytest.approx(
        [loss["loss"] for loss in straight.losses], rel=1e-5
    )
    for name in (PEFT_WEIGHTS_FILE, LISA_MODULES_FILE):
        expected, actual = load_file(straight.adapter / name), load_file(resumed_output / name)
        assert expected.keys() == actual.keys()
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=1e-5)


# --- the command line ---------------------------------------------------------------------


def cli(*args: str | os.PathLike, capsys) -> tuple[int, str, str]:
    status = finetune_cli.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def model_args(data: Path, output: Path) -> list[str | os.PathLike]:
    return [
        "--model", CHECKPOINT, "--vision-tower", CLIP, "--precision", "fp32", "--device", "cpu",
        "--data", data, "--output", output,
    ]  # fmt: skip


def test_cli_trains_evaluates_and_summarises(squares, tmp_path, capsys):
    output = tmp_path / "adapter"
    # the default precision, bf16 (autocast on the CPU here), training and evaluating
    args = [arg for arg in model_args(squares, output) if arg not in ("--precision", "fp32")]
    status, out, err = cli(
        *args,
        "--eval-data", squares, "--steps", "3", "--batch-size", "1", "--grad-accumulation", "2",
        "--warmup-steps", "1", "--save-every", "2", "--questions", "as-is",
        capsys=capsys,
    )  # fmt: skip
    assert status == 0, err
    info = json.loads((output / "lisa_adapter.json").read_text())
    evaluation = info["evaluations"][-1]
    assert evaluation["step"] == 3 and evaluation["samples"] == 4
    assert out.startswith(f"adapter {output} after 3 steps: loss ")
    assert f"eval gIoU {evaluation['giou']:.4f} cIoU {evaluation['ciou']:.4f}" in out
    assert [path.name for path in output.glob("checkpoint-*")] == ["checkpoint-2"]
    # an earlier run in the folder is not overwritten by a new one
    status, _, err = cli(*model_args(squares, output), "--quiet", capsys=capsys)
    assert status == 2 and "--resume latest" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--precision", "fp16"], "cannot train: use bf16"),
        (["--quantization", "nf4"], "QLoRA"),
        (["--adapter", "somewhere"], "--init-adapter"),
        (["--resume"], "holds no checkpoint"),
        (["--device", "cuda:1"], "CUDA_VISIBLE_DEVICES"),
    ],
)
def test_cli_refuses_what_it_cannot_train(squares, tmp_path, capsys, extra, message):
    status, out, err = cli(*model_args(squares, tmp_path / "a"), "--quiet", *extra, capsys=capsys)
    assert status == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("spoil", "fragment"),
    [
        (test_eval_cli._missing_image, "its image b_cup.jpg is missing"),
        (test_eval_cli._polygon_outside, "outside"),
        (test_eval_cli._empty_text, "text"),
        (test_eval_cli._not_reasonseg, "ReasonSeg"),
    ],
)
def test_a_bad_dataset_ends_in_one_line_naming_the_file(tmp_path, capsys, spoil, fragment):
    """As lisa-eval: the file at fault and why, before any model loads, for the training and
    the held-out folder alike."""
    for option in ("--data", "--eval-data"):
        broken = test_eval_cli._copy_fixture(tmp_path / option.strip("-"))
        path = spoil(broken)
        data = broken if option == "--data" else test_eval_cli.REASONSEG
        args = model_args(data, tmp_path / f"out{option}")
        if option == "--eval-data":
            args += ["--eval-data", broken]
        status, _, err = cli(*args, "--quiet", capsys=capsys)
        assert status == 2
        (line,) = err.strip().splitlines()
        assert line.startswith(f"lisa-finetune: error: {path}: ") and fragment in line


# --- beyond one process -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_train_as_one(squares, tmp_path):
    """accelerate launch, 2 CPU processes with 1 example each = 1 process with 2 (no dropout): DDP
    averages the same gradients, so the losses and the adapters match. (Adam turns summation-
    order noise in near-zero gradients into up to ~1e-4 of weight; a process that trained
    alone on its half would be off by about the learning rate, 5e-3.)"""
    common = ["--steps", "3", "--grad-accumulation", "1", "--warmup-steps", "1", "--lr", "5e-3",
              "--lora-dropout", "0", "--questions", "as-is", "--save-every", "0",
              "--no-gradient-checkpointing", "--quiet"]  # fmt: skip
    env = _env(GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1")
    two = tmp_path / "two"
    # accelerate's multi-GPU launcher is torchrun; on machines without a GPU each process takes
    # the CPU it is given (--device cpu), and DDP syncs over gloo
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()),
        "-m", "lisa_ros.cli.finetune", *map(str, model_args(squares, two)),
        "--batch-size", "1", *common,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("adapter ") == 1  # rank 0 alone reports
    assert json.loads((two / "lisa_adapter.json").read_text())["processes"] == 2
    one = tmp_path / "one"
    command = [
        sys.executable, "-m", "lisa_ros.cli.finetune", *map(str, model_args(squares, one)),
        "--batch-size", "2", *common,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert train_losses(two) == pytest.approx(train_losses(one), rel=1e-4)
    for name in (PEFT_WEIGHTS_FILE, LISA_MODULES_FILE):
        expected, actual = load_file(one / name), load_file(two / name)
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], atol=5e-4, rtol=0)


def train_losses(output: Path) -> list[float]:
    log = [json.loads(line) for line in (output / TRAIN_LOG_FILE).read_text().splitlines()]
    return [entry["loss"] for entry in log if entry["kind"] == "train"]


def test_help_and_option_checks_need_no_torch():
    """`lisa-finetune --help` and its refusals answer at once: the model stack loads later."""
    code = (
        "import sys, lisa_ros.cli.finetune as cli; cli.build_parser(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
