"""LISA with its answer given (teacher forcing): the pass that validation and fine-tuning share.

Generation discovers the answer token by token; here the whole conversation (prompt and a known
answer) goes through the LLM in one pass. The state that predicts each answer token is the last
layer's output (after the final norm) one position before it, so a `[SEG]` of the answer gets
exactly the state that generation would have captured had the model produced that answer. Those
states give the logits the text loss is computed on and, through `text_hidden_fcs` and SAM's
mask decoder, one mask per `[SEG]`.

LISA's own validation is this pass with the answer "[SEG].": the masks it reports do not depend
on what the model would have said. `forced_answer` is that protocol; the pass itself is
`LisaNet.forward`, which `lisa_ros.training` optimises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .lisa import LisaModel
from .preprocessing import validate_image
from .prompt import build_prompt, decode_answer, seg_phrases, tokenize_prompt
from .result import SegmentationResult

VALIDATION_ANSWER = "[SEG]."
"""The answer LISA's validation forces: one `[SEG]`, so each sample gets one mask."""


@dataclass(frozen=True)
class Conversation:
    """The ids of one user turn and its answer, with where the answer starts."""

    input_ids: tuple[int, ...]
    """Prompt and answer ids, IMAGE_TOKEN_INDEX where the image goes, EOS last."""
    answer_start: int
    """Index in `input_ids` of the answer's first id."""

    @property
    def answer_ids(self) -> tuple[int, ...]:
        return self.input_ids[self.answer_start :]


def tokenize_conversation(tokenizer: object, instruction: str, answer: str) -> Conversation:
    """The llava_v1 conversation "... ASSISTANT: {answer}</s>" tokenised as the authors' training
    and validation tokenise it: in one piece around the image, so the ids are those of the text.

    The prompt part equals `tokenize_prompt` of the prompt alone (what generation starts from);
    a tokenizer that merged ids across that boundary would get the answer tokenised on its own.
    """
    if not answer.strip():
        raise ValueError("the answer is empty: a forced answer needs at least one token")
    prompt = build_prompt(instruction)
    prompt_ids = tokenize_prompt(tokenizer, prompt)
    ids = tokenize_prompt(tokenizer, f"{prompt} {answer}</s>")
    eos = tokenizer.eos_token_id
    if ids[: len(prompt_ids)] != prompt_ids:
        ids = prompt_ids + tokenizer(answer, add_special_tokens=False).input_ids + [eos]
    if ids[-1] != eos:
        ids.append(eos)
    return Conversation(tuple(ids), len(prompt_ids))


@dataclass
class ImageFeatures:
    """The frozen encoders' output for one image, outside inference mode so autograd may use it.

    Fine-tuning computes it once per image: CLIP, the projector and SAM's image encoder are not
    trained, so every epoch would compute the same tensors.
    """

    image_tokens: torch.Tensor
    sam_embeddings: torch.Tensor
    resize_hw: tuple[int, int]
    original_hw: tuple[int, int]

    def to(self, device: torch.device | str) -> ImageFeatures:
        return ImageFeatures(
            self.image_tokens.to(device),
            self.sam_embeddings.to(device),
            self.resize_hw,
            self.original_hw,
        )


@torch.no_grad()
def image_features(model: LisaModel, image: np.ndarray) -> ImageFeatures:
    """CLIP tokens and SAM's embedding of `image`, as `encode_image` computes them (uncached)."""
    validate_image(image)
    sam_pixels, resize_hw = model.sam_pixels(image)
    return ImageFeatures(
        image_tokens=model.net.image_tokens(model.clip_pixels(image)),
        sam_embeddings=model.net.sam_embedding(sam_pixels),
        resize_hw=resize_hw,
        original_hw=(image.shape[0], image.shape[1]),
    )


@torch.inference_mode()
def forced_answer(
    model: LisaModel, image: np.ndarray, instruction: str, answer: str = VALIDATION_ANSWER
) -> SegmentationResult:
    """LISA's masks for `answer` given as the reply to `instruction` about `image`: with the
    default answer, the authors' validation protocol (one mask per sample, whatever the model
    would have said). The instruction is used as given, not stripped (see
    `prompt.validation_question`). The image's encoding is cached as `segment` caches it.
    """
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("instruction is empty: say what to segment")
    conversation = tokenize_conversation(model.tokenizer, instruction, answer)
    with model.exclusive():
        encoding = model.encode_image(image, clip=True)
        output = model.net(conversation.input_ids, conversation.answer_start, encoding)
    text = decode_answer(model.tokenizer, conversation.answer_ids, model.layout)
    phrases, offsets = seg_phrases(text)
    count = len(output.mask_logits)
    return SegmentationResult(
        text=text,
        token_ids=list(conversation.answer_ids),
        mask_logits=output.mask_logits.float().cpu().numpy(),
        scores=output.scores.float().cpu().numpy(),
        phrases=phrases[:count],
        text_offsets=offsets[:count],
        prompts=output.prompts.float().cpu().numpy(),
    )
