"""`LisaModel.follow`: an answer's [SEG] prompts decoded against later frames with SAM alone.

Real tiny model on the CPU; the reasoned answers are scripted (the weights are random).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
from mask_parity import assert_masks_follow_logits
from segment_anything.utils.transforms import ResizeLongestSide

from lisa_ros.model import SegmentationResult, follow_drift, load_model
from lisa_ros.model.generation import ScriptedReply
from testbed.fixture_replies import NO_SEG_REPLY, REPLY_WITH_EOS
from testbed.tiny_lisa import CHECKPOINT, CLIP

INSTRUCTION = "Where is the thing? Please output segmentation mask."


@pytest.fixture(scope="module")
def lisa():
    return load_model(CHECKPOINT, vision_tower=CLIP, precision="fp32", device="cpu")


def reason(lisa, image, reply=REPLY_WITH_EOS) -> SegmentationResult:
    return lisa.segment(image, INSTRUCTION, logits_processor=[ScriptedReply(reply)])


def shifted(image: np.ndarray, dy: int = 3, dx: int = 5) -> np.ndarray:
    """The scene a few pixels further down and right, as after a small camera motion."""
    return np.ascontiguousarray(np.roll(image, (dy, dx), axis=(0, 1)))


class CallCounter:
    """Counts forward calls of named modules while active."""

    def __init__(self, **modules: torch.nn.Module) -> None:
        self.modules = modules
        self.calls: Counter[str] = Counter()
        self.handles = []

    def __enter__(self) -> Counter[str]:
        for name, module in self.modules.items():
            hook = lambda *_args, name=name: self.calls.update([name])  # noqa: E731
            self.handles.append(module.register_forward_hook(hook))
        return self.calls

    def __exit__(self, *_exc) -> None:
        for handle in self.handles:
            handle.remove()


def counter(lisa) -> CallCounter:
    return CallCounter(
        clip=lisa.net.vision_tower,
        projector=lisa.net.mm_projector,
        llm=lisa.net.llm,
        seg_projection=lisa.net.text_hidden_fcs,
        sam_encoder=lisa.net.sam.image_encoder,
        mask_decoder=lisa.net.sam.mask_decoder,
    )


def sam_only_masks(lisa, image: np.ndarray, prompts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks for the prompts on `image`, the way the reference runs SAM, with segment-anything's own
    pre- and post-processing (not the model's): resize, `Sam.preprocess`, image encoder, prompt
    encoder without points/boxes/masks plus the [SEG] prompt as the sparse embedding, single-mask
    decoder, `Sam.postprocess_masks`."""
    sam = lisa.net.sam
    with torch.inference_mode():
        resized = ResizeLongestSide(sam.image_encoder.img_size).apply_image(image)
        pixels = torch.as_tensor(resized).permute(2, 0, 1).contiguous().float()
        embeddings = sam.image_encoder(sam.preprocess(pixels)[None])
        logits, scores = [], []
        for prompt in torch.from_numpy(prompts):
            sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
            sparse = torch.cat([sparse, prompt.view(1, 1, -1)], dim=1)
            low_res, iou = sam.mask_decoder(
                image_embeddings=embeddings,
                image_pe=sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            full = sam.postprocess_masks(low_res, resized.shape[:2], image.shape[:2])
            logits.append(full[0, 0].numpy())
            scores.append(iou[0, 0].item())
    return np.stack(logits), np.array(scores, np.float32)


# ---------------------------------------------------------------- prompts


def test_result_keeps_the_sparse_prompts_the_mask_decoder_was_given(lisa, fixture_image, reference):
    given = []

    def keep(_module, _args, kwargs, _output):
        given.append(kwargs["sparse_prompt_embeddings"].clone())

    handle = lisa.net.sam.mask_decoder.register_forward_hook(keep, with_kwargs=True)
    try:
        result = reason(lisa, fixture_image)
    finally:
        handle.remove()
    assert result.prompts.dtype == np.float32
    assert result.prompts.shape == (2, lisa.net.prompt_dim) == (2, 32)
    (sparse,) = given
    np.testing.assert_array_equal(result.prompts, sparse[:, 0].numpy())
    # ... which are the reference's [SEG] embeddings (text_hidden_fcs output).
    np.testing.assert_allclose(result.prompts, reference["seg_embeddings"], atol=1e-5)


def test_decoding_the_stored_prompts_gives_the_answers_masks(lisa, fixture_image):
    result = reason(lisa, fixture_image)
    encoding = lisa.encode_image(fixture_image, clip=False)
    with torch.inference_mode():
        logits, scores = lisa.net.masks(torch.from_numpy(result.prompts), encoding)
    np.testing.assert_array_equal(logits.numpy(), result.mask_logits)
    np.testing.assert_array_equal(scores.numpy(), result.scores)


def test_answer_without_seg_has_no_prompts(lisa, fixture_image):
    result = reason(lisa, fixture_image, NO_SEG_REPLY)
    assert result.prompts.shape == (0, lisa.net.prompt_dim)


def test_prompts_need_one_row_per_mask():
    logits = np.zeros((2, 4, 4), np.float32)
    fields = dict(text="", token_ids=[], mask_logits=logits, scores=np.zeros(2, np.float32))
    fields.update(phrases=["a", "b"], text_offsets=[0, 1])
    assert not SegmentationResult(**fields).followable  # hand-made: no prompts, allowed
    assert SegmentationResult(**fields, prompts=np.zeros((2, 8), np.float32)).followable
    with pytest.raises(ValueError, match="prompts"):
        SegmentationResult(**fields, prompts=np.zeros((1, 8), np.float32))


# ---------------------------------------------------------------- follow


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "re-encoded"])
def test_following_on_the_reasoned_image_gives_the_answer_bit_for_bit(lisa, fixture_image, cached):
    result = reason(lisa, fixture_image)
    if not cached:
        lisa.clear_image_cache()
    followed = lisa.follow(fixture_image.copy(), result)
    assert followed.timings["sam_encoder"] == 0 if cached else followed.timings["sam_encoder"] > 0
    assert np.array_equal(followed.mask_logits, result.mask_logits)
    assert np.array_equal(followed.scores, result.scores)


def test_following_a_shifted_frame_decodes_the_prompts_on_its_sam_embedding(lisa, fixture_image):
    result = reason(lisa, fixture_image)
    frame = shifted(fixture_image)
    followed = lisa.follow(frame, result)
    expected_logits, expected_scores = sam_only_masks(lisa, frame, result.prompts)
    assert followed.mask_logits.shape == expected_logits.shape == (2, 300, 420)
    np.testing.assert_allclose(followed.mask_logits, expected_logits, atol=1e-5)
    np.testing.assert_allclose(followed.scores, expected_scores, atol=1e-6)
    assert_masks_follow_logits(followed.masks, expected_logits)
    # A different frame: different masks (the test would not notice a stale encoding otherwise).
    assert not np.array_equal(followed.mask_logits, result.mask_logits)
    # The answer is carried over, not re-read.
    assert (followed.text, followed.token_ids) == (result.text, result.token_ids)
    assert (followed.phrases, followed.text_offsets) == (result.phrases, result.text_offsets)
    assert followed.prompts is result.prompts
    assert set(followed.timings) == {"sam_encoder", "mask_decoder", "total"}


def test_following_a_frame_of_another_size_gives_masks_of_its_size(lisa, fixture_image):
    result = reason(lisa, fixture_image)
    frame = np.ascontiguousarray(fixture_image[10:250, 30:])
    followed = lisa.follow(frame, result)
    assert followed.mask_logits.shape == (2, 240, 390)
    expected_logits, _ = sam_only_masks(lisa, frame, result.prompts)
    np.testing.assert_allclose(followed.mask_logits, expected_logits, atol=1e-5)


def test_follow_runs_neither_clip_nor_the_llm_and_shares_the_cache_with_segment(
    lisa, fixture_image
):
    result = reason(lisa, fixture_image)
    frame = shifted(fixture_image, 7, -4)
    stages = []
    with counter(lisa) as calls:
        first = lisa.follow(frame, result, on_stage=stages.append)
    assert calls == {"sam_encoder": 1, "mask_decoder": 1}
    assert stages == ["encoding_image", "decoding_masks"]
    assert first.timings["sam_encoder"] > 0

    with counter(lisa) as calls:
        again = lisa.follow(frame.copy(), result)
    assert calls == {"mask_decoder": 1} and again.timings["sam_encoder"] == 0
    np.testing.assert_array_equal(again.mask_logits, first.mask_logits)

    # Reasoning on the followed frame adds CLIP to the cached encoding; SAM's is reused.
    with counter(lisa) as calls:
        reasoned = reason(lisa, frame)
    assert calls["sam_encoder"] == 0 and calls["clip"] == 1 and calls["llm"] > 0
    assert reasoned.timings["sam_encoder"] == 0 and reasoned.timings["clip"] > 0

    # ... and following after reasoning recomputes nothing either.
    with counter(lisa) as calls:
        lisa.follow(frame, reasoned)
    assert calls == {"mask_decoder": 1}


def test_segment_after_segment_on_the_same_image_encodes_nothing(lisa, fixture_image):
    frame = shifted(fixture_image, 1, 1)
    reason(lisa, frame)
    with counter(lisa) as calls:
        result = reason(lisa, frame)
    assert calls["clip"] == calls["sam_encoder"] == 0
    assert result.timings["clip"] == result.timings["sam_encoder"] == 0


def test_a_result_without_masks_follows_to_no_masks(lisa, fixture_image):
    result = reason(lisa, fixture_image, NO_SEG_REPLY)
    frame = np.ascontiguousarray(fixture_image[:100])
    with counter(lisa) as calls:
        followed = lisa.follow(frame, result)
    assert not calls
    assert followed.masks.shape == (0, 100, 420) and followed.scores.shape == (0,)
    assert followed.text == result.text and followed.phrases == []


def test_a_result_without_prompts_is_refused(lisa, fixture_image):
    result = reason(lisa, fixture_image)
    hand_made = SegmentationResult(
        result.text,
        result.token_ids,
        result.mask_logits,
        result.scores,
        result.phrases,
        result.text_offsets,
    )
    with pytest.raises(ValueError, match="no prompts"):
        lisa.follow(fixture_image, hand_made)
    other_model = replace(hand_made, prompts=np.zeros((2, 256), np.float32))
    with pytest.raises(ValueError, match="another model"):
        lisa.follow(fixture_image, other_model)


def test_follow_refuses_bad_images(lisa, fixture_image):
    result = reason(lisa, fixture_image)
    with pytest.raises(ValueError, match="uint8"):
        lisa.follow(fixture_image.astype(np.float32), result)


# ---------------------------------------------------------------- drift


def hand_made(masks: list[np.ndarray], scores: list[float]) -> SegmentationResult:
    logits = np.where(np.stack(masks), 1.0, -1.0).astype(np.float32)
    count = len(masks)
    return SegmentationResult(
        text="[SEG] " * count,
        token_ids=[],
        mask_logits=logits,
        scores=np.array(scores, np.float32),
        phrases=[""] * count,
        text_offsets=list(range(0, 6 * count, 6)),
    )


def box_mask(rows: slice | None = None, cols: slice | None = None) -> np.ndarray:
    """A 30 x 40 image (diagonal 50) with the given block set, or empty."""
    mask = np.zeros((30, 40), bool)
    if rows is not None:
        mask[rows, cols] = True
    return mask


def test_drift_of_hand_made_masks():
    reasoned = hand_made(
        [
            box_mask(slice(0, 10), slice(0, 10)),  # 10 x 10 at the origin, centre (5, 5)
            box_mask(slice(10, 20), slice(20, 40)),  # 20 wide x 10 high, centre (30, 15)
            box_mask(slice(0, 2), slice(0, 2)),
            box_mask(),
            box_mask(),
        ],
        [0.9, 0.8, 0.7, 0.6, 0.5],
    )
    followed = hand_made(
        [
            box_mask(slice(6, 16), slice(8, 18)),  # moved by (8, 6): 10 px, same size
            box_mask(slice(10, 20), slice(20, 30)),  # its left half: centre (25, 15)
            box_mask(),  # lost
            box_mask(slice(0, 3), slice(0, 3)),  # appeared
            box_mask(),  # still nothing
        ],
        [0.4, 0.3, 0.2, 0.1, 0.0],
    )
    drift = follow_drift(reasoned, followed)
    assert [d.index for d in drift] == [0, 1, 2, 3, 4]
    moved, halved, lost, appeared, nothing = drift

    assert moved.score == pytest.approx(0.4) and moved.reasoned_score == pytest.approx(0.9)
    assert moved.area_ratio == 1.0 and (moved.reasoned_area, moved.followed_area) == (100, 100)
    assert moved.centre_shift == pytest.approx(10 / 50)
    assert moved.box_iou == pytest.approx((2 * 4) / (100 + 100 - 2 * 4))  # overlap 2 x 4 px
    assert not moved.lost

    assert halved.area_ratio == 0.5
    assert halved.centre_shift == pytest.approx(5 / 50)
    assert halved.box_iou == pytest.approx(0.5)

    assert lost.lost and lost.area_ratio == 0.0
    assert (lost.centre_shift, lost.box_iou) == (1.0, 0.0)

    assert not appeared.lost and appeared.area_ratio == math.inf
    assert (appeared.centre_shift, appeared.box_iou) == (1.0, 0.0)

    assert not nothing.lost
    assert (nothing.area_ratio, nothing.centre_shift, nothing.box_iou) == (1.0, 0.0, 1.0)


def test_drift_needs_a_follow_of_the_same_answer():
    one = hand_made([box_mask(slice(0, 2), slice(0, 2))], [0.5])
    two = hand_made([box_mask(), box_mask()], [0.5, 0.5])
    with pytest.raises(ValueError, match="not a follow"):
        follow_drift(one, two)
    smaller = hand_made([np.zeros((20, 40), bool)], [0.5])
    with pytest.raises(ValueError, match="differ in size"):
        follow_drift(one, smaller)
    nothing = SegmentationResult("", [], np.zeros((0, 30, 40), np.float32), np.zeros(0))
    assert follow_drift(nothing, nothing) == []


def test_followed_on_the_reasoned_frame_has_not_drifted(lisa, fixture_image):
    result = reason(lisa, fixture_image)
    for drift in follow_drift(result, lisa.follow(fixture_image, result)):
        assert drift.area_ratio == 1.0 and drift.centre_shift == 0.0 and drift.box_iou == 1.0
        assert drift.score == drift.reasoned_score
