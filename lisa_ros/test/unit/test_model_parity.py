"""Parity with the authors' LISA code, stage by stage, on the tiny fixture (fp32, CPU).

The fixture's reference run forced the reply "Sure, [SEG] and [SEG]." through a logits processor; so
do we. Each test compares one recorded stage, so a failure names the stage that broke.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from mask_parity import PARITY_TOLERANCE, assert_masks_follow_logits

from lisa_ros.model import SegmentationResult, load_model
from lisa_ros.model.generation import ScriptedReply
from lisa_ros.model.preprocessing import resize_longest_side, sam_input
from testbed.fixture_replies import SEG
from testbed.tiny_lisa import CHECKPOINT, CLIP

INSTRUCTION = "Where is the thing? Please output segmentation mask."
TOLERANCE = PARITY_TOLERANCE


@dataclass
class ParityRun:
    result: SegmentationResult
    seg_hidden: torch.Tensor
    seg_embeddings: torch.Tensor
    low_res_masks: torch.Tensor
    iou_predictions: torch.Tensor


@pytest.fixture(scope="module")
def lisa():
    return load_model(CHECKPOINT, vision_tower=CLIP, precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def run(lisa, reference, fixture_image) -> ParityRun:
    """One forced segmentation, with the inputs/outputs of the [SEG] projection and mask decoder
    kept."""
    seen: dict[str, object] = {}

    def keep(name):
        def hook(_module, inputs, output):
            seen[name] = (inputs, output)

        return hook

    handles = [
        lisa.net.text_hidden_fcs.register_forward_hook(keep("fcs")),
        lisa.net.sam.mask_decoder.register_forward_hook(keep("decoder")),
    ]
    try:
        result = lisa.segment(
            fixture_image,
            INSTRUCTION,
            logits_processor=[ScriptedReply(reference["generated_ids"].tolist())],
        )
    finally:
        for handle in handles:
            handle.remove()
    (fcs_in,), fcs_out = seen["fcs"]
    _, (low_res, iou) = seen["decoder"]
    return ParityRun(result, fcs_in, fcs_out, low_res, iou)


def max_abs(actual, expected) -> float:
    actual = (
        actual.detach().float().numpy()
        if isinstance(actual, torch.Tensor)
        else np.asarray(actual, np.float32)
    )
    return float(np.abs(actual - expected.astype(np.float32)).max())


def test_prompt_ids(lisa, reference):
    assert lisa.prompt_ids(INSTRUCTION) == reference["input_ids"][0].tolist()


def test_clip_input(lisa, reference, fixture_image):
    assert max_abs(lisa.clip_pixels(fixture_image), reference["images_clip"]) <= 1e-6


def test_sam_input(reference, fixture_image):
    resized = resize_longest_side(fixture_image, 1024)
    np.testing.assert_array_equal(resized, reference["sam_resized_uint8"])
    pixels, resize_hw = sam_input(fixture_image, 1024)
    assert resize_hw == tuple(reference["resize_hw"].tolist())
    assert max_abs(pixels, reference["sam_input"]) <= 2e-3  # the stored copy is fp16


def test_clip_features_and_projection(lisa, reference, fixture_image):
    with torch.inference_mode():
        pixels = torch.from_numpy(reference["images_clip"])
        hidden = lisa.net.vision_tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        assert max_abs(hidden, reference["clip_patch_features"]) <= TOLERANCE
        image_tokens = lisa.net.image_tokens(lisa.clip_pixels(fixture_image))
        assert max_abs(image_tokens, reference["image_tokens"]) <= TOLERANCE


def test_sam_image_embeddings(lisa, reference, fixture_image):
    assert (
        max_abs(lisa.encode_image(fixture_image).sam_embeddings, reference["sam_image_embeddings"])
        <= TOLERANCE
    )


def test_generated_ids(run, reference):
    assert run.result.token_ids == reference["generated_ids"].tolist()


def test_answer_text_matches_reference_printout(run, reference_info):
    printed = reference_info["outputs"]["text_output"]
    expected = printed.split("ASSISTANT: ")[-1].removesuffix("</s>")
    assert run.result.text == expected == "Sure, [SEG] and [SEG] ."


def test_seg_hidden_states(run, reference):
    assert max_abs(run.seg_hidden, reference["seg_hidden"]) <= TOLERANCE
    assert max_abs(run.seg_embeddings, reference["seg_embeddings"]) <= TOLERANCE


def test_mask_decoder(run, reference):
    assert max_abs(run.low_res_masks, reference["low_res_masks"]) <= TOLERANCE
    assert max_abs(run.iou_predictions, reference["iou_predictions"]) <= TOLERANCE
    np.testing.assert_allclose(
        run.result.scores, reference["iou_predictions"][:, 0], atol=TOLERANCE
    )


def test_mask_logits_and_masks(run, reference):
    result = run.result
    assert result.mask_logits.dtype == np.float32
    assert result.mask_logits.shape == reference["mask_logits"].shape == (2, 300, 420)
    assert max_abs(result.mask_logits, reference["mask_logits"]) <= TOLERANCE
    assert_masks_follow_logits(result.masks, reference["mask_logits"])


def test_one_mask_per_seg_token_with_its_phrase(run):
    result = run.result
    assert len(result.masks) == result.token_ids.count(SEG) == 2
    assert result.phrases == ["Sure", "and"]
    assert [result.text[o : o + 5] for o in result.text_offsets] == ["[SEG]", "[SEG]"]
    np.testing.assert_array_equal(result.areas(), result.masks.reshape(2, -1).sum(1))
