"""Generation helpers: what `LisaModel.segment` builds from its `stop`, `on_text` and `on_mask`
arguments, and `ScriptedReply`, which tests and benchmarks pass through `logits_processor`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

TextCallback = Callable[[str, int], None]  # (answer so far, tokens generated so far)


class ScriptedReply(LogitsProcessor):
    """Makes generation emit a fixed sequence of ids, then EOS.

    A random-weight or untrained model babbles; scripting its reply gives benchmarks a fixed answer
    length and tests a known answer (with [SEG] tokens) while every layer still runs for real.
    Works with `segment`, whose processors see the generated ids only.
    """

    def __init__(self, token_ids: Sequence[int], eos_token_id: int | None = None) -> None:
        self.token_ids = list(token_ids)
        if eos_token_id is not None and (not self.token_ids or self.token_ids[-1] != eos_token_id):
            self.token_ids.append(eos_token_id)
        if not self.token_ids:
            raise ValueError("a scripted reply needs at least one token")

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = min(input_ids.shape[1], len(self.token_ids) - 1)
        forced = torch.full_like(scores, -float("inf"))
        forced[:, self.token_ids[step]] = 0.0
        return forced


class StopOnEvent(StoppingCriteria):
    """Stops decoding at the next step once `event` is set (cancel, preemption, shutdown)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object
    ) -> torch.BoolTensor:
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


class OnToken(StoppingCriteria):
    """Calls `callback(ids)`, ids being the answer so far, at each step that generates `token_id`.

    A stopping criterion because transformers calls those on the generating thread after every
    step, with the ids generated so far (`segment` passes no prompt ids); it never stops anything.
    """

    def __init__(self, token_id: int, callback: Callable[[list[int]], None]) -> None:
        self.token_id = token_id
        self.callback = callback

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object
    ) -> torch.BoolTensor:
        if input_ids.shape[1] and int(input_ids[0, -1]) == self.token_id:
            self.callback(input_ids[0].tolist())
        return torch.zeros((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)


class AnswerStreamer(BaseStreamer):
    """Reports the growing answer, decoded as the final one is, at most every `min_interval` s.

    `segment` hands streamers the generated ids only (never the prompt), one step at a time.
    `decode(ids)` is the same decoding that makes `SegmentationResult.text`, so the last report
    equals the final answer.
    """

    def __init__(
        self,
        decode: Callable[[list[int]], str],
        on_text: TextCallback,
        min_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._decode = decode
        self._on_text = on_text
        self._min_interval = min_interval
        self._clock = clock
        self._ids: list[int] = []
        self._last_report = float("-inf")
        self._reported = 0

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
        self._on_text(self._decode(self._ids), len(self._ids))
