"""Recording the node's reasoned answers as a dataset, for labelling and evaluation later.

With the parameter ``record_dir`` set, every answer LISA *reasoned* (a standing instruction's
frame, a goal's first turn) is saved into that folder in the simple dataset format of
:mod:`lisa_ros.data`, which ``load_dataset`` (and so ``lisa-eval`` and ``lisa-finetune``) reads:

- ``<name>.png``: the frame LISA saw, as RGB (exact pixels);
- ``<name>_mask.png``: the union of the answer's masks (0/255); empty when the answer had no mask:
  correcting it is a labelling job too;
- ``<name>.json``: ``{"instruction": ..., "answer": ..., "is_sentence": true}`` (free-form
  instructions are sentences in the LISA authors' sense), written last;
- ``<name>_masks.npz``, only when the answer had two masks or more: ``masks`` (bool N x H x W, in
  ``[SEG]`` order), ``phrases`` and ``scores``, so a labeller can keep or drop single targets.
  ``load_dataset`` takes a sample's ``<name>.json``, ``<name>.png`` and ``<name>_mask.png`` and
  looks at nothing else, so this file neither breaks nor changes what it reads.

``<name>`` is ``<sec>_<nanosec>_<n>`` (10, 9 and 6 digits) from the frame's header stamp and the
node's count of recorded answers, so names sort by time, and two answers on one frame (a goal and
the standing instruction) get two samples. A name already in the folder (a bag replayed into the
same folder) gets ``_1``, ``_2``... appended instead of replacing the older sample.

Followed frames are never recorded: they hold no new answer, only the reasoned one's targets
found again by SAM. Nor are follow-up turns of a goal session: their instruction ("and which one
is closer?") means nothing without the conversation, which the format does not hold; the frame was
recorded with the session's first instruction.

Disk work never slows inference or answers: the inference thread hands the answer over (no copy,
no encoding) to one writer thread through a bounded queue. When the disk falls behind, a full
queue drops the new sample, counted, with a WARN at most every :data:`DROP_WARN_SECONDS`. A write
that fails (read-only folder, disk full) is logged as an ERROR once per cause, saying what to do,
and the node keeps answering; the counts, the folder and the last error are on /diagnostics.

ROS-free (the logger is anything with ``info``/``warning``/``error``), so it is tested without a
graph.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from lisa_ros.data import write_atomically, write_sample

if TYPE_CHECKING:
    from lisa_ros.model.result import SegmentationResult

    from .outputs import Answer

__all__ = [
    "AnswerRecorder",
    "AnsweredFrame",
    "RecorderStats",
    "record_dir_problem",
    "record_folder",
    "write_answer",
]

QUEUE_SIZE = 8  # answers waiting for the disk; each holds its frame and mask logits
DROP_WARN_SECONDS = 10.0  # at most one "queue full" warning this often
FLUSH_SECONDS = 5.0  # how long deactivate and shutdown wait for the queue to be written


def record_folder(value: str) -> Path | None:
    """The folder the parameter ``record_dir`` names (``~`` expanded), or None when it is off."""
    return Path(os.path.expanduser(value)) if value else None


def record_dir_problem(value: str) -> str | None:
    """Why ``value`` cannot be ``record_dir``, or None. Only the spelling is checked: a folder
    that cannot be written (a disk not mounted yet) is reported when answers are recorded, so it
    never stops the node."""
    if not value:
        return None
    if value != value.strip():
        return f"record_dir={value!r} has leading or trailing whitespace (a copy-paste slip?)"
    if "\0" in value:
        return f"record_dir={value!r} holds a NUL character"
    if not os.path.isabs(os.path.expanduser(value)):
        return (
            f"record_dir={value!r} is not an absolute path (the node's working directory depends "
            "on how it was started): use /path/to/folder or ~/folder"
        )
    return None


@dataclass(frozen=True)
class AnsweredFrame:
    """One reasoned answer as the dataset keeps it. It holds references, not copies: nothing
    here is changed after the answer, and the inference thread must hand it over at once."""

    stamp_sec: int
    stamp_nanosec: int
    image_rgb: np.ndarray  # uint8 (H, W, 3)
    result: SegmentationResult  # masks, answer text, phrases, scores
    instruction: str

    @classmethod
    def from_answer(cls, answer: Answer) -> AnsweredFrame:
        stamp = answer.header.stamp
        return cls(
            stamp_sec=int(stamp.sec),
            stamp_nanosec=int(stamp.nanosec),
            image_rgb=answer.image_rgb,
            result=answer.result,
            instruction=answer.instruction,
        )


def _free_name(folder: Path, name: str) -> str:
    """``name``, or ``name_<k>`` with the first k whose sample is not in ``folder`` yet."""
    candidate, k = name, 0
    while (folder / f"{candidate}.json").exists():
        k += 1
        candidate = f"{name}_{k}"
    return candidate


def write_answer(folder: Path, name: str, frame: AnsweredFrame) -> Path:
    """Write ``frame`` as a sample of the simple format (see the module docstring); return the
    path of its JSON. Runs on the writer thread: the union mask and the PNGs are made here."""
    folder.mkdir(parents=True, exist_ok=True)
    name = _free_name(folder, name)
    masks = frame.result.masks
    union = masks.any(axis=0) if len(masks) else np.zeros(frame.image_rgb.shape[:2], dtype=bool)
    if len(masks) >= 2:
        # Before the JSON: a sample is complete once its JSON is there.
        write_atomically(
            folder / f"{name}_masks.npz",
            lambda file: np.savez_compressed(
                file,
                masks=masks,
                phrases=np.array(frame.result.phrases, dtype=str),
                scores=np.asarray(frame.result.scores, dtype=np.float32),
            ),
        )
    else:  # left over from an interrupted write of this name, it would describe another answer
        (folder / f"{name}_masks.npz").unlink(missing_ok=True)
    return write_sample(
        folder,
        name,
        frame.image_rgb,
        union,
        frame.instruction,
        frame.result.text,
        is_sentence=True,
    )


_ADVICE = {
    errno.EACCES: "the node's user may not write there: make the folder writable for it, or set "
    "record_dir to another folder",
    errno.EPERM: "the node's user may not write there: make the folder writable for it, or set "
    "record_dir to another folder",
    errno.EROFS: "the file system is read-only: remount it read-write, or set record_dir to a "
    "folder on another disk",
    errno.ENOSPC: "the disk is full: free some space, or set record_dir to a folder on another "
    "disk",
    errno.EDQUOT: "the disk quota is used up: free some space, or set record_dir to another folder",
    errno.ENOTDIR: "part of the path is a file, not a folder: set record_dir to a folder",
    errno.EEXIST: "the path is a file, not a folder: set record_dir to a folder",
}


def _probe(folder: Path) -> OSError | None:
    """Why ``folder`` does not take files, found by writing one (OpenCV says only "failed")."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as file:
            file.write(bytes(1 << 16))
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        return error
    return None


def describe_failure(folder: Path, error: Exception) -> tuple[object, str]:
    """(cause, message) for a failed write: ``cause`` tells distinct causes apart (the ERROR is
    logged once per cause); ``message`` says what failed and what to do."""
    if isinstance(error, OSError) and error.errno is None:
        error = _probe(folder) or error
    if isinstance(error, OSError) and error.errno is not None:
        reason = f"{error.strerror or error} ({errno.errorcode.get(error.errno, error.errno)})"
        if error.filename and Path(error.filename) != folder:
            reason = f"{error.filename}: {reason}"
        advice = _ADVICE.get(error.errno, "check the folder, or set record_dir to '' to stop")
        cause: object = error.errno
    else:
        reason = f"{type(error).__name__}: {error}"
        advice = "check the folder, or set record_dir to '' to stop"
        cause = f"{type(error).__name__}: {error}"
    message = (
        f"cannot record answered frames to {folder}: {reason}; {advice}. The node "
        "goes on answering without recording them."
    )
    return (str(folder), cause), message


@dataclass(frozen=True)
class RecorderStats:
    """What /diagnostics shows of the recording."""

    folder: str  # "" when recording is off
    recorded: int  # samples written
    dropped: int  # answers not recorded because the queue was full
    failed: int  # answers whose write failed
    waiting: int  # answers in the queue or being written
    last_error: str  # the last failure's message ("" when none)
    failing: bool  # the last write to the current folder failed (and none succeeded since)


@dataclass(frozen=True)
class _Item:
    folder: Path
    name: str
    frame: AnsweredFrame


class AnswerRecorder:
    """Writes answered frames on a writer thread of its own, through a bounded queue.

    The thread starts with the first answer offered and ends in :meth:`close` (after writing what
    is queued); a later offer starts it again. ``write`` and ``clock`` are for tests.
    """

    def __init__(
        self,
        logger: Any,
        *,
        queue_size: int = QUEUE_SIZE,
        write: Callable[[Path, str, AnsweredFrame], Path] = write_answer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._queue_size = queue_size
        self._write = write
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[_Item] = deque()
        self._writing = False
        self._thread: threading.Thread | None = None
        self._closing = False
        self._folder: Path | None = None
        self._counter = 0
        self._recorded = self._dropped = self._failed = 0
        self._last_drop_warning = float("-inf")
        self._last_error = ""
        self._failing = False
        self._logged_causes: set[object] = set()

    @property
    def folder(self) -> Path | None:
        with self._lock:
            return self._folder

    def set_folder(self, folder: Path | None) -> None:
        """Record the answers from now on into ``folder`` (None: stop recording). Answers already
        queued go to the folder they were answered for."""
        with self._lock:
            if folder == self._folder:
                return
            self._folder = folder
            self._failing = False
            self._logged_causes.clear()  # a new folder: its problems are news
        if folder is None:
            self._logger.info("Recording of answered frames stopped (record_dir is empty)")
        else:
            self._logger.info(f"Recording answered frames into {folder} (record_dir)")

    def offer_answer(self, answer: Answer) -> bool:
        """Queue a reasoned ``answer`` for recording (see :meth:`offer`); followed ones are
        refused: they hold no new answer."""
        if answer.followed is not None or self._folder is None:
            return False
        return self.offer(AnsweredFrame.from_answer(answer))

    def offer(self, frame: AnsweredFrame) -> bool:
        """Queue ``frame`` for the folder set now; False when recording is off or the queue is
        full (the frame is dropped and counted). Takes microseconds: the caller is the
        inference thread."""
        warn = None
        with self._lock:
            folder = self._folder
            if folder is None:
                return False
            accepted = len(self._queue) < self._queue_size
            if not accepted:
                self._dropped += 1
                now = self._clock()
                if now - self._last_drop_warning >= DROP_WARN_SECONDS:
                    self._last_drop_warning = now
                    warn = (
                        f"Recording falls behind: {len(self._queue)} answered frames wait for "
                        f"the disk at {folder}, so this one is not recorded ({self._dropped} "
                        "dropped so far). A faster disk, or a lower max_rate_hz for the "
                        "standing instruction, keeps up."
                    )
            else:
                self._counter += 1
                name = f"{frame.stamp_sec:010d}_{frame.stamp_nanosec:09d}_{self._counter:06d}"
                self._queue.append(_Item(folder, name, frame))
                self._closing = False
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="lisa-recorder", daemon=True
                    )
                    self._thread.start()
                self._changed.notify_all()
        if warn is not None:
            self._logger.warning(warn)
        return accepted

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait until every queued answer is written (or failed); False after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._queue or self._writing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def close(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Write what is queued, then end the writer thread; False (with a warning) when the disk
        did not take it within ``timeout`` (the daemon thread is then left to finish)."""
        with self._lock:
            self._closing = True
            thread = self._thread
            self._changed.notify_all()
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            with self._lock:
                waiting = len(self._queue) + int(self._writing)
            self._logger.warning(
                f"Recording: {waiting} answered frames still being written after {timeout:g} s "
                "(is the disk hanging?); leaving them to the writer thread"
            )
            return False
        return True

    def stats(self) -> RecorderStats:
        with self._lock:
            return RecorderStats(
                folder=str(self._folder) if self._folder is not None else "",
                recorded=self._recorded,
                dropped=self._dropped,
                failed=self._failed,
                waiting=len(self._queue) + int(self._writing),
                last_error=self._last_error,
                failing=self._failing,
            )

    # --- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._changed.wait()
                if not self._queue:  # closing, and everything is written
                    self._thread = None
                    self._changed.notify_all()
                    return
                item = self._queue.popleft()
                self._writing = True
            try:
                self._write(item.folder, item.name, item.frame)
            except Exception as error:  # noqa: BLE001 - a disk problem must not end recording
                self._failed_write(item.folder, error)
            else:
                self._written(item.folder)
            finally:
                with self._lock:
                    self._writing = False
                    self._changed.notify_all()

    def _written(self, folder: Path) -> None:
        with self._lock:
            self._recorded += 1
            recovered = self._failing and folder == self._folder
            if folder == self._folder:
                self._failing = False
                self._logged_causes.clear()
        if recovered:
            self._logger.info(f"Recording into {folder} works again")

    def _failed_write(self, folder: Path, error: Exception) -> None:
        cause, message = describe_failure(folder, error)
        with self._lock:
            self._failed += 1
            self._last_error = message
            if folder == self._folder:
                self._failing = True
            new = cause not in self._logged_causes
            self._logged_causes.add(cause)
        if new:
            self._logger.error(message[0].upper() + message[1:])
