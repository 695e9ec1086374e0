"""`LisaModel.segment` behaviour: image-encoding reuse, conversations, generation kwargs, bad
input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from transformers import StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from lisa_ros.model import load_model
from lisa_ros.model.generation import ScriptedReply, StopOnEvent
from lisa_ros.model.prompt import SYSTEM, build_prompt
from testbed.fixture_replies import BABBLE, EOS, NO_SEG_REPLY, REPLY_WITH_EOS
from testbed.tiny_lisa import CHECKPOINT

REPLY = REPLY_WITH_EOS


@pytest.fixture(scope="module")
def lisa():
    return load_model(CHECKPOINT, precision="fp32", device="cpu")


def forced(reply):
    return {"logits_processor": [ScriptedReply(reply)]}


def test_same_image_is_encoded_once(lisa, fixture_image):
    other = np.ascontiguousarray(fixture_image[::-1])
    first = lisa.segment(other, "where is the thing?", **forced(REPLY))
    again = lisa.segment(other.copy(), "where is the thing?", **forced(REPLY))
    assert first.timings["clip"] > 0 and first.timings["sam_encoder"] > 0
    assert again.timings["clip"] == 0 and again.timings["sam_encoder"] == 0
    # The cached encoding gives the same masks as a fresh one would.
    np.testing.assert_array_equal(first.mask_logits, again.mask_logits)
    changed = lisa.segment(fixture_image, "where is the thing?", **forced(REPLY))
    assert changed.timings["sam_encoder"] > 0


def test_conversation_prompt_follows_llava_v1():
    prompt = build_prompt("and the cup?", [("where is the mug?", "It is [SEG] .")])
    assert prompt == (
        f"{SYSTEM} USER: <im_start><image><im_end>\nwhere is the mug? ASSISTANT: It is [SEG] .</s>"
        "USER: and the cup? ASSISTANT:"
    )


def test_follow_up_turn_sees_the_history(lisa, fixture_image):
    first = lisa.segment(fixture_image, "where is the thing?", **forced(REPLY))
    history = [("where is the thing?", first.text)]
    ids = lisa.prompt_ids("and the other one?", history)
    assert ids.count(lisa.layout.seg) == 2  # the earlier answer's [SEG] tokens are in the prompt
    follow_up = lisa.segment(fixture_image, "and the other one?", history, **forced(REPLY))
    assert follow_up.timings["sam_encoder"] == 0
    assert follow_up.masks.shape == first.masks.shape
    # Different context, different [SEG] states: the masks are the follow-up's own.
    assert not np.array_equal(follow_up.mask_logits, first.mask_logits)


def test_answer_without_seg_has_no_masks(lisa, fixture_image):
    result = lisa.segment(fixture_image, "what is this?", **forced(NO_SEG_REPLY))
    assert result.masks.shape == (0, 300, 420) and result.scores.shape == (0,)
    assert result.text == "Sure, and" and result.phrases == []


def test_stopping_criteria_stop_generation_at_the_next_step(lisa, fixture_image):
    stop = threading.Event()
    long_reply = BABBLE * 50 + [EOS]

    class StopAfter(BaseStreamer):
        def __init__(self):
            self.tokens = []

        def put(self, value):
            self.tokens.extend(value.reshape(-1).tolist())
            if len(self.tokens) >= 4:
                stop.set()

        def end(self):
            pass

    streamer = StopAfter()
    result = lisa.segment(
        fixture_image,
        "where?",
        streamer=streamer,
        stopping_criteria=StoppingCriteriaList([StopOnEvent(stop)]),
        **forced(long_reply),
    )
    # Set after the 4th token: at most the step already under way completes.
    assert 4 <= len(result.token_ids) <= 5
    assert streamer.tokens == result.token_ids


def test_stop_and_on_text_need_no_transformers_objects(lisa, fixture_image):
    """What a server needs (cancel, the answer as it grows) as plain arguments."""
    stop = threading.Event()
    reports: list[tuple[str, int]] = []

    def on_text(text: str, tokens: int) -> None:
        reports.append((text, tokens))
        stop.set()  # as a cancel arriving with the first report would

    result = lisa.segment(
        fixture_image, "where?", stop=stop, on_text=on_text, **forced(BABBLE * 50)
    )
    # Stopped within one decoding step of the request (the reply would go on for 150 tokens).
    assert reports[0][1] <= len(result.token_ids) <= reports[0][1] + 1
    assert reports[-1] == (result.text, len(result.token_ids))  # the last report is the answer
    assert [tokens for _, tokens in reports] == sorted(tokens for _, tokens in reports)

    complete: list[tuple[str, int]] = []
    result = lisa.segment(
        fixture_image, "where?", on_text=lambda *r: complete.append(r), **forced(REPLY)
    )
    assert (
        complete[-1]
        == (result.text, len(result.token_ids))
        == ("Sure, [SEG] and [SEG] .", len(REPLY))
    )


def test_on_text_and_a_streamer_together_are_refused(lisa, fixture_image):
    with pytest.raises(ValueError, match="on_text or a streamer"):
        lisa.segment(
            fixture_image,
            "where?",
            on_text=lambda *_: None,
            streamer=BaseStreamer(),
            **forced(REPLY),
        )


def test_max_new_tokens_is_passed_through(lisa, fixture_image):
    result = lisa.segment(fixture_image, "where?", max_new_tokens=3, **forced(BABBLE * 10))
    assert result.token_ids == BABBLE
    assert result.timings["decode_per_token"] == pytest.approx(result.timings["decode"] / 2)


def test_timings_cover_every_stage(lisa, fixture_image):
    result = lisa.segment(np.zeros((20, 30, 3), np.uint8), "where?", **forced(REPLY))
    for stage in ("clip", "sam_encoder", "prefill", "decode", "mask_decoder", "total"):
        assert result.timings[stage] >= 0, stage
    assert result.timings["total"] >= result.timings["prefill"] + result.timings["decode"]


def test_stages_are_reported(lisa, fixture_image):
    stages = []
    lisa.segment(fixture_image, "where?", on_stage=stages.append, **forced(REPLY))
    assert stages == ["encoding_image", "generating", "decoding_masks"]


@pytest.mark.parametrize("size", [(1, 1), (3000, 17)])
def test_extreme_image_sizes(lisa, size):
    image = np.full((*size, 3), 200, np.uint8)
    result = lisa.segment(image, "where?", **forced(REPLY))
    assert result.masks.shape == (2, *size)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((10, 10), np.uint8), "shape"),
        (np.zeros((10, 10, 4), np.uint8), "shape"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        ([[0, 0, 0]], "numpy array"),
    ],
)
def test_bad_images_are_refused(lisa, image, message):
    with pytest.raises(ValueError, match=message):
        lisa.segment(image, "where?")


@pytest.mark.parametrize("instruction", ["", "   \n"])
def test_empty_instruction_is_refused(lisa, fixture_image, instruction):
    with pytest.raises(ValueError, match="empty"):
        lisa.segment(fixture_image, instruction)


def test_huge_instruction_is_refused_and_the_model_still_works(lisa, fixture_image):
    with pytest.raises(ValueError, match="too long"):
        lisa.segment(fixture_image, "where is the cup? " * 6000)  # ~100 kB
    assert lisa.segment(fixture_image, "where?", **forced(REPLY)).token_ids == REPLY


def test_beam_search_is_refused(lisa, fixture_image):
    with pytest.raises(ValueError, match="num_beams"):
        lisa.segment(fixture_image, "where?", num_beams=2)


def test_bf16_gives_the_same_answer_and_close_masks(fixture_image):
    bf16 = load_model(CHECKPOINT, precision="bf16", device="cpu")
    fp32 = load_model(CHECKPOINT, precision="fp32", device="cpu")
    low, high = (model.segment(fixture_image, "where?", **forced(REPLY)) for model in (bf16, fp32))
    assert bf16.net.llm.dtype == torch.bfloat16
    assert low.token_ids == high.token_ids
    assert (low.masks == high.masks).mean() > 0.9


def test_out_of_memory_is_reported_and_the_model_keeps_working(lisa, fixture_image):
    from transformers import StoppingCriteria

    from lisa_ros.model.errors import LisaOutOfMemoryError

    class ExhaustMemory(StoppingCriteria):  # raises where a real allocation failure would surface
        def __call__(self, input_ids, scores, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(LisaOutOfMemoryError, match="quantization"):
        lisa.segment(
            fixture_image, "where?", stopping_criteria=StoppingCriteriaList([ExhaustMemory()])
        )
    assert lisa.segment(fixture_image, "where?", **forced(REPLY)).token_ids == REPLY


def test_answer_without_masks_has_empty_areas_and_boxes(lisa, fixture_image):
    result = lisa.segment(fixture_image, "what is this?", **forced(NO_SEG_REPLY))
    assert result.areas().shape == (0,) and result.boxes().shape == (0, 4)
