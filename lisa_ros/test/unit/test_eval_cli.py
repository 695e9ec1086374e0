"""lisa-eval on the tiny fixture: the real CLI in subprocesses (one process, and two under torchrun)
and its engine in-process, on real dataset files; the model is never replaced.

The numbers the report gives are recomputed independently: from the rows it saved, and from
SegmentationMetrics on the masks the model gives when asked directly. The random fixture model
babbles when it generates, so the generate protocol with masks is checked with a scripted answer
(the model's choice of the next token forced; every layer still runs).

All model runs here use one CPU thread (torchrun gives each process one): then the float results,
hence the masks, are the same in every process, and the sharded run must match bit for bit.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from file_mode_check import files_with_other_modes

from lisa_ros.data import load_dataset
from lisa_ros.distributed import Launch, LaunchError, launch_from_env, process_device, shard
from lisa_ros.evaluation import MetricSums, SegmentationMetrics
from lisa_ros.evaluation.runner import read_rows
from testbed import FIXTURES
from testbed import PACKAGE as PACKAGE_ROOT
from testbed.fixture_replies import NO_SEG_REPLY, REPLY_WITH_EOS
from testbed.tiny_lisa import CHECKPOINT, IMAGE

REASONSEG = FIXTURES / "reasonseg"
CPU_FP32 = ["--precision", "fp32", "--device", "cpu"]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# --- helpers ---------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")])
        ),
        **ONE_THREAD,
        **extra,
    }


def run_eval(*args: str | os.PathLike, timeout: int = 300) -> subprocess.CompletedProcess:
    """``lisa-eval`` as a user runs it, in a fresh process, offline."""
    command = [sys.executable, "-m", "lisa_ros.cli.evaluate", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=timeout)


def model_args(data: Path, output: Path, *extra: str | os.PathLike) -> list[str | os.PathLike]:
    return ["--model", CHECKPOINT, "--data", data, "--output", output, *CPU_FP32, *extra]


def write_reasonseg(folder: Path, name: str, image_bgr: np.ndarray, annotation: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / f"{name}.jpg"), image_bgr)
    (folder / f"{name}.json").write_text(json.dumps(annotation), encoding="utf-8")


def polygon(x0: float, y0: float, x1: float, y1: float, label: str = "target") -> dict:
    return {"label": label, "points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Five ReasonSeg samples: the two fixture ones (several targets, an ignore region, a flag,
    several instructions), the fixture photo (large enough for overlay text) with a phrase, a
    sample whose target is empty, and one with a long sentence. Five over two processes: shards
    of three and two."""
    folder = tmp_path_factory.mktemp("reasonseg")
    for path in REASONSEG.iterdir():
        shutil.copy(path, folder / path.name)
    photo = cv2.imread(str(IMAGE), cv2.IMREAD_COLOR)
    write_reasonseg(
        folder,
        "c_photo",
        photo,
        {
            "text": ["the bright object", "unused second phrasing"],
            "is_sentence": False,
            "shapes": [polygon(150, 80, 300, 220), polygon(0, 0, 60, 40, "ignore")],
        },
    )
    noise = np.random.default_rng(7).integers(0, 256, (36, 48, 3), dtype=np.uint8)
    write_reasonseg(
        folder,
        "d_nothing",
        noise,
        {"text": ["the unicorn"], "is_sentence": False, "shapes": []},
    )
    write_reasonseg(
        folder,
        "e_sentence",
        noise[::-1].copy(),
        {
            "text": ["Where would I put a hot pan so that the table is not damaged?"],
            "is_sentence": True,
            "shapes": [polygon(4, 4, 30, 20)],
        },
    )
    return folder


@pytest.fixture(scope="module")
def single_run(dataset, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One ``lisa-eval`` run in one process over the whole dataset, default (validation) mode."""
    output = tmp_path_factory.mktemp("report")
    completed = run_eval(*model_args(dataset, output, "--worst", "3"))
    assert completed.returncode == 0, completed.stderr
    return completed, output


@pytest.fixture(scope="module")
def lisa():
    import torch

    from lisa_ros.model import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI runs here: the same floats, the same masks
    yield load_model(CHECKPOINT, precision="fp32", device="cpu")
    torch.set_num_threads(threads)


def report_of(output: Path) -> dict:
    return json.loads((output / "report.json").read_text(encoding="utf-8"))


def without_seconds(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the CLI end to end ----------------------------------------------------------------------


def test_report_files_and_summary(single_run, dataset):
    completed, output = single_run
    report = report_of(output)
    assert completed.stdout == (
        f"gIoU {report['giou']:.4f} cIoU {report['ciou']:.4f} over 5 samples\n"
    )
    assert "Loading LISA" in completed.stderr and "5/5 samples" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert report["samples"] == report["masks"] == 5 and report["skipped"] == 0
    assert report["mode"] == "validation" and report["processes"] == 1
    assert report["dataset"]["format"] == "reasonseg" and report["dataset"]["samples"] == 5
    assert report["model"]["precision"] == "fp32" and report["model"]["device"] == "cpu"
    assert report["versions"]["torch"] and report["versions"]["transformers"]
    assert report["seconds"] > 0
    assert files_with_other_modes(output) == {}  # report.json, samples.csv, worst/*.png

    with (output / "samples.csv").open(newline="", encoding="utf-8") as file:
        table = list(csv.DictReader(file))
    assert [row["name"] for row in table] == [
        "a_shelf",
        "b_cup",
        "c_photo",
        "d_nothing",
        "e_sentence",
    ]
    assert [row.to_dict() for row in read_rows(output / "samples.csv")] == report["rows"]


def test_metrics_equal_a_computation_from_the_saved_rows(single_run, dataset):
    _, output = single_run
    report = report_of(output)
    rows = read_rows(output / "samples.csv")
    samples = {sample.name: sample for sample in load_dataset(dataset)}
    iou_sum, intersection, union = Fraction(0), 0, 0
    for row in rows:
        target = samples[row.name].mask
        assert row.target_px == np.count_nonzero(target == 1)
        assert row.ignored_px == np.count_nonzero(target == 255)
        # the authors' per-mask IoU, written out here rather than imported
        iou = row.intersection / (row.union + 1e-5) + (1.0 if row.union == 0 else 0.0)
        assert row.iou == iou
        assert row.intersection <= min(row.target_px, row.predicted_px)
        iou_sum += Fraction(iou)
        intersection += row.intersection
        union += row.union
    assert report["sums"] == {
        "iou_sum": f"{iou_sum.numerator}/{iou_sum.denominator}",
        "count": 5,
        "intersection": intersection,
        "union": union,
    }
    assert report["giou"] == float(iou_sum) / (5 + 1e-5)
    assert report["ciou"] == intersection / (union + 1e-10)
    assert 0 < report["ciou"] < 1  # the random model finds some, not all: a real test


def test_metrics_equal_the_models_own_masks(single_run, dataset, lisa):
    """The masks of the authors' protocol, asked of the model directly, scored by
    SegmentationMetrics: the same sums and rows as the CLI's."""
    from lisa_ros.model.teacher_forcing import forced_answer

    _, output = single_run
    report = report_of(output)
    metrics = SegmentationMetrics()
    rows = {row.name: row for row in read_rows(output / "samples.csv")}
    questions = {
        "a_shelf": " the box that holds the screws Please output segmentation mask.",
        "b_cup": " What is the cup in this image? Please output segmentation mask.",
        "c_photo": " What is the bright object in this image? Please output segmentation mask.",
        "d_nothing": " What is the unicorn in this image? Please output segmentation mask.",
        "e_sentence": " Where would I put a hot pan so that the table is not damaged? "
        "Please output segmentation mask.",
    }
    for sample in load_dataset(dataset):
        masks = forced_answer(lisa, sample.image(), questions[sample.name]).masks
        assert masks.shape == (1, *sample.mask.shape)
        score = metrics.add_sample(sample.name, masks, [sample.mask])
        row = rows[sample.name]
        assert (row.iou, row.intersection, row.union) == (
            score.iou,
            score.intersection,
            score.union,
        )
        assert row.predicted_px == np.count_nonzero(masks[0])
    assert MetricSums.from_dict(report["sums"]) == metrics.sums()
    assert (report["giou"], report["ciou"]) == (metrics.giou, metrics.ciou)


def test_validation_asks_the_first_instruction_as_the_authors_do(single_run):
    _, output = single_run
    rows = {row.name: row for row in read_rows(output / "samples.csv")}
    # a sentence as it is, a phrase inside "What is ... in this image?"; the first one only
    assert rows["e_sentence"].question == (
        " Where would I put a hot pan so that the table is not damaged? "
        "Please output segmentation mask."
    )
    assert rows["c_photo"].instruction == "the bright object"
    assert rows["c_photo"].question == (
        " What is the bright object in this image? Please output segmentation mask."
    )
    assert rows["a_shelf"].instruction == "the box that holds the screws"  # of two
    # validation forces "[SEG].": no generated answer, no mask count to report
    assert all(row.answer is None and row.masks is None for row in rows.values())


def test_an_empty_target_scores_by_the_authors_rule(single_run):
    _, output = single_run
    row = {row.name: row for row in read_rows(output / "samples.csv")}["d_nothing"]
    assert row.target_px == 0
    assert row.iou == (1.0 if row.predicted_px == 0 else 0.0)


def test_worst_overlays(single_run, dataset):
    _, output = single_run
    report = report_of(output)
    rows = read_rows(output / "samples.csv")
    worst = sorted(rows, key=lambda row: (row.iou, row.index))[:3]
    assert [entry["name"] for entry in report["worst"]] == [row.name for row in worst]
    assert sorted(path.name for path in (output / "worst").iterdir()) == [
        f"{position:02d}_{row.name}.png" for position, row in enumerate(worst, 1)
    ]
    samples = {sample.name: sample for sample in load_dataset(dataset)}
    for entry in report["worst"]:
        overlay = cv2.imread(str(output / entry["overlay"]), cv2.IMREAD_COLOR)
        assert overlay.shape == samples[entry["name"]].image().shape
        assert not np.array_equal(overlay[:, :, ::-1], samples[entry["name"]].image())


def test_overlay_outlines_the_target_and_fills_the_prediction():
    from lisa_ros.evaluation.runner import draw_evaluation_overlay

    image = np.full((200, 200, 3), 90, np.uint8)
    target = np.zeros((200, 200), np.uint8)
    target[20:80, 20:80] = 1
    target[120:180, 120:180] = 255
    prediction = np.zeros((200, 200), bool)
    prediction[100:110, 30:60] = True
    overlay = draw_evaluation_overlay(image, target, prediction, "caption")
    assert tuple(overlay[20, 50]) == (255, 255, 255)  # the target's outline, white
    assert tuple(overlay[50, 50]) != (255, 255, 255)  # inside: not filled
    assert tuple(overlay[120, 150]) == (150, 150, 150)  # the ignore region's, grey
    red, green, blue = overlay[105, 45].astype(int)
    assert red > green + 60 and red > blue + 60  # the prediction, filled in red


# --- the two processes of torchrun -----------------------------------------------------------


def test_two_processes_give_the_one_process_numbers(single_run, dataset, tmp_path):
    """torchrun, 2 CPU processes (gloo on 127.0.0.1): identical metrics, rows and overlays."""
    _, single = single_run
    output = tmp_path / "sharded"
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "lisa_ros.cli.evaluate",
        *map(str, model_args(dataset, output, "--worst", "3")),
    ]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=_env(GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1"),
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    sharded, alone = report_of(output), report_of(single)
    assert sharded["processes"] == 2
    # interleaved shards of 3 and 2 samples, each process on the CPU it was told
    assert [(info["rank"], info["samples"], info["device"]) for info in sharded["shards"]] == [
        (0, 3, "cpu"),
        (1, 2, "cpu"),
    ]
    assert (sharded["giou"], sharded["ciou"]) == (alone["giou"], alone["ciou"])
    assert sharded["sums"] == alone["sums"]
    assert without_seconds(sharded["rows"]) == without_seconds(alone["rows"])
    assert sharded["worst"] == alone["worst"]
    for entry in alone["worst"]:
        assert (output / entry["overlay"]).read_bytes() == (single / entry["overlay"]).read_bytes()
    # rank 0 alone speaks and writes
    assert completed.stdout.count("gIoU") == 1
    assert sorted(path.name for path in output.iterdir()) == ["report.json", "samples.csv", "worst"]


def _row(index: int, iou: float | None, error: str | None = None):
    from lisa_ros.evaluation.runner import SampleRow

    return SampleRow(index, f"s{index}", "x", "q", iou, 1, 2, 1, 1, 0, None, None, 0.1, error)


def test_shards_combine_in_dataset_order_with_the_worst_over_all():
    from lisa_ros.evaluation.runner import EvaluationResult, SampleFailure, WorstSample

    def part(indices, ious, failure=None):
        rows = [_row(index, iou) for index, iou in zip(indices, ious, strict=True)]
        worst = [
            WorstSample(row.index, row.name, row.iou, np.packbits([True]), (1, 1), None)
            for row in rows
        ]
        sums = MetricSums(Fraction(sum(ious)), len(ious), len(ious), 2 * len(ious))
        return EvaluationResult(rows, sums, worst, failure)

    first = part([0, 2, 4], [0.5, 0.1, 0.3], SampleFailure(4, "s4", "late"))
    second = part([1, 3], [0.1, 0.9], SampleFailure(3, "s3", "early"))
    combined = EvaluationResult.combine([first, second], worst=3)
    assert [row.index for row in combined.rows] == [0, 1, 2, 3, 4]
    assert combined.sums == first.sums + second.sums
    assert [(item.index, item.iou) for item in combined.worst] == [(1, 0.1), (2, 0.1), (4, 0.3)]
    assert combined.failure.name == "s3"  # the earliest sample that failed
    assert EvaluationResult.combine([second, first], worst=3).rows == combined.rows


def test_launch_environment():
    assert launch_from_env({}) == Launch(0, 1, 0)
    assert launch_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Launch(3, 4, 1)
    for environ, fragment in [
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two'"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0"),
    ]:
        with pytest.raises(LaunchError, match=fragment):
            launch_from_env(environ)


def test_shards_interleave_and_cover_the_dataset_once():
    items = list("abcde")
    shards = [shard(items, Launch(rank, 2, rank)) for rank in range(2)]
    assert shards == [[(0, "a"), (2, "c"), (4, "e")], [(1, "b"), (3, "d")]]
    assert shard(items, Launch()) == list(enumerate(items))


def test_each_process_gets_its_gpu_unless_a_device_is_given():
    assert process_device(Launch(1, 2, 1), None, cuda_available=True) == "cuda:1"
    assert process_device(Launch(1, 2, 1), "cpu", cuda_available=True) == "cpu"
    assert process_device(Launch(1, 2, 1), None, cuda_available=False) is None
    assert process_device(Launch(), None, cuda_available=True) is None


# --- generate mode ---------------------------------------------------------------------------


def test_generate_scores_the_union_of_the_answers_masks(lisa, dataset):
    """What the node does: segment the question, score the union of every [SEG]'s mask."""
    from lisa_ros.evaluation.runner import evaluate
    from lisa_ros.model.generation import ScriptedReply

    samples = load_dataset(dataset)
    forced = {"logits_processor": [ScriptedReply(REPLY_WITH_EOS)]}  # "Sure, [SEG] and [SEG] ."
    result = evaluate(lisa, list(enumerate(samples)), mode="generate", generate_kwargs=forced)
    metrics = SegmentationMetrics()
    for sample, row in zip(samples, result.rows, strict=True):
        direct = lisa.segment(
            sample.image(),
            row.question,
            logits_processor=[ScriptedReply(REPLY_WITH_EOS)],
        )
        assert len(direct.masks) == 2
        union = direct.masks[0] | direct.masks[1]
        score = metrics.add_sample(sample.name, [union], [sample.mask])
        assert (row.answer, row.masks) == ("Sure, [SEG] and [SEG] .", 2)
        assert (row.iou, row.intersection, row.union) == (
            score.iou,
            score.intersection,
            score.union,
        )
        assert row.predicted_px == np.count_nonzero(union)
    assert result.sums == metrics.sums()


def test_generate_without_seg_predicts_nothing(lisa, dataset):
    from lisa_ros.evaluation.runner import evaluate
    from lisa_ros.model.generation import ScriptedReply

    samples = load_dataset(dataset)[:2]
    forced = {"logits_processor": [ScriptedReply(NO_SEG_REPLY)]}
    result = evaluate(lisa, list(enumerate(samples)), mode="generate", generate_kwargs=forced)
    for sample, row in zip(samples, result.rows, strict=True):
        assert row.masks == 0 and row.predicted_px == 0 and row.intersection == 0
        assert row.union == np.count_nonzero(sample.mask == 1) and row.iou == 0.0
    assert result.giou == 0.0 and result.ciou == 0.0


def test_generate_mode_cli(dataset, tmp_path):
    output = tmp_path / "generated"
    completed = run_eval(
        *model_args(dataset, output, "--mode", "generate", "--max-new-tokens", "3", "--limit", "2")
    )
    assert completed.returncode == 0, completed.stderr
    report = report_of(output)
    assert report["mode"] == "generate" and report["samples"] == 2
    assert report["model"]["max_new_tokens"] == 3
    for row in report["rows"]:
        assert isinstance(row["answer"], str) and row["masks"] == row["answer"].count("[SEG]")
    assert completed.stdout.endswith("over 2 samples\n")


def test_questions_as_recorded(dataset, tmp_path):
    """--questions as-is asks the first instruction verbatim (how a model fine-tuned with
    lisa-finetune --questions as-is was taught), in both protocols."""
    output = tmp_path / "as_is"
    completed = run_eval(*model_args(dataset, output, "--questions", "as-is", "--limit", "2"))
    assert completed.returncode == 0, completed.stderr
    report = report_of(output)
    assert report["questions"] == "as-is"
    for row in report["rows"]:
        assert row["question"] == row["instruction"]


# --- errors ----------------------------------------------------------------------------------


def _copy_fixture(folder: Path) -> Path:
    shutil.copytree(REASONSEG, folder)
    return folder


def _missing_image(folder: Path) -> Path:
    (folder / "b_cup.jpg").unlink()
    return folder / "b_cup.json"


def _polygon_outside(folder: Path) -> Path:
    annotation = json.loads((folder / "b_cup.json").read_text())
    annotation["shapes"][1]["points"][1] = [95, 2]
    (folder / "b_cup.json").write_text(json.dumps(annotation))
    return folder / "b_cup.json"


def _empty_text(folder: Path) -> Path:
    annotation = json.loads((folder / "a_shelf.json").read_text())
    annotation["text"] = []
    (folder / "a_shelf.json").write_text(json.dumps(annotation))
    return folder / "a_shelf.json"


def _not_reasonseg(folder: Path) -> Path:
    (folder / "a_shelf.json").write_text(json.dumps({"image": "a_shelf.jpg", "caption": "x"}))
    return folder / "a_shelf.json"


@pytest.mark.parametrize(
    ("spoil", "fragment"),
    [
        (_missing_image, "its image b_cup.jpg is missing"),
        (_polygon_outside, "is outside the 40x30 image"),
        (_empty_text, "'text' is empty"),
        (_not_reasonseg, "not a ReasonSeg annotation"),
    ],
)
def test_a_bad_dataset_is_one_line_naming_the_file_before_any_load(tmp_path, spoil, fragment):
    folder = _copy_fixture(tmp_path / "data")
    culprit = spoil(folder)
    completed = run_eval(*model_args(folder, tmp_path / "out"))
    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [completed.stderr.strip()]  # one line
    assert completed.stderr.startswith(f"lisa-eval: error: {culprit}: ")
    assert fragment in completed.stderr
    assert not (tmp_path / "out").exists()  # nothing written, no model loaded


def test_a_missing_dataset_folder(tmp_path):
    completed = run_eval(*model_args(tmp_path / "nope", tmp_path / "out"))
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"lisa-eval: error: {tmp_path / 'nope'}: not a folder"


@pytest.fixture
def too_long(tmp_path) -> Path:
    """The fixture plus a sample whose instruction overflows the tiny model's 1024 tokens."""
    folder = _copy_fixture(tmp_path / "data")
    image = cv2.imread(str(folder / "b_cup.jpg"))
    write_reasonseg(
        folder,
        "c_long",
        image,
        {"text": ["where is the cup? " * 400], "is_sentence": True, "shapes": []},
    )
    return folder


def test_a_failing_sample_stops_the_run_and_is_named(too_long, tmp_path):
    output = tmp_path / "out"
    completed = run_eval(
        *model_args(too_long, output, "--mode", "generate", "--max-new-tokens", "2")
    )
    assert completed.returncode == 1
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("lisa-eval: error: sample c_long (3 of 3) failed: ValueError: ")
    assert "too long" in last and "--skip-errors" in last
    assert not (output / "report.json").exists()


def test_skip_errors_records_the_sample_and_leaves_it_out(lisa, too_long):
    from lisa_ros.evaluation.runner import evaluate

    samples = list(enumerate(load_dataset(too_long)))
    stopped = evaluate(lisa, samples, mode="generate", generate_kwargs={"max_new_tokens": 2})
    assert stopped.failure is not None and stopped.failure.name == "c_long"
    skipped = evaluate(
        lisa, samples, mode="generate", generate_kwargs={"max_new_tokens": 2}, skip_errors=True
    )
    assert skipped.failure is None
    assert [row.name for row in skipped.skipped] == ["c_long"]
    assert "too long" in skipped.rows[2].error and skipped.rows[2].iou is None
    assert skipped.scored == 2 and skipped.sums.count == 2
    assert skipped.sums == stopped.sums  # the failed sample counts in no metric


# --- packaging -------------------------------------------------------------------------------


def test_the_cli_and_its_engine_import_without_torch():
    code = textwrap.dedent(
        """
        import sys
        import lisa_ros.cli.evaluate, lisa_ros.cli.options, lisa_ros.distributed
        import lisa_ros.evaluation.runner
        print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_help_lists_the_model_options():
    completed = run_eval("--help")
    assert completed.returncode == 0
    for option in [
        "--model",
        "--vision-tower",
        "--precision",
        "--quantization",
        "--device",
        "--max-new-tokens",
        "--adapter",
        "--data",
        "--output",
        "--mode",
        "--limit",
        "--worst",
        "--skip-errors",
    ]:
        assert option in completed.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "lisa-eval"
    if not script.exists():
        pytest.skip("lisa_ros is not pip-installed in this environment (make setup installs it)")
    completed = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and "--data" in completed.stdout
