"""From dataset samples to training conversations, as the authors' ReasonSeg training builds them.

Each time a sample is drawn, one of its instructions is asked through one of the authors' question
templates (sentence or phrase) and answered with one of their answers, so the model learns the
task rather than one wording. What a team recorded can be asked as it was said instead
(``questions="as-is"``), which is what the node's users send.

The answer: a sample's own answer with exactly one ``[SEG]`` is used as it is (a recorded answer,
corrected); an answer without ``[SEG]`` is an explanation (ReasonSeg's explanatory split) and
follows "Sure, [SEG]."; otherwise (none, or several ``[SEG]`` for the sample's one mask) one of
the authors' short answers.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch

from lisa_ros.data import Sample
from lisa_ros.model.prompt import QUESTION_STYLES, SEG_TOKEN
from lisa_ros.model.teacher_forcing import ImageFeatures, tokenize_conversation

from .trainable import TrainingExample

# The authors' lists (LISA utils/utils.py), without their "<image>\n" prefix: build_prompt adds it.
SENTENCE_QUESTIONS = (
    "{sent} Please respond with segmentation mask.",
    "{sent} Please output segmentation mask.",
)
PHRASE_QUESTIONS = (
    "Can you segment the {class_name} in this image?",
    "Please segment the {class_name} in this image.",
    "What is {class_name} in this image? Please respond with segmentation mask.",
    "What is {class_name} in this image? Please output segmentation mask.",
)
EXPLANATORY_QUESTIONS = (
    "Please output segmentation mask and explain why.",
    "Please output segmentation mask and explain the reason.",
    "Please output segmentation mask and give some explanation.",
)
ANSWERS = (
    "It is [SEG].",
    "Sure, [SEG].",
    "Sure, it is [SEG].",
    "Sure, the segmentation result is [SEG].",
)
EXPLANATION_LEAD = "Sure, [SEG]."


def question_for(sample: Sample, instruction: str, style: str, rng: random.Random) -> str:
    """The question asked about `sample` with `instruction`, in `style` ("authors" or "as-is")."""
    instruction = instruction.strip()
    if style == "as-is":
        return instruction
    if sample.is_sentence:
        question = rng.choice(SENTENCE_QUESTIONS).format(sent=instruction)
    else:
        question = rng.choice(PHRASE_QUESTIONS).format(class_name=instruction.lower())
    if explanation_of(sample):
        question = f"{question} {rng.choice(EXPLANATORY_QUESTIONS)}"
    return question


def explanation_of(sample: Sample) -> str | None:
    answer = (sample.answer or "").strip()
    return answer if answer and SEG_TOKEN not in answer else None


def answer_for(sample: Sample, rng: random.Random) -> str:
    answer = (sample.answer or "").strip()
    if answer.count(SEG_TOKEN) == 1:
        return answer
    explanation = explanation_of(sample)
    if explanation:
        return f"{EXPLANATION_LEAD} {explanation}"
    return rng.choice(ANSWERS)


class ExampleSource:
    """Draws training examples from samples; the frozen encoders run once per image.

    Deterministic: the example for (epoch, index) is the same in every process and after a resume.
    """

    def __init__(
        self,
        samples: list[Sample],
        tokenizer: object,
        encode: Callable[[np.ndarray], ImageFeatures],
        *,
        questions: str = "authors",
        seed: int = 0,
        cache_features: bool = True,
    ) -> None:
        if questions not in QUESTION_STYLES:
            raise ValueError(f"questions must be one of {QUESTION_STYLES}, not {questions!r}")
        self.samples = samples
        self.tokenizer = tokenizer
        self.encode = encode
        self.questions = questions
        self.seed = seed
        self.cache_features = cache_features
        self._features: dict[int, ImageFeatures] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def features(self, index: int) -> ImageFeatures:
        cached = self._features.get(index)
        if cached is not None:
            return cached
        features = self.encode(self.samples[index].image())
        if self.cache_features:
            self._features[index] = features
        return features

    def example(self, index: int, epoch: int) -> TrainingExample:
        sample = self.samples[index]
        rng = random.Random(f"{self.seed}/{epoch}/{index}")
        instruction = rng.choice(sample.instructions)
        question = question_for(sample, instruction, self.questions, rng)
        conversation = tokenize_conversation(self.tokenizer, question, answer_for(sample, rng))
        return TrainingExample(
            name=sample.name,
            features=self.features(index),
            conversation=conversation,
            masks=torch.from_numpy(np.ascontiguousarray(sample.mask))[None],
        )
