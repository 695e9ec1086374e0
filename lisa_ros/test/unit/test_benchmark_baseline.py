"""The benchmark's reference-style baseline must compute what LISA computes, or its ratio means
nothing.

No timing is asserted here (speed is the benchmark script's job); this checks that the uncached,
re-encode-every-step loop in benchmarks/model.py gives the same ids and masks as
`LisaModel.segment`, and that its scripted answer has the promised shape.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from testbed.tiny_lisa import CHECKPOINT


@pytest.fixture(scope="module")
def benchmark():
    from benchmarks import model

    return model


@pytest.fixture(scope="module")
def lisa():
    from lisa_ros.model import load_model

    return load_model(CHECKPOINT, precision="fp32", device="cpu")


@pytest.mark.parametrize("length", [2, 3, 12])
def test_scripted_answer_has_the_length_one_seg_and_eos(benchmark, lisa, length):
    answer = benchmark.scripted_answer_ids(lisa, length)
    assert len(answer) == length
    assert answer.count(lisa.layout.seg) == 1
    assert answer[-1] == lisa.layout.eos and answer.count(lisa.layout.eos) == 1


def test_reference_style_generation_matches_the_cached_model(benchmark, lisa):
    image = benchmark.synthetic_image(120, 160)
    answer = benchmark.scripted_answer_ids(lisa, 12)

    cached = benchmark.cached_segment(lisa, image, answer)
    reference = benchmark.reference_style_segment(lisa, image, answer)

    assert cached.token_ids == reference.token_ids == answer
    assert reference.mask_logits.shape == cached.mask_logits.shape == (1, 120, 160)
    np.testing.assert_allclose(reference.mask_logits, cached.mask_logits, atol=1e-5)
    # The reference loop really re-ran CLIP and the LLM for every token.
    assert reference.timings["clip"] > 0 and reference.timings["decode_per_token"] > 0


def test_new_image_variant_defeats_the_image_cache_only(benchmark):
    image = benchmark.synthetic_image(8, 8)
    variants = [benchmark.new_image_variant(image, number) for number in range(300)]
    assert len({variant.tobytes() for variant in variants}) == 255  # distinct within any 255 rounds
    for variant in variants:
        difference = variant.astype(int) - image
        assert np.count_nonzero(difference) == 1


def test_followed_frame_is_a_new_image_of_the_same_size(benchmark):
    image = benchmark.synthetic_image(120, 160)
    uniform = np.full((120, 160, 3), 7, np.uint8)
    for source in (image, uniform):
        # what the benchmark follows onto: a round's variant, moved
        variant = benchmark.new_image_variant(source, 0)
        frame = benchmark.followed_frame(variant)
        assert frame.shape == variant.shape
        assert not np.array_equal(frame, variant)  # so the image cache cannot answer it


def test_follow_segment_decodes_the_reasoned_prompts_on_the_followed_frame(benchmark, lisa):
    image = benchmark.synthetic_image(120, 160)
    answer = benchmark.scripted_answer_ids(lisa, 12)
    reasoned = benchmark.cached_segment(lisa, image, answer).result
    frame = benchmark.followed_frame(image)

    followed = benchmark.follow_segment(lisa, frame, reasoned)

    assert followed.token_ids == answer
    assert set(followed.timings) == set(benchmark.FOLLOW_STAGES)
    with torch.inference_mode():
        encoding = lisa.encode_image(frame, clip=False)
        expected, _ = lisa.net.masks(torch.from_numpy(reasoned.prompts), encoding)
    assert followed.mask_logits.shape == (1, 120, 160)
    np.testing.assert_allclose(followed.mask_logits, expected.numpy(), atol=1e-6)


def test_the_cached_mode_times_the_first_mask_before_the_answer_ends(benchmark, lisa):
    """The cached mode hands the mask over as the node does (on_mask): its first mask comes at the
    [SEG], the third of 40 tokens; the reference-style loop has it with the whole answer."""
    image = benchmark.synthetic_image(120, 160)
    answer = benchmark.scripted_answer_ids(lisa, 40)

    cached = benchmark.cached_segment(lisa, image, answer)
    reference = benchmark.reference_style_segment(lisa, image, answer)

    # decoded with the answer's end, the first mask would be timed at the total exactly
    assert cached.timings["first_mask"] < cached.timings["total"]
    assert reference.timings["first_mask"] == reference.timings["total"]
