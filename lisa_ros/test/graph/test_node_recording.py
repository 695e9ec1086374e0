"""The answer recorder without a ROS graph: what a recorded sample holds (read back with
load_dataset), names that sort by time and never overwrite, the bounded queue dropping and warning
when the disk falls behind, write failures logged once per cause, flush and close.

The node on a real graph is tested in test_node_record.py.
"""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from file_mode_check import files_with_other_modes

from lisa_ros.data import detect_format, load_dataset
from lisa_ros.model.result import SegmentationResult
from lisa_ros.node.recording import (
    DROP_WARN_SECONDS,
    AnsweredFrame,
    AnswerRecorder,
    record_dir_problem,
    record_folder,
    write_answer,
)

NAME = re.compile(r"\d{10}_\d{9}_\d{6}")


class Logger:
    """Collects log lines by severity, like rclpy's logger is called."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {"info": [], "warning": [], "error": []}

    def info(self, message: str) -> None:
        self.lines["info"].append(message)

    def warning(self, message: str) -> None:
        self.lines["warning"].append(message)

    def error(self, message: str) -> None:
        self.lines["error"].append(message)


def result(masks: np.ndarray, text: str = "Sure, [SEG] and [SEG] .") -> SegmentationResult:
    count = len(masks)
    return SegmentationResult(
        text=text,
        token_ids=[],
        mask_logits=np.where(masks, 5.0, -5.0).astype(np.float32),
        scores=np.linspace(0.5, 0.9, count, dtype=np.float32),
        phrases=[f"phrase {k}" for k in range(count)],
        text_offsets=list(range(count)),
    )


def frame(
    masks: np.ndarray | None = None,
    sec: int = 1234,
    nanosec: int = 500_000_000,
    instruction: str = "where can I throw away the food scraps?",
    text: str = "Sure, [SEG] and [SEG] .",
) -> AnsweredFrame:
    rng = np.random.default_rng(sec + nanosec)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    if masks is None:
        masks = np.zeros((2, 30, 40), dtype=bool)
        masks[0, 2:10, 3:20] = True
        masks[1, 8:25, 15:35] = True  # overlaps the first
    return AnsweredFrame(sec, nanosec, image, result(masks, text), instruction)


def test_a_recorded_answer_is_a_simple_format_sample_with_the_union_mask(tmp_path: Path) -> None:
    answered = frame()
    json_path = write_answer(tmp_path, "0000001234_500000000_000001", answered)

    assert json_path == tmp_path / "0000001234_500000000_000001.json"
    assert detect_format(tmp_path) == "simple"
    (sample,) = load_dataset(tmp_path)
    assert sample.name == "0000001234_500000000_000001"
    np.testing.assert_array_equal(sample.image(), answered.image_rgb)
    np.testing.assert_array_equal(sample.mask, answered.result.masks.any(axis=0).astype(np.uint8))
    assert sample.instructions == [answered.instruction]
    assert sample.answer == answered.result.text
    assert sample.is_sentence is True
    # Several masks: each kept beside the sample, in [SEG] order, with phrase and score.
    with np.load(tmp_path / f"{sample.name}_masks.npz") as extra:
        np.testing.assert_array_equal(extra["masks"], answered.result.masks)
        assert extra["phrases"].tolist() == ["phrase 0", "phrase 1"]
        np.testing.assert_array_equal(extra["scores"], answered.result.scores)
    assert not list(tmp_path.glob(".*"))  # no temporary file left
    assert files_with_other_modes(tmp_path) == {}  # readable by a labelling tool of another user


def test_no_mask_records_an_empty_mask_and_one_mask_no_extra_file(tmp_path: Path) -> None:
    write_answer(tmp_path, "a", frame(np.zeros((0, 30, 40), bool), text="Sure, ."))
    one = np.zeros((1, 30, 40), bool)
    one[0, 5:9, 5:9] = True
    write_answer(tmp_path, "b", frame(one, text="Sure, [SEG] ."))

    empty, single = load_dataset(tmp_path)
    assert (empty.answer, empty.mask.any()) == ("Sure, .", False)
    np.testing.assert_array_equal(single.mask, one[0].astype(np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.json",
        "a.png",
        "a_mask.png",
        "b.json",
        "b.png",
        "b_mask.png",
    ]


def test_a_name_already_in_the_folder_is_not_overwritten(tmp_path: Path) -> None:
    first, second = frame(instruction="first"), frame(instruction="second")
    write_answer(tmp_path, "0000000000_000000000_000001", first)
    write_answer(tmp_path, "0000000000_000000000_000001", second)  # e.g. a bag replayed

    samples = load_dataset(tmp_path)
    assert [(s.name, s.instructions) for s in samples] == [
        ("0000000000_000000000_000001", ["first"]),
        ("0000000000_000000000_000001_1", ["second"]),
    ]


def test_samples_get_unique_names_that_sort_by_the_frame_stamp(tmp_path: Path) -> None:
    recorder = AnswerRecorder(Logger())
    recorder.set_folder(tmp_path)
    stamps = [(1000, 0), (999, 999_999_999), (1000, 0), (10_000, 5)]
    for sec, nanosec in stamps:
        assert recorder.offer(frame(sec=sec, nanosec=nanosec, instruction=f"at {sec}.{nanosec}"))
    assert recorder.flush(10.0)

    samples = load_dataset(tmp_path)  # sorted by name
    assert all(NAME.fullmatch(sample.name) for sample in samples)
    assert len({sample.name for sample in samples}) == 4
    assert [s.instructions[0] for s in samples] == [
        "at 999.999999999",
        "at 1000.0",
        "at 1000.0",
        "at 10000.5",
    ]
    assert recorder.stats().recorded == 4 and recorder.close()


class BlockingWrite:
    """A write that waits for :attr:`release`, so the queue fills as on a disk that hangs."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.names: list[str] = []

    def __call__(self, folder: Path, name: str, answered: AnsweredFrame) -> Path:
        self.started.set()
        assert self.release.wait(10.0)
        self.names.append(name)
        return folder / f"{name}.json"


def test_a_full_queue_drops_the_new_answer_counts_it_and_warns_at_most_every_period(
    tmp_path: Path,
) -> None:
    logger, write, now = Logger(), BlockingWrite(), [100.0]
    recorder = AnswerRecorder(logger, queue_size=2, write=write, clock=lambda: now[0])
    recorder.set_folder(tmp_path)
    assert recorder.offer(frame(sec=1))
    assert write.started.wait(10.0)  # the writer holds the first answer; the queue is empty
    assert recorder.offer(frame(sec=2)) and recorder.offer(frame(sec=3))  # the queue is full

    assert [recorder.offer(frame(sec=s)) for s in (4, 5, 6)] == [False, False, False]
    stats = recorder.stats()
    assert (stats.dropped, stats.waiting, stats.recorded) == (3, 3, 0)
    (warning,) = logger.lines["warning"]
    assert "Recording falls behind" in warning and str(tmp_path) in warning
    now[0] += DROP_WARN_SECONDS
    assert not recorder.offer(frame(sec=7))
    assert len(logger.lines["warning"]) == 2 and "4 dropped so far" in logger.lines["warning"][1]

    write.release.set()
    assert recorder.flush(10.0)
    stats = recorder.stats()
    assert (stats.recorded, stats.dropped, stats.failed, stats.waiting) == (3, 4, 0, 0)
    # The three that were admitted, in order; the dropped ones never reach the disk.
    assert [name[:10] for name in write.names] == ["0000000001", "0000000002", "0000000003"]
    assert recorder.close()


def test_a_failing_folder_logs_one_error_per_cause_and_answers_are_not_held_up(
    tmp_path: Path,
) -> None:
    logger = Logger()
    recorder = AnswerRecorder(logger)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    recorder.set_folder(blocker / "recorded")
    for second in range(3):
        assert recorder.offer(frame(sec=second))
    assert recorder.flush(10.0)

    stats = recorder.stats()
    assert (stats.recorded, stats.failed, stats.failing) == (0, 3, True)
    (error,) = logger.lines["error"]
    assert error == stats.last_error[0].upper() + stats.last_error[1:]
    assert str(blocker / "recorded") in error and "ENOTDIR" in error
    assert "set record_dir to a folder" in error

    # Another cause is news: the path itself is a file.
    recorder.set_folder(blocker)
    assert recorder.offer(frame()) and recorder.flush(10.0)
    assert len(logger.lines["error"]) == 2 and "EEXIST" in logger.lines["error"][1]

    # A folder that works: recorded, no longer failing; the last error stays for the record.
    recorder.set_folder(tmp_path / "good")
    assert recorder.offer(frame()) and recorder.flush(10.0)
    stats = recorder.stats()
    assert (stats.recorded, stats.failed, stats.failing) == (1, 4, False)
    assert "EEXIST" in stats.last_error
    assert len(load_dataset(tmp_path / "good")) == 1
    assert recorder.close()


def test_recovery_is_logged_and_a_recurring_cause_is_logged_again(tmp_path: Path) -> None:
    logger = Logger()
    folder = tmp_path / "recorded"
    recorder = AnswerRecorder(logger)
    recorder.set_folder(folder)
    folder.write_text("in the way")  # the folder's name is taken by a file
    assert recorder.offer(frame()) and recorder.flush(10.0)
    assert len(logger.lines["error"]) == 1
    folder.unlink()
    assert recorder.offer(frame()) and recorder.flush(10.0)
    assert logger.lines["info"][-1] == f"Recording into {folder} works again"
    shutil.rmtree(folder)
    folder.write_text("in the way again")
    assert recorder.offer(frame()) and recorder.flush(10.0)
    assert len(logger.lines["error"]) == 2 and recorder.stats().failing
    assert recorder.close()


def test_close_writes_what_is_queued_and_a_later_offer_starts_the_writer_again(
    tmp_path: Path,
) -> None:
    write = BlockingWrite()
    recorder = AnswerRecorder(Logger(), write=write)
    recorder.set_folder(tmp_path)
    assert recorder.offer(frame(sec=1)) and recorder.offer(frame(sec=2))
    assert write.started.wait(10.0)
    threading.Timer(0.2, write.release.set).start()
    assert recorder.close(10.0)
    assert len(write.names) == 2 and recorder.stats().waiting == 0
    assert recorder.offer(frame(sec=3)) and recorder.flush(10.0)
    assert len(write.names) == 3 and recorder.close(10.0)


def test_off_means_nothing_is_queued_and_followed_answers_are_refused(tmp_path: Path) -> None:
    recorder = AnswerRecorder(Logger())
    assert not recorder.offer(frame())  # no folder: off
    recorder.set_folder(tmp_path)
    followed = SimpleNamespace(followed=object())
    assert not recorder.offer_answer(followed)  # type: ignore[arg-type]
    recorder.set_folder(None)
    assert not recorder.offer(frame())
    assert recorder.stats() == recorder.stats().__class__("", 0, 0, 0, 0, "", False)
    assert not list(tmp_path.iterdir())


def test_record_dir_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert record_folder("~/recorded") == tmp_path / "recorded"
    assert record_folder("") is None
    assert record_dir_problem("") is None
    assert record_dir_problem("~/recorded") is None
    assert record_dir_problem("/data/recorded") is None
    assert "not an absolute path" in record_dir_problem("recorded")
    assert "whitespace" in record_dir_problem("/data/recorded ")
