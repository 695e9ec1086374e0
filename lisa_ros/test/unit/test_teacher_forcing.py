"""The forced (teacher-forcing) pass that validation and fine-tuning share, against the authors'
reference run: their [SEG] states came from one full pass over prompt and reply, which is what
the forced pass is."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mask_parity import assert_masks_follow_logits

from lisa_ros.model import load_model
from lisa_ros.model.generation import ScriptedReply
from lisa_ros.model.prompt import validation_question
from lisa_ros.model.teacher_forcing import (
    VALIDATION_ANSWER,
    forced_answer,
    image_features,
    tokenize_conversation,
)
from testbed.tiny_lisa import CHECKPOINT, CLIP

INSTRUCTION = "Where is the thing? Please output segmentation mask."
REPLY = "Sure, [SEG] and [SEG]."
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def lisa():
    return load_model(CHECKPOINT, vision_tower=CLIP, precision="fp32", device="cpu")


def test_conversation_ids_are_the_reference_prompt_and_reply(lisa, reference):
    conversation = tokenize_conversation(lisa.tokenizer, INSTRUCTION, REPLY)
    assert list(conversation.input_ids) == reference["output_ids"][0].tolist()
    assert list(conversation.answer_ids) == reference["generated_ids"].tolist()


def test_forced_masks_equal_the_reference_and_generation(lisa, reference, fixture_image):
    forced = forced_answer(lisa, fixture_image, INSTRUCTION, REPLY)
    assert np.abs(forced.prompts - reference["seg_embeddings"]).max() < TOLERANCE
    generated = lisa.segment(
        fixture_image,
        INSTRUCTION,
        logits_processor=[ScriptedReply(reference["generated_ids"].tolist())],
    )
    assert forced.text == generated.text
    assert forced.phrases == generated.phrases
    assert np.abs(forced.mask_logits - generated.mask_logits).max() < 1e-4
    assert_masks_follow_logits(forced.masks, reference["mask_logits"])
    assert_masks_follow_logits(generated.masks, reference["mask_logits"])


def test_validation_forces_one_mask(lisa, fixture_image):
    result = forced_answer(lisa, fixture_image, validation_question("the mug", False))
    assert result.token_ids[0] == lisa.layout.seg
    assert "".join(result.text.split()) == VALIDATION_ANSWER
    assert result.mask_logits.shape == (1, *fixture_image.shape[:2])


def test_validation_question_is_the_authors():
    assert validation_question("  where to sit?  ", True) == (
        " where to sit? Please output segmentation mask."
    )
    assert validation_question("the mug", False) == (
        " What is the mug in this image? Please output segmentation mask."
    )


def test_forced_answer_refuses_empty_input(lisa, fixture_image):
    with pytest.raises(ValueError, match="instruction is empty"):
        forced_answer(lisa, fixture_image, "  ")
    with pytest.raises(ValueError, match="answer is empty"):
        forced_answer(lisa, fixture_image, INSTRUCTION, " ")


def test_forced_pass_is_differentiable_where_lisa_trains(lisa, fixture_image):
    features = image_features(lisa, fixture_image)
    conversation = tokenize_conversation(lisa.tokenizer, INSTRUCTION, REPLY)
    trained = [
        lisa.net.text_hidden_fcs[0].weight,
        lisa.net.sam.mask_decoder.output_upscaling[0].weight,
        lisa.net.llm.get_output_embeddings().weight,
    ]
    for parameter in trained:
        parameter.requires_grad_(True)
        parameter.grad = None
    try:
        output = lisa.net(conversation.input_ids, conversation.answer_start, features)
        loss = output.mask_logits.sigmoid().mean() + torch.nn.functional.cross_entropy(
            output.answer_logits, output.answer_ids
        )
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)
        # the answer logits predict the answer: the same ids generation was scripted to
        assert output.answer_logits.shape == (len(conversation.answer_ids), lisa.net.llm.vocab_size)
    finally:
        for parameter in trained:
            parameter.requires_grad_(False)
            parameter.grad = None


def test_the_network_is_one_module_that_owns_every_part(lisa):
    """What an engine or a user wraps: every weight of the model is under `lisa.net`, once."""
    parts = {"llm", "vision_tower", "mm_projector", "text_hidden_fcs", "sam"}
    assert isinstance(lisa.net, torch.nn.Module)
    assert {name for name, _ in lisa.net.named_children()} == parts
    state = lisa.net.state_dict()
    assert {key.split(".", 1)[0] for key in state} == parts
    owned = sum(p.numel() for part in parts for p in getattr(lisa.net, part).parameters())
    assert sum(p.numel() for p in lisa.net.parameters()) == owned
