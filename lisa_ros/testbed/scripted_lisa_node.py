"""Run the real lisa_node whose model gives scripted answers: the launcher of the node graph tests.

The tiny test checkpoint has random weights, so left alone it babbles and rarely says [SEG]. Tests
need known answers (with and without [SEG], short and long), so this launcher builds the product's
``LisaNode`` unchanged except for :meth:`LisaNode.load_model`, which wraps the loaded model so that
every ``segment`` call gets one more logits processor forcing the reply's token ids. Every layer
still runs (CLIP, the LLM's decoding steps, SAM on the [SEG] states): only the choice of the next
token is scripted. The product has no test-only parameter.

    python -m testbed.scripted_lisa_node --reply nothing=368,432,416 --slow long=0.05 \\
        --ros-args -p ...

(from the lisa_ros package folder, where ``testbed`` is: node_graph.py and benchmarks.follow start
it so).

- ``--reply KEYWORD=IDS``: an instruction containing KEYWORD is answered with IDS (then EOS;
  ``290*400`` stands for 400 times id 290);
  instructions matching no keyword get :data:`DEFAULT_REPLY` ("Sure, [SEG] and [SEG] .").
- A follow-up turn (``history`` given) gets one more " and" (id 290) per earlier turn before EOS,
  so tests can see that the node passed the conversation to the model.
- ``--slow KEYWORD=SECONDS``: decoding steps of instructions containing KEYWORD take SECONDS
  longer each, so a test can act while a generation runs (cancel it, preempt it, query the node).
- ``--load-delay SECONDS``: loading the model takes SECONDS longer (a 7B checkpoint takes minutes;
  the tiny one a second), so a test can query the node while it loads.
- ``--oom KEYWORD``: the first decoding step of instructions containing KEYWORD raises
  ``torch.OutOfMemoryError``, as a real GPU allocation failure would (this machine has no GPU), so
  the core's conversion to ``LisaOutOfMemoryError`` and the node's recovery both run.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import torch
from rclpy.utilities import remove_ros_args
from transformers import LogitsProcessor, LogitsProcessorList

from lisa_ros.model import LisaModel, SegmentationResult
from lisa_ros.model.generation import ScriptedReply
from lisa_ros.node.lisa_node import LisaNode, ModelSettings, run
from testbed.fixture_replies import AND, REPLY

# The fixture's reference reply "Sure, [SEG] and [SEG] ." (EOS is appended).
DEFAULT_REPLY = REPLY
HISTORY_MARK = AND  # appended once per earlier turn of the conversation


class SlowDecoding(LogitsProcessor):
    """Adds a fixed delay to every decoding step (scores untouched)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        time.sleep(self.seconds)
        return scores


class ExhaustMemory(LogitsProcessor):
    """Fails a decoding step the way running out of GPU memory does."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (scripted)")


class ScriptedModel:
    """A loaded LisaModel whose ``segment`` answers are scripted by instruction keyword."""

    def __init__(
        self,
        model: LisaModel,
        replies: dict[str, list[int]],
        delays: dict[str, float],
        out_of_memory: list[str],
    ) -> None:
        self._model = model
        self._replies = replies
        self._delays = delays
        self._out_of_memory = out_of_memory

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def segment(
        self, image: np.ndarray, instruction: str, history: Any = None, **kwargs: Any
    ) -> SegmentationResult:
        processors = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
        reply = list(self._match(self._replies, instruction, DEFAULT_REPLY))
        reply += [HISTORY_MARK] * len(history or ())
        processors.append(ScriptedReply(reply, self._model.layout.eos))
        delay = self._match(self._delays, instruction, 0.0)
        if delay:
            processors.append(SlowDecoding(delay))
        if any(keyword in instruction for keyword in self._out_of_memory):
            processors.append(ExhaustMemory())
        return self._model.segment(
            image, instruction, history, logits_processor=processors, **kwargs
        )

    @staticmethod
    def _match(table: dict[str, Any], instruction: str, default: Any) -> Any:
        for keyword, value in table.items():
            if keyword in instruction:
                return value
        return default


class ScriptedLisaNode(LisaNode):
    def __init__(
        self,
        replies: dict[str, list[int]],
        delays: dict[str, float],
        out_of_memory: list[str],
        load_delay: float = 0.0,
    ) -> None:
        self._replies = replies
        self._delays = delays
        self._out_of_memory = out_of_memory
        self._load_delay = load_delay
        super().__init__()

    def load_model(self, settings: ModelSettings) -> LisaModel:
        time.sleep(self._load_delay)
        model = super().load_model(settings)
        return ScriptedModel(model, self._replies, self._delays, self._out_of_memory)  # type: ignore[return-value]


def _pairs(values: list[str], parse: Any) -> dict[str, Any]:
    table = {}
    for value in values:
        keyword, _, data = value.partition("=")
        table[keyword] = parse(data)
    return table


def _token_ids(text: str) -> list[int]:
    """ "368,432,290*3" -> [368, 432, 290, 290, 290]."""
    ids: list[int] = []
    for item in text.split(","):
        token, _, count = item.partition("*")
        ids += [int(token)] * int(count or 1)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reply", action="append", default=[], metavar="KEYWORD=IDS")
    parser.add_argument("--slow", action="append", default=[], metavar="KEYWORD=SECONDS")
    parser.add_argument("--oom", action="append", default=[], metavar="KEYWORD")
    parser.add_argument("--load-delay", type=float, default=0.0, metavar="SECONDS")
    options = parser.parse_args(remove_ros_args(sys.argv)[1:])
    replies = _pairs(options.reply, _token_ids)
    delays = _pairs(options.slow, float)

    run(lambda: ScriptedLisaNode(replies, delays, options.oom, options.load_delay))


if __name__ == "__main__":
    main()
