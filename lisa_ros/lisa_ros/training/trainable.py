"""What LISA trains, as one `nn.Module` an engine (accelerate, DDP, FSDP) can wrap.

The authors' recipe: LoRA (r=8, alpha=16, dropout 0.05) on the LLM's `q_proj` and `v_proj`; the
token embeddings, `lm_head`, `text_hidden_fcs` and SAM's mask decoder trained in full; CLIP, the
projector and SAM's image encoder frozen. SAM's IoU head is frozen too: LISA's loss never
reaches it, and a parameter without a gradient stalls DDP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lisa_ros.model.adapter import cast_trainable, quiet_peft_deprecation
from lisa_ros.model.lisa import LisaModel
from lisa_ros.model.logs import without_cpu_kernel_notice
from lisa_ros.model.teacher_forcing import Conversation, ImageFeatures, forced_forward

from .losses import LossTerms, lisa_loss
from .settings import LoraSettings, LossWeights

LLM_MODULES_TO_SAVE = ("embed_tokens", "lm_head")


@dataclass
class TrainingExample:
    """One conversation on one image with its target masks, ready for the forced pass."""

    name: str
    features: ImageFeatures
    conversation: Conversation
    masks: torch.Tensor
    """uint8 (N, H, W), one per [SEG] of the answer: 0 background, 1 target, 255 ignored."""


def make_trainable(
    lisa: LisaModel, lora: LoraSettings | None = None, *, gradient_checkpointing: bool = True
) -> None:
    """Wrap `lisa.llm` in LoRA and unfreeze what LISA trains, in place, in float32."""
    lora = lora or LoraSettings()
    with without_cpu_kernel_notice(relevant=False):  # peft imports bitsandbytes; no 4-bit here
        from peft import LoraConfig, get_peft_model

    for module in (lisa.llm, lisa.vision_tower, lisa.mm_projector, lisa.sam, lisa.text_hidden_fcs):
        module.requires_grad_(False)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.targets),
        modules_to_save=list(LLM_MODULES_TO_SAVE),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with quiet_peft_deprecation():
        lisa.llm = get_peft_model(lisa.llm, config)
    if gradient_checkpointing:
        # transformers 5 renamed it (the old name warns); older releases have the old name only
        checkpointing_kwargs = {"use_reentrant": False}
        if hasattr(lisa.llm, "activation_checkpointing_enable"):
            lisa.llm.activation_checkpointing_enable(
                activation_checkpointing_kwargs=checkpointing_kwargs
            )
        else:
            lisa.llm.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=checkpointing_kwargs
            )
    lisa.text_hidden_fcs.requires_grad_(True)
    lisa.sam.mask_decoder.requires_grad_(True)
    lisa.sam.mask_decoder.iou_prediction_head.requires_grad_(False)
    for module in (lisa.llm, lisa.text_hidden_fcs, lisa.sam.mask_decoder):
        cast_trainable(module, torch.float32)


class LisaForTraining(nn.Module):
    """The trained parts of a LisaModel (after `make_trainable`); `forward` gives a batch's loss.

    The frozen encoders are not submodules: examples carry their outputs (`ImageFeatures`), so an
    engine wrapping this module shards and syncs only what is trained.
    """

    def __init__(self, lisa: LisaModel, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.llm = lisa.llm
        self.text_hidden_fcs = lisa.text_hidden_fcs
        self.mask_decoder = lisa.sam.mask_decoder
        self.weights = weights or LossWeights()
        self._lisa = lisa

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [parameter for parameter in self.parameters() if parameter.requires_grad]

    def forward(self, examples: Sequence[TrainingExample]) -> LossTerms:
        outputs = [
            forced_forward(self._lisa, example.features, example.conversation)
            for example in examples
        ]
        return lisa_loss(
            [output.answer_logits for output in outputs],
            [output.answer_ids for output in outputs],
            [output.mask_logits for output in outputs],
            [
                example.masks.to(output.mask_logits.device)
                for example, output in zip(examples, outputs, strict=True)
            ],
            self.weights,
        )
