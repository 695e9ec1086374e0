"""`LisaModel.segment(on_mask=...)`: each [SEG]'s mask handed over at the step that generates it,
while the answer goes on, and the final result built from those very masks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lisa_ros.model import SegmentationResult, load_model
from lisa_ros.model.generation import ScriptedReply
from testbed.fixture_replies import EXPLAINED_REPLY, NO_SEG_REPLY, SEG
from testbed.tiny_lisa import CHECKPOINT

INSTRUCTION = "where can I throw away the food scraps?"
SEG_STEPS = [step for step, token in enumerate(EXPLAINED_REPLY) if token == SEG]


@pytest.fixture(scope="module")
def lisa():
    return load_model(CHECKPOINT, precision="fp32", device="cpu")


def segment(lisa, image, reply=EXPLAINED_REPLY, **kwargs) -> SegmentationResult:
    return lisa.segment(image, INSTRUCTION, logits_processor=[ScriptedReply(reply)], **kwargs)


class MaskDecoderCalls:
    """How many times SAM's mask decoder runs, and how many prompts in all."""

    def __init__(self, lisa) -> None:
        self.passes = self.prompts = 0
        self._decoder = lisa.net.sam.mask_decoder

    def __enter__(self) -> MaskDecoderCalls:
        def count(_module, _args, kwargs, _output):
            self.passes += 1
            self.prompts += kwargs["sparse_prompt_embeddings"].shape[0]

        self._handle = self._decoder.register_forward_hook(count, with_kwargs=True)
        return self

    def __exit__(self, *_exc) -> None:
        self._handle.remove()


def test_each_seg_mask_arrives_at_its_step_and_is_the_final_mask_bit_for_bit(lisa, fixture_image):
    partials: list[SegmentationResult] = []
    with MaskDecoderCalls(lisa) as calls:
        result = segment(lisa, fixture_image, on_mask=partials.append)

    assert len(partials) == len(SEG_STEPS) == len(result.mask_logits) == 2
    for index, (partial, step) in enumerate(zip(partials, SEG_STEPS, strict=True)):
        # handed over at the step that generated the [SEG], the answer so far with it
        assert partial.token_ids == EXPLAINED_REPLY[: step + 1]
        assert partial.text.endswith("[SEG]") and partial.text.count("[SEG]") == index + 1
        assert len(partial.mask_logits) == len(partial.phrases) == index + 1
        for earlier in range(index + 1):
            assert np.array_equal(partial.mask_logits[earlier], result.mask_logits[earlier])
            assert partial.scores[earlier] == result.scores[earlier]
            assert np.array_equal(partial.prompts[earlier], result.prompts[earlier])
            assert np.array_equal(partial.masks[earlier], result.masks[earlier])
    assert partials[0].timings["first_mask"] == result.timings["first_mask"]
    assert result.timings["first_mask"] < result.timings["total"]
    # one decoder pass per [SEG] while generating; none again for the final result
    assert (calls.passes, calls.prompts) == (2, 2)
    assert result.token_ids == EXPLAINED_REPLY


def test_without_the_callback_the_masks_are_decoded_once_at_the_end(lisa, fixture_image):
    partials: list[SegmentationResult] = []
    early = segment(lisa, fixture_image, on_mask=partials.append)
    with MaskDecoderCalls(lisa) as calls:
        result = segment(lisa, fixture_image)

    assert (calls.passes, calls.prompts) == (1, 2)  # both [SEG]s in one pass, as before
    assert result.text == early.text and result.token_ids == early.token_ids
    # the same states through the same decoder, one prompt at a time or two together
    np.testing.assert_allclose(result.mask_logits, early.mask_logits, atol=1e-4)
    np.testing.assert_allclose(result.prompts, early.prompts, atol=1e-5)
    assert 0 < result.timings["first_mask"] <= result.timings["total"]


def test_an_answer_without_seg_calls_nothing_and_has_no_first_mask(lisa, fixture_image):
    partials: list[SegmentationResult] = []
    result = segment(lisa, fixture_image, NO_SEG_REPLY, on_mask=partials.append)
    assert partials == [] and len(result.mask_logits) == 0
    assert "first_mask" not in result.timings


def test_stopping_after_the_first_mask_keeps_it(lisa, fixture_image):
    """A client that acts on the first target cancels the rest: the answer ends a step later,
    with the first mask as it was handed over."""
    stop = threading.Event()
    partials: list[SegmentationResult] = []

    def first_is_enough(partial: SegmentationResult) -> None:
        partials.append(partial)
        stop.set()

    result = segment(lisa, fixture_image, on_mask=first_is_enough, stop=stop)

    assert len(partials) == 1 and len(result.mask_logits) == 1
    assert len(result.token_ids) < SEG_STEPS[1]  # the second [SEG] was never generated
    assert np.array_equal(result.mask_logits[0], partials[0].mask_logits[0])
    assert result.scores[0] == partials[0].scores[0]


def test_a_result_with_early_masks_follows_and_converses_like_any(lisa, fixture_image):
    result = segment(lisa, fixture_image, on_mask=lambda _partial: None)
    followed = lisa.follow(fixture_image, result)
    np.testing.assert_allclose(followed.mask_logits, result.mask_logits, atol=1e-4)
    history = [(INSTRUCTION, result.text)]
    turn = lisa.segment(
        fixture_image,
        "and the other one?",
        history,
        logits_processor=[ScriptedReply(EXPLAINED_REPLY)],
        on_mask=lambda _partial: None,
    )
    assert len(turn.mask_logits) == 2 and turn.timings["sam_encoder"] == 0


def test_an_error_in_the_callback_ends_segment_and_the_model_serves_on(lisa, fixture_image):
    def broken(_partial: SegmentationResult) -> None:
        raise RuntimeError("the consumer failed")

    with pytest.raises(RuntimeError, match="the consumer failed"):
        segment(lisa, fixture_image, on_mask=broken)
    assert len(segment(lisa, fixture_image).mask_logits) == 2
