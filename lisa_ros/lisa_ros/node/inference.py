"""One stoppable, observable LISA inference: the bridge between the node's jobs and the core.

The node needs three things from a generation that the core leaves to its caller: stopping it
within one decoding step (cancel, preemption, deactivation), seeing the answer grow (action
feedback), and knowing the current stage. They are plain transformers hooks passed through
``LisaModel.segment(..., stopping_criteria=..., streamer=..., on_stage=...)``; this module builds
them, so the node's jobs only say *what* to run. ROS-free.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from transformers import StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from lisa_ros.model import LisaModel, SegmentationResult
from lisa_ros.model.generation import StopOnEvent
from lisa_ros.model.prompt import decode_answer

__all__ = ["AnswerStreamer", "InferenceRequest", "run_inference"]

TextCallback = Callable[[str, int], None]  # (answer so far, tokens generated so far)


class AnswerStreamer(BaseStreamer):
    """Decodes the growing answer and reports it, at most every ``min_interval`` seconds.

    ``LisaModel.segment`` hands streamers the generated ids only (never the prompt), one step at a
    time. The text is decoded exactly as the final answer is (``decode_answer``), so the last
    report equals ``SegmentationResult.text``.
    """

    def __init__(
        self,
        model: LisaModel,
        on_text: TextCallback,
        min_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._model = model
        self._on_text = on_text
        self._min_interval = min_interval
        self._clock = clock
        self._ids: list[int] = []
        self._last_report = float("-inf")
        self._reported = 0

    @property
    def token_count(self) -> int:
        return len(self._ids)

    def put(self, value: Any) -> None:
        self._ids.extend(int(token) for token in value.reshape(-1).tolist())
        now = self._clock()
        if now - self._last_report >= self._min_interval:
            self._last_report = now
            self._report()

    def end(self) -> None:
        if self._reported != len(self._ids):
            self._report()

    def _report(self) -> None:
        self._reported = len(self._ids)
        self._on_text(decode_answer(self._model.tokenizer, self._ids, self._model.layout), len(self._ids))


@dataclass
class InferenceRequest:
    """Everything one call of the model needs; the callbacks run on the inference thread."""

    image_rgb: np.ndarray
    instruction: str
    history: Sequence[tuple[str, str]] = ()
    max_new_tokens: int = 512
    stop: threading.Event | None = None
    on_stage: Callable[[str], None] | None = None
    on_text: TextCallback | None = None


def run_inference(model: LisaModel, request: InferenceRequest) -> SegmentationResult:
    """Run ``request`` on ``model``; returns early (a partial answer) once ``request.stop`` is set.

    Raises what ``LisaModel.segment`` raises: ValueError for input the model cannot take (empty
    instruction, prompt longer than the context), other exceptions for failures (e.g. GPU memory).
    """
    kwargs: dict[str, Any] = {"max_new_tokens": request.max_new_tokens}
    if request.stop is not None:
        kwargs["stopping_criteria"] = StoppingCriteriaList([StopOnEvent(request.stop)])
    if request.on_text is not None:
        kwargs["streamer"] = AnswerStreamer(model, request.on_text)
    return model.segment(
        request.image_rgb,
        request.instruction,
        list(request.history) or None,
        on_stage=request.on_stage,
        **kwargs,
    )
