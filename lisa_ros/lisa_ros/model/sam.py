"""Segment Anything, sized from the checkpoint's own weights.

LISA's code hard-codes SAM ViT-H. Reading the shapes off the tensors instead lets the same loader
take ViT-H, ViT-L/B variants and the tiny test models. One number cannot be read off the weights:
the head count of the mask decoder's attention (8 in every SAM release). A checkpoint whose decoder
differs says so with the `sam_mask_decoder_heads` key of its config.json.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from .errors import LisaLoadError

DEFAULT_MASK_DECODER_HEADS = 8
CONFIG_KEY_MASK_DECODER_HEADS = "sam_mask_decoder_heads"
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamArchitecture:
    image_size: int
    patch_size: int
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_mlp_ratio: float
    encoder_window_size: int
    encoder_global_attn_indexes: tuple[int, ...]
    encoder_qkv_bias: bool
    encoder_use_rel_pos: bool
    out_chans: int
    mask_in_chans: int
    decoder_depth: int
    decoder_mlp_dim: int
    decoder_num_heads: int
    decoder_attention_downsample_rate: int
    num_multimask_outputs: int
    iou_head_depth: int
    iou_head_hidden_dim: int

    @property
    def image_embedding_size(self) -> int:
        return self.image_size // self.patch_size

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# SAM ViT-H, as segment-anything's build_sam_vit_h makes it (used to build full-size test models).
SAM_VIT_H = SamArchitecture(
    image_size=1024,
    patch_size=16,
    encoder_embed_dim=1280,
    encoder_depth=32,
    encoder_num_heads=16,
    encoder_mlp_ratio=4.0,
    encoder_window_size=14,
    encoder_global_attn_indexes=(7, 15, 23, 31),
    encoder_qkv_bias=True,
    encoder_use_rel_pos=True,
    out_chans=256,
    mask_in_chans=16,
    decoder_depth=2,
    decoder_mlp_dim=2048,
    decoder_num_heads=8,
    decoder_attention_downsample_rate=2,
    num_multimask_outputs=3,
    iou_head_depth=3,
    iou_head_hidden_dim=256,
)


def _count_indexed(state: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indexes = {int(match.group(1)) for key in state if (match := pattern.match(key))}
    return max(indexes) + 1 if indexes else 0


def architecture_from_state_dict(
    state: dict[str, torch.Tensor], mask_decoder_heads: int = DEFAULT_MASK_DECODER_HEADS
) -> SamArchitecture:
    """Infer SAM's shape from its weights (keys as in segment_anything's `Sam.state_dict()`)."""
    try:
        patch = state["image_encoder.patch_embed.proj.weight"]
        embed_dim, _, patch_size, _ = patch.shape
        grid = state["image_encoder.pos_embed"].shape[1]
        depth = _count_indexed(state, "image_encoder.blocks.")
        use_rel_pos = "image_encoder.blocks.0.attn.rel_pos_h" in state
        window_size, global_blocks, head_dim = 0, [], embed_dim
        if use_rel_pos:
            head_dim = state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
            for block in range(depth):
                span = (state[f"image_encoder.blocks.{block}.attn.rel_pos_h"].shape[0] + 1) // 2
                if span == grid:
                    global_blocks.append(block)
                else:
                    window_size = span
        mlp_dim = state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0]
        transformer_dim = state["mask_decoder.iou_token.weight"].shape[1]
        attention_inner = state[
            "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"
        ].shape[0]
        return SamArchitecture(
            image_size=grid * patch_size,
            patch_size=patch_size,
            encoder_embed_dim=embed_dim,
            encoder_depth=depth,
            encoder_num_heads=embed_dim // head_dim,
            encoder_mlp_ratio=mlp_dim / embed_dim,
            encoder_window_size=window_size,
            encoder_global_attn_indexes=tuple(global_blocks),
            encoder_qkv_bias="image_encoder.blocks.0.attn.qkv.bias" in state,
            encoder_use_rel_pos=use_rel_pos,
            out_chans=state["image_encoder.neck.0.weight"].shape[0],
            mask_in_chans=state["prompt_encoder.mask_downscaling.3.weight"].shape[0],
            decoder_depth=_count_indexed(state, "mask_decoder.transformer.layers."),
            decoder_mlp_dim=state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
            decoder_num_heads=mask_decoder_heads,
            decoder_attention_downsample_rate=transformer_dim // attention_inner,
            num_multimask_outputs=state["mask_decoder.mask_tokens.weight"].shape[0] - 1,
            iou_head_depth=_count_indexed(state, "mask_decoder.iou_prediction_head.layers."),
            iou_head_hidden_dim=state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
        )
    except KeyError as error:
        raise LisaLoadError(
            f"the checkpoint's SAM weights are incomplete: no {error.args[0]}"
        ) from error


def build_sam(arch: SamArchitecture) -> nn.Module:
    """An untrained `segment_anything.modeling.Sam` of the given shape; weights are loaded later."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    embedding = arch.image_embedding_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=arch.image_size,
            patch_size=arch.patch_size,
            embed_dim=arch.encoder_embed_dim,
            depth=arch.encoder_depth,
            num_heads=arch.encoder_num_heads,
            mlp_ratio=arch.encoder_mlp_ratio,
            out_chans=arch.out_chans,
            qkv_bias=arch.encoder_qkv_bias,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_rel_pos=arch.encoder_use_rel_pos,
            window_size=arch.encoder_window_size,
            global_attn_indexes=arch.encoder_global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.out_chans,
            image_embedding_size=(embedding, embedding),
            input_image_size=(arch.image_size, arch.image_size),
            mask_in_chans=arch.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=arch.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.out_chans,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=arch.decoder_num_heads,
                attention_downsample_rate=arch.decoder_attention_downsample_rate,
            ),
            transformer_dim=arch.out_chans,
            iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    return sam.eval()


def load_sam(state: dict[str, torch.Tensor], config: dict[str, Any]) -> nn.Module:
    heads = int(config.get(CONFIG_KEY_MASK_DECODER_HEADS, DEFAULT_MASK_DECODER_HEADS))
    sam = build_sam(architecture_from_state_dict(state, heads))
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise LisaLoadError(
            f"the checkpoint's SAM weights do not fit segment-anything's Sam: {error}"
        ) from error
    return sam
