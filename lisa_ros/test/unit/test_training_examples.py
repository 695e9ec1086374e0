"""How fine-tuning turns dataset samples into conversations (the authors' templates and answers),
with the fixture's real tokenizer."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from lisa_ros.data import Sample
from lisa_ros.model.teacher_forcing import ImageFeatures
from lisa_ros.training.examples import (
    ANSWERS,
    EXPLANATORY_QUESTIONS,
    PHRASE_QUESTIONS,
    SENTENCE_QUESTIONS,
    ExampleSource,
    answer_for,
    question_for,
)
from testbed.tiny_lisa import CHECKPOINT


def sample(answer: str | None = None, *, is_sentence: bool = True, name: str = "s") -> Sample:
    mask = np.zeros((6, 8), np.uint8)
    mask[1:3, 2:5] = 1
    mask[5, 0] = 255
    return Sample(
        name=name,
        image_path=Path("/nonexistent.png"),
        instructions=["Where do I put the cup?", "the thing for hot drinks"],
        is_sentence=is_sentence,
        mask=mask,
        answer=answer,
    )


def test_sentences_and_phrases_go_through_the_authors_templates():
    rng = random.Random(0)
    sentence = question_for(sample(), "  Where do I put the cup? ", "authors", rng)
    assert sentence in {t.format(sent="Where do I put the cup?") for t in SENTENCE_QUESTIONS}
    phrase = question_for(sample(is_sentence=False), "The Mug", "authors", rng)
    assert phrase in {t.format(class_name="the mug") for t in PHRASE_QUESTIONS}
    assert question_for(sample(), " as said ", "as-is", rng) == "as said"


def test_an_explanation_asks_for_one_and_follows_the_seg():
    explained = sample("Because it holds hot drinks.")
    question = question_for(explained, "Where do I put the cup?", "authors", random.Random(1))
    assert any(question.endswith(" " + ask) for ask in EXPLANATORY_QUESTIONS)
    assert answer_for(explained, random.Random(1)) == "Sure, [SEG]. Because it holds hot drinks."


def test_answers_with_one_seg_are_kept_others_replaced_by_the_authors():
    assert answer_for(sample("It is the cup [SEG]."), random.Random(0)) == "It is the cup [SEG]."
    for answer in (None, "", "[SEG] and [SEG]."):
        assert answer_for(sample(answer), random.Random(0)) in ANSWERS


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(CHECKPOINT)


def test_examples_are_deterministic_and_encode_each_image_once(tokenizer, monkeypatch):
    encoded: list[tuple] = []

    def encode(image: np.ndarray) -> ImageFeatures:
        encoded.append(image.shape)
        return ImageFeatures(torch.zeros(1, 4, 8), torch.zeros(1, 2, 4, 4), (6, 8), (6, 8))

    samples = [sample(name="a"), sample("It is [SEG].", name="b")]
    monkeypatch.setattr(Sample, "image", lambda self: np.zeros((6, 8, 3), np.uint8))
    source = ExampleSource(samples, tokenizer, encode, seed=7)
    first = [source.example(index, epoch) for epoch in range(3) for index in range(2)]
    again = [source.example(index, epoch) for epoch in range(3) for index in range(2)]
    assert [e.conversation for e in first] == [e.conversation for e in again]
    assert len({e.conversation for e in first if e.name == "a"}) > 1  # wording varies by epoch
    assert len(encoded) == 2  # the frozen encoders ran once per image
    example = source.example(1, 0)
    assert example.masks.shape == (1, 6, 8) and example.masks.dtype == torch.uint8
    assert int(example.masks[0, 5, 0]) == 255  # ignore pixels reach the loss as they are
    answer = tokenizer.decode(list(example.conversation.answer_ids))
    assert "[SEG]" in answer


def test_an_unknown_question_style_is_refused(tokenizer):
    with pytest.raises(ValueError, match="questions must be one of"):
        ExampleSource([sample()], tokenizer, lambda image: None, questions="verbatim")
