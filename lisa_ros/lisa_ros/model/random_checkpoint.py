"""Write random-weight LISA checkpoints in the released on-disk format, at any size.

Used by the tests (the released token layouts, sharded and safetensors files, at tiny sizes) and by
the benchmark (full-size LISA-7B shapes without downloading 16 GB). The files go through the same
`load_model` path as a real checkpoint, so what is tested is the real loader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .checkpoint import (
    BIN_INDEX,
    BIN_SINGLE,
    PROJECTOR_PREFIX,
    SAFETENSORS_INDEX,
    SAFETENSORS_SINGLE,
    SAM_PREFIX,
    TEXT_FCS_PREFIX,
    LisaCheckpoint,
)
from .prompt import SEG_TOKEN
from .sam import CONFIG_KEY_MASK_DECODER_HEADS, SAM_VIT_H, SamArchitecture, build_sam

TokenLayoutName = Literal["7b", "13b"]
WeightFormat = Literal["bin", "sharded-bin", "safetensors", "sharded-safetensors"]

CORPUS = (
    "where can I throw away the food scraps? "
    "the tool for tightening this screw is the screwdriver. "
    "Sure, it is the bin on the left. Please output segmentation mask. "
    "The cup, the mug and the kettle are on the table; "
    "a chat between a curious human and an artificial intelligence assistant gives "
    "helpful, detailed, and polite answers to the human's questions. USER ASSISTANT"
)

TINY_SAM = SamArchitecture(
    image_size=1024,
    patch_size=16,
    encoder_embed_dim=48,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_mlp_ratio=2.0,
    encoder_window_size=14,
    encoder_global_attn_indexes=(1,),
    encoder_qkv_bias=True,
    encoder_use_rel_pos=True,
    out_chans=32,
    mask_in_chans=4,
    decoder_depth=2,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    decoder_attention_downsample_rate=2,
    num_multimask_outputs=3,
    iou_head_depth=3,
    iou_head_hidden_dim=32,
)


@dataclass
class RandomLisaSpec:
    """Sizes of a random LISA. The defaults are tiny; `full_size_7b()` gives LISA-7B-v1's shapes."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    vocab_size: int | None = None  # None: the tokenizer's length
    max_position_embeddings: int = 1024
    clip: dict[str, Any] = field(
        default_factory=lambda: {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 3,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 14,
            "projection_dim": 32,
            "hidden_act": "quick_gelu",
        }
    )
    sam: SamArchitecture = TINY_SAM
    layout: TokenLayoutName = "7b"
    weight_format: WeightFormat = "bin"
    seed: int = 0

    @classmethod
    def full_size_7b(cls, **overrides: Any) -> "RandomLisaSpec":
        return cls(
            **{
                "hidden_size": 4096,
                "intermediate_size": 11008,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "vocab_size": 32004,
                "max_position_embeddings": 2048,
                "clip": {
                    "hidden_size": 1024,
                    "intermediate_size": 4096,
                    "num_hidden_layers": 24,
                    "num_attention_heads": 16,
                    "image_size": 224,
                    "patch_size": 14,
                    "projection_dim": 768,
                    "hidden_act": "quick_gelu",
                },
                "sam": SAM_VIT_H,
                **overrides,
            }
        )


def write_tokenizer(folder: Path, layout: TokenLayoutName) -> int:
    """A small LLaMA-style BPE tokenizer with LISA's added tokens in the given release's order."""
    from tokenizers import SentencePieceBPETokenizer, processors
    from transformers import PreTrainedTokenizerFast

    base = SentencePieceBPETokenizer(add_prefix_space=True)
    base.train_from_iterator(
        [CORPUS] * 4, vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    base.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=base,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<unk>",
    )
    if layout == "7b":  # LLaVA-Lightning-7B-v1-1 vocabulary, then LISA's [SEG]
        tokenizer.add_tokens(["<im_patch>"], special_tokens=True)
        tokenizer.add_tokens(["<im_start>", "<im_end>"], special_tokens=True)
        tokenizer.add_tokens([SEG_TOKEN])
    else:  # LISA-13B-llama2: [SEG] first, no <im_patch>
        tokenizer.add_tokens([SEG_TOKEN])
        tokenizer.add_tokens(["<im_start>", "<im_end>"], special_tokens=True)
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


def _fill_random(
    module: nn.Module, generator: torch.Generator, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """A random state dict with `module`'s shapes.

    Norm scales (1-D weights) at 1, biases at 0, the rest N(0, 0.02).
    """
    state = {}
    for name, tensor in module.state_dict().items():
        if tensor.ndim == 1 and name.endswith("weight"):
            state[name] = torch.ones(tensor.shape, dtype=dtype)
        elif tensor.ndim == 1:
            state[name] = torch.zeros(tensor.shape, dtype=dtype)
        else:
            state[name] = (torch.randn(tensor.shape, generator=generator) * 0.02).to(dtype)
    return state


def _llama_config(spec: RandomLisaSpec, vocab: int, tower: str) -> dict[str, Any]:
    return {
        "architectures": ["LISAForCausalLM"],
        "model_type": "llava",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "hidden_act": "silu",
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_attention_heads,
        "max_position_embeddings": spec.max_position_embeddings,
        "rms_norm_eps": 1e-6,
        "vocab_size": vocab,
        "tie_word_embeddings": False,
        "use_cache": False,
        "torch_dtype": "bfloat16",
        "mm_hidden_size": spec.clip["hidden_size"],
        "mm_vision_select_layer": -2,
        "mm_use_im_start_end": True,
        "mm_vision_tower": tower,
        "vision_tower": tower,
        "out_dim": spec.sam.out_chans,
        CONFIG_KEY_MASK_DECODER_HEADS: spec.sam.decoder_num_heads,
    }


def write_clip(folder: Path, spec: RandomLisaSpec) -> None:
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(spec.seed)
    CLIPVisionModel(CLIPVisionConfig(**spec.clip)).save_pretrained(folder)
    size = spec.clip["image_size"]
    CLIPImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    ).save_pretrained(folder)


def _save_weights(
    state: dict[str, torch.Tensor], folder: Path, weight_format: WeightFormat
) -> None:
    sharded = weight_format.startswith("sharded")
    safetensors = weight_format.endswith("safetensors")
    keys = sorted(state)
    groups = [keys[: len(keys) // 2], keys[len(keys) // 2 :]] if sharded else [keys]
    stem, suffix = ("model", "safetensors") if safetensors else ("pytorch_model", "bin")
    weight_map = {}
    for number, group in enumerate(groups, start=1):
        name = (
            f"{stem}-{number:05d}-of-{len(groups):05d}.{suffix}"
            if sharded
            else (SAFETENSORS_SINGLE if safetensors else BIN_SINGLE)
        )
        part = {key: state[key].contiguous() for key in group}
        if safetensors:
            from safetensors.torch import save_file

            save_file(part, folder / name, metadata={"format": "pt"})
        else:
            torch.save(part, folder / name)
        weight_map.update(dict.fromkeys(group, name))
    if sharded:
        index = SAFETENSORS_INDEX if safetensors else BIN_INDEX
        (folder / index).write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2)
        )


def random_checkpoint(folder: str | Path, spec: RandomLisaSpec | None = None) -> LisaCheckpoint:
    """A random LISA in memory, for `build_model`; its config, tokenizer and CLIP tower go to disk.

    Writes `folder/checkpoint` (config.json and tokenizer, no weights) and `folder/clip`.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = spec or RandomLisaSpec()
    root = Path(folder)
    checkpoint, clip = root / "checkpoint", root / "clip"
    checkpoint.mkdir(parents=True, exist_ok=True)
    clip.mkdir(parents=True, exist_ok=True)
    vocab = max(write_tokenizer(checkpoint, spec.layout), spec.vocab_size or 0)
    config = _llama_config(spec, vocab, "../clip")
    (checkpoint / "config.json").write_text(json.dumps(config, indent=2))
    write_clip(clip, spec)

    generator = torch.Generator().manual_seed(spec.seed)
    llama_fields = {
        key: config[key]
        for key in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "max_position_embeddings",
        )
    }
    with torch.device("meta"):
        llm = LlamaForCausalLM(LlamaConfig(**llama_fields))
        sam = build_sam(spec.sam)
        text_fcs = nn.Sequential(
            nn.Linear(spec.hidden_size, spec.hidden_size),
            nn.ReLU(),
            nn.Linear(spec.hidden_size, spec.sam.out_chans),
        )
        projector = nn.Linear(spec.clip["hidden_size"], spec.hidden_size)
    return LisaCheckpoint(
        folder=checkpoint,
        config=config,
        llm_state=_fill_random(llm, generator, torch.bfloat16),
        projector_state=_fill_random(projector, generator, torch.bfloat16),
        text_fcs_state=_fill_random(text_fcs, generator, torch.float32),
        sam_state=_fill_random(sam, generator, torch.float32),
    )


def write_random_checkpoint(folder: str | Path, spec: RandomLisaSpec | None = None) -> Path:
    """Write `folder/checkpoint` (LISA layout) and `folder/clip` (its vision tower).

    Returns the `folder/checkpoint` path.
    """
    spec = spec or RandomLisaSpec()
    parts = random_checkpoint(folder, spec)
    state = dict(parts.llm_state)
    state.update({PROJECTOR_PREFIX + k: v for k, v in parts.projector_state.items()})
    state.update({TEXT_FCS_PREFIX + k: v for k, v in parts.text_fcs_state.items()})
    state.update({SAM_PREFIX + k: v for k, v in parts.sam_state.items()})
    _save_weights(state, parts.folder, spec.weight_format)
    return parts.folder
