"""LISA with its answer given (teacher forcing): the pass that validation and fine-tuning share.

Generation discovers the answer token by token; here the whole conversation (prompt and a known
answer) goes through the LLM in one pass. The state that predicts each answer token is the last
layer's output (after the final norm) one position before it, so a `[SEG]` of the answer gets
exactly the state that generation would have captured had the model produced that answer. Those
states give the logits the text loss is computed on and, through `text_hidden_fcs` and SAM's
mask decoder, one mask per `[SEG]`.

LISA's own validation is this pass with the answer "[SEG].": the masks it reports do not depend
on what the model would have said. `forced_answer` is that protocol; `forced_forward` is the
differentiable pass `lisa_ros.training` optimises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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


class ImageInputs(Protocol):
    """What the forced pass needs of an image: `LisaModel.encode_image`'s result fits."""

    image_tokens: torch.Tensor | None
    sam_embeddings: torch.Tensor
    resize_hw: tuple[int, int]
    original_hw: tuple[int, int]


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
    """CLIP tokens and SAM's embedding of `image`, as `encode_image` computes them."""
    validate_image(image)
    sam_embeddings, resize_hw = model.sam_embedding(image)
    return ImageFeatures(
        image_tokens=model.clip_tokens(image),
        sam_embeddings=sam_embeddings,
        resize_hw=resize_hw,
        original_hw=(image.shape[0], image.shape[1]),
    )


@dataclass
class ForcedOutput:
    """The forced pass's outputs, differentiable where the model's weights require grad."""

    answer_logits: torch.Tensor
    """float32 (A, V): the logits that predict each of the A answer ids (EOS included)."""
    answer_ids: torch.Tensor
    """int64 (A,): the answer ids, the targets of the text loss."""
    prompts: torch.Tensor
    """float32 (N, D): SAM prompts of the answer's N `[SEG]`s."""
    mask_logits: torch.Tensor
    """float32 (N, H, W) at the image's size."""
    scores: torch.Tensor
    """float32 (N,): SAM's predicted IoU."""


def forced_forward(
    model: LisaModel, image: ImageInputs, conversation: Conversation
) -> ForcedOutput:
    """One pass of the LLM over `conversation`, then one mask per `[SEG]` in its answer."""
    if image.image_tokens is None:
        raise ValueError("the image was encoded without CLIP: encode_image(image, clip=True)")
    ids = list(conversation.input_ids)
    embeddings = model.prompt_embeddings(ids, image.image_tokens)
    hidden = model.llm.get_decoder()(
        inputs_embeds=embeddings,
        attention_mask=torch.ones(embeddings.shape[:2], dtype=torch.long, device=model.device),
        use_cache=False,
    ).last_hidden_state[0]
    # the image placeholder became image_tokens.shape[1] positions
    start = conversation.answer_start + image.image_tokens.shape[1] - 1
    predicting = hidden[start - 1 : -1]
    answer_ids = torch.tensor(conversation.answer_ids, device=model.device)
    answer_logits = model.llm.get_output_embeddings()(predicting).float()
    seg_rows = (answer_ids == model.layout.seg).nonzero().flatten()
    prompts = model.seg_prompts(predicting[seg_rows])
    if len(seg_rows):
        mask_logits, scores = model.sam_masks(
            prompts, image.sam_embeddings, image.resize_hw, image.original_hw
        )
    else:
        mask_logits = prompts.new_zeros((0, *image.original_hw))
        scores = prompts.new_zeros((0,))
    return ForcedOutput(answer_logits, answer_ids, prompts, mask_logits, scores)


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
        output = forced_forward(model, encoding, conversation)
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
