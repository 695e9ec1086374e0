"""LISA's network as one `nn.Module`: the differentiable steps, written once.

The parts are LLaVA's: an LLM, CLIP's vision tower and the projector that puts its patch features
in the LLM's input space; and LISA's: `text_hidden_fcs`, which turns the LLM's state at a `[SEG]`
into a sparse prompt for Segment Anything, and SAM itself. Inference (`LisaModel`, the predictor
with the tokenizer, the image cache and KV-cached generation) and fine-tuning
(`lisa_ros.training`, with autograd) call the same methods here, so the two cannot drift apart,
and an engine (accelerate, DDP) or a user sees a plain module: `.train()`, `.parameters()`,
`.state_dict()`.

`forward` is LISA's teacher-forced pass, as in the authors' `LISAForCausalLM.forward`: the whole
conversation (prompt and a known answer) through the LLM at once, then one mask per `[SEG]` of
the answer. The state that predicts each answer token is the final norm's output one position
before it, so a `[SEG]` of the answer gets exactly the state that generation would have captured
had the model produced that answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from .preprocessing import postprocess_masks
from .prompt import IMAGE_TOKEN_INDEX


class SamImage(Protocol):
    """SAM's view of an encoded image: `ImageEncoding` (inference) and `ImageFeatures`
    (fine-tuning) both fit."""

    sam_embeddings: torch.Tensor
    resize_hw: tuple[int, int]
    original_hw: tuple[int, int]


class EncodedImage(SamImage, Protocol):
    """What the teacher-forced pass needs of an image: SAM's part and the CLIP tokens."""

    image_tokens: torch.Tensor | None


@dataclass
class ForcedOutput:
    """The teacher-forced pass's outputs, differentiable where the weights require grad."""

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


class LisaNet(nn.Module):
    """LLM, CLIP tower, projector, `text_hidden_fcs` and SAM, with LISA's steps between them.

    Every method runs in the caller's grad mode: the predictor calls them under inference mode,
    fine-tuning with autograd. Dtypes follow `load_model`: the LLM, CLIP, the projector and SAM's
    image encoder in the model's precision; `text_hidden_fcs`, SAM's prompt encoder and mask
    decoder in float32. Each step casts its input to the dtype of the part that reads it.
    """

    def __init__(
        self,
        *,
        llm: nn.Module,
        vision_tower: nn.Module,
        mm_projector: nn.Module,
        text_hidden_fcs: nn.Module,
        sam: nn.Module,
        seg_token_id: int,
        vision_select_layer: int = -2,
    ) -> None:
        super().__init__()
        self.llm = llm
        self.vision_tower = vision_tower
        self.mm_projector = mm_projector
        self.text_hidden_fcs = text_hidden_fcs
        self.sam = sam
        self.seg_token_id = seg_token_id
        self.vision_select_layer = vision_select_layer

    # ------------------------------------------------------------------ shapes
    @property
    def device(self) -> torch.device:
        """Where the model's inputs go (the projector's device: every part is on it, except
        layers a quantised LLM placed itself)."""
        return self.mm_projector.weight.device

    @property
    def sam_image_size(self) -> int:
        """The side of SAM's square input (1024 in LISA)."""
        return int(self.sam.image_encoder.img_size)

    @property
    def prompt_dim(self) -> int:
        """D of SAM's sparse prompts, the width of `seg_prompts`' output (256 in LISA)."""
        return int(self.sam.prompt_encoder.embed_dim)

    # ------------------------------------------------------------------ image
    def image_tokens(self, clip_pixels: torch.Tensor) -> torch.Tensor:
        """The projected CLIP patch features (1, patches, hidden) that stand for the image in the
        LLM's input, from CLIP's pre-processed input (1, 3, 224, 224)."""
        pixels = clip_pixels.to(self.device, self.vision_tower.dtype)
        hidden = self.vision_tower(pixels, output_hidden_states=True).hidden_states
        patches = hidden[self.vision_select_layer][:, 1:]  # drop CLS
        return self.mm_projector(patches.to(self.mm_projector.weight.dtype))

    def sam_embedding(self, sam_pixels: torch.Tensor) -> torch.Tensor:
        """SAM's image embedding (1, C, h, w) in float32, from its padded, normalised input."""
        encoder_dtype = next(self.sam.image_encoder.parameters()).dtype
        return self.sam.image_encoder(sam_pixels.to(self.device, encoder_dtype)).float()

    # ------------------------------------------------------------------ text
    def embed_prompt(self, prompt_ids: Sequence[int], image_tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings (1, T, hidden), the IMAGE_TOKEN_INDEX placeholder replaced by the
        image tokens."""
        split = list(prompt_ids).index(IMAGE_TOKEN_INDEX)
        embed = self.llm.get_input_embeddings()
        before = torch.tensor([prompt_ids[:split]], device=self.device)
        after = torch.tensor([prompt_ids[split + 1 :]], device=self.device)
        image_tokens = image_tokens.to(embed.weight.dtype)
        return torch.cat([embed(before), image_tokens, embed(after)], dim=1)

    # ------------------------------------------------------------------ masks
    def seg_prompts(self, seg_hidden: torch.Tensor) -> torch.Tensor:
        """SAM prompts (N, D) in float32 for the LLM's states at N `[SEG]`s (N, hidden)."""
        fcs_dtype = next(self.text_hidden_fcs.parameters()).dtype
        return self.text_hidden_fcs(seg_hidden.to(self.device, fcs_dtype)).float()

    def masks(self, prompts: torch.Tensor, image: SamImage) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask logits (N, H, W) at the image's size, IoU scores (N,)) of SAM's mask decoder for
        the prompts (N, D) on the image's SAM embedding. LISA gives SAM no dense prompt (the
        "no mask" embedding) and takes one mask per prompt."""
        prompts = torch.as_tensor(prompts).to(self.device, torch.float32)
        count = prompts.shape[0]
        grid = image.sam_embeddings.shape[-2:]
        dense = self.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            count, -1, *grid
        )
        low_res, iou = self.sam.mask_decoder(
            image_embeddings=image.sam_embeddings,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=prompts[:, None, :],
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        logits = postprocess_masks(low_res, self.sam_image_size, image.resize_hw, image.original_hw)
        return logits[:, 0], iou[:, 0]

    # ------------------------------------------------------------------ training
    def add_lora(self, config: object) -> None:
        """Wrap the LLM in a peft model for `config` (a `peft.LoraConfig`). The network replaces
        its own child, so the predictor around it, which reads `net.llm` at each call, runs the
        adapted LLM at once, and `net.llm.save_pretrained` writes the adapter."""
        from peft import get_peft_model

        self.llm = get_peft_model(self.llm, config)

    def forward(
        self, input_ids: Sequence[int], answer_start: int, image: EncodedImage
    ) -> ForcedOutput:
        """The teacher-forced pass over `input_ids` (prompt and answer, IMAGE_TOKEN_INDEX where
        the image goes; the answer from `answer_start` on): the logits that predict each answer
        id and one mask per `[SEG]` of the answer."""
        if image.image_tokens is None:
            raise ValueError("the image was encoded without CLIP: encode_image(image, clip=True)")
        embeddings = self.embed_prompt(input_ids, image.image_tokens)
        hidden = self.llm.get_decoder()(
            inputs_embeds=embeddings,
            attention_mask=torch.ones(embeddings.shape[:2], dtype=torch.long, device=self.device),
            use_cache=False,
        ).last_hidden_state[0]
        # the image placeholder became image_tokens.shape[1] positions
        start = answer_start + image.image_tokens.shape[1] - 1
        predicting = hidden[start - 1 : -1]
        answer_ids = torch.tensor(list(input_ids[answer_start:]), device=self.device)
        answer_logits = self.llm.get_output_embeddings()(predicting).float()
        seg_rows = (answer_ids == self.seg_token_id).nonzero().flatten()
        prompts = self.seg_prompts(predicting[seg_rows])
        if len(seg_rows):
            mask_logits, scores = self.masks(prompts, image)
        else:
            mask_logits = prompts.new_zeros((0, *image.original_hw))
            scores = prompts.new_zeros((0,))
        return ForcedOutput(answer_logits, answer_ids, prompts, mask_logits, scores)
