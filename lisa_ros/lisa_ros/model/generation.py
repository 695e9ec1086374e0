"""Generation helpers that go into `LisaModel.segment(**generate_kwargs)`."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor, StoppingCriteria


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
    """Stops generation at the next decoding step once `event` is set (cancel, preemption, shutdown)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
