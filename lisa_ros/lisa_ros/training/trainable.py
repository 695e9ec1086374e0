"""What LISA trains: `LisaNet` with LoRA, and the module whose `forward` is a batch's loss.

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
from lisa_ros.model.logs import without_cpu_kernel_notice
from lisa_ros.model.network import LisaNet
from lisa_ros.model.teacher_forcing import Conversation, ImageFeatures

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
    net: LisaNet, lora: LoraSettings | None = None, *, gradient_checkpointing: bool = True
) -> None:
    """LoRA on the LLM and what LISA trains unfrozen, in float32."""
    lora = lora or LoraSettings()
    with without_cpu_kernel_notice(relevant=False):  # peft imports bitsandbytes; no 4-bit here
        from peft import LoraConfig

    net.requires_grad_(False)
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
        net.add_lora(config)
    if gradient_checkpointing:
        # transformers 5 renamed it (the old name warns); older releases have the old name only
        checkpointing_kwargs = {"use_reentrant": False}
        if hasattr(net.llm, "activation_checkpointing_enable"):
            net.llm.activation_checkpointing_enable(
                activation_checkpointing_kwargs=checkpointing_kwargs
            )
        else:
            net.llm.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=checkpointing_kwargs
            )
    net.text_hidden_fcs.requires_grad_(True)
    net.sam.mask_decoder.requires_grad_(True)
    net.sam.mask_decoder.iou_prediction_head.requires_grad_(False)
    for module in (net.llm, net.text_hidden_fcs, net.sam.mask_decoder):
        cast_trainable(module, torch.float32)


class LisaForTraining(nn.Module):
    """A `LisaNet` prepared by `make_trainable`, whose `forward` gives a batch's loss.

    Examples carry the frozen encoders' outputs (`ImageFeatures`), so CLIP and SAM's image
    encoder do not run here: an engine wrapping this module syncs only the parameters that
    require grad.
    """

    def __init__(self, net: LisaNet, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.net = net
        self.weights = weights or LossWeights()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [parameter for parameter in self.parameters() if parameter.requires_grad]

    def forward(self, examples: Sequence[TrainingExample]) -> LossTerms:
        outputs = [
            self.net(
                example.conversation.input_ids, example.conversation.answer_start, example.features
            )
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
