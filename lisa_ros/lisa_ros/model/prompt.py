"""LISA's conversation prompt ("llava_v1" template) and the decoding of its answers.

The token ids must match what the authors' `tokenizer_image_token` built: every text chunk around
`<image>` is tokenised on its own and BOS is kept once. The image becomes one placeholder id that
the model replaces by the projected CLIP features.

Torch-free (the tokenizer is passed in), so that the drawing code and the CLIs read `SEG_TOKEN` and
the phrase rule from here without importing the model stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .tokens import TokenLayout

SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
IMAGE_PLACEHOLDER = "<image>"
IMAGE_TOKEN_INDEX = -200  # LLaVA's marker for "the image features go here"
USER, ASSISTANT = "USER", "ASSISTANT"
SEG_TOKEN = "[SEG]"

Turn = tuple[str, str]


def build_prompt(instruction: str, history: Sequence[Turn] | None = None) -> str:
    """The llava_v1 prompt: the image goes into the first user turn, earlier turns are replayed."""
    turns = list(history or []) + [(instruction, "")]
    text = SYSTEM + " "
    for number, (question, answer) in enumerate(turns):
        if number == 0:
            question = f"<im_start>{IMAGE_PLACEHOLDER}<im_end>\n{question}"
        text += f"{USER}: {question} "
        text += f"{ASSISTANT}: {answer}</s>" if answer else f"{ASSISTANT}:"
    return text


def tokenize_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Ids with IMAGE_TOKEN_INDEX where `<image>` was, BOS once (LLaVA's tokenizer_image_token).

    ``verbose=False``: transformers would warn "Token indices sequence length is longer than the
    specified maximum sequence length ... indexing errors" for a long prompt; the model checks the
    prompt against its real context before generating and says what to shorten (a ValueError),
    which the CLIs and the node report instead.
    """
    chunks = [
        tokenizer(chunk, verbose=False).input_ids for chunk in prompt.split(IMAGE_PLACEHOLDER)
    ]
    ids: list[int] = []
    bos = tokenizer.bos_token_id
    for number, chunk in enumerate(chunks):
        if number > 0:
            ids.append(IMAGE_TOKEN_INDEX)
            if chunk and chunk[0] == bos:
                chunk = chunk[1:]
        ids.extend(chunk)
    return ids


def decode_answer(tokenizer: Any, token_ids: Sequence[int], layout: TokenLayout) -> str:
    """The answer as the reference printed it: added tokens as separate words, no EOS, no newlines.

    Current tokenizers glue added tokens to their neighbours ("Sure,[SEG] and[SEG] ."); LLaMA's slow
    tokenizer that LISA ran with joined them with spaces ("Sure, [SEG] and [SEG] ."), which is also
    what a person reads best.
    """
    ids = [int(i) for i in token_ids]
    if ids and ids[-1] == layout.eos:
        ids = ids[:-1]
    added = set(layout.added)
    words: list[str] = []
    run: list[int] = []
    for token in ids + [None]:
        if token is None or token in added:
            if run:
                words.append(tokenizer.decode(run, skip_special_tokens=True).strip())
                run = []
            if token is not None:
                words.append(tokenizer.convert_ids_to_tokens(token))
        else:
            run.append(token)
    text = " ".join(word for word in words if word)
    text = text.replace("\n", "")
    while "  " in text:
        text = text.replace("  ", " ")
    return text.strip()


def seg_phrases(text: str) -> tuple[list[str], list[int]]:
    """Per [SEG] in `text`: the words since the prior [SEG] (what it refers to) and its offset."""
    phrases, offsets, start = [], [], 0
    while (offset := text.find(SEG_TOKEN, start)) != -1:
        phrases.append(text[start:offset].strip(" ,.;:"))
        offsets.append(offset)
        start = offset + len(SEG_TOKEN)
    return phrases, offsets


QUESTION_STYLES = ("authors", "as-is")
"""How a dataset's instruction is asked: through the authors' templates, or as it was recorded
(what the node's users send). Evaluation and fine-tuning take the same choice."""


def validation_question(text: str, is_sentence: bool) -> str:
    """The question LISA's validation asks about a ReasonSeg sample (the authors' `ValDataset`).

    Sentences are asked as they are, phrases inside "What is ... in this image?". The leading
    space is the authors' (their user turn is "<image>\\n {question}"), kept so the ids match.
    """
    text = text.strip()
    if is_sentence:
        return f" {text} Please output segmentation mask."
    return f" What is {text} in this image? Please output segmentation mask."
