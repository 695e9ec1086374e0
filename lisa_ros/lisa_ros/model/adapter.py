"""The fine-tuned adapter folder: what `lisa-finetune` writes and `load_model(adapter=...)` reads.

LISA trains more than LoRA: besides the LLM's LoRA weights it trains the token embeddings,
`lm_head`, `text_hidden_fcs` and SAM's mask decoder in full. The folder holds them so that
loading it gives exactly the fine-tuned model:

- ``adapter_config.json`` + ``adapter_model.safetensors``: a standard peft adapter of the LLM
  (LoRA, with ``embed_tokens`` and ``lm_head`` in ``modules_to_save``), loadable by peft alone;
- ``lisa_modules.safetensors``: ``text_hidden_fcs.*`` and ``mask_decoder.*``, the modules outside
  the LLM, under those prefixes;
- ``lisa_adapter.json``: how it was made (base model, LoRA settings, steps, metrics), for people.

A plain peft LoRA folder without ``lisa_modules.safetensors`` still loads (LLM only).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lisa_ros.file_modes import apply_default_mode

from .checkpoint import resolve_folder
from .errors import LisaLoadError
from .logs import without_cpu_kernel_notice

if TYPE_CHECKING:
    from .network import LisaNet

logger = logging.getLogger(__name__)

LISA_MODULES_FILE = "lisa_modules.safetensors"
ADAPTER_INFO_FILE = "lisa_adapter.json"
PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
TEXT_FCS_PREFIX = "text_hidden_fcs."
MASK_DECODER_PREFIX = "mask_decoder."


def apply_adapter(
    llm: nn.Module,
    text_hidden_fcs: nn.Module,
    mask_decoder: nn.Module,
    adapter: str | os.PathLike,
    *,
    merge: bool,
) -> nn.Module:
    """Load `adapter` (a folder or hub id) into the model's parts; return the LLM to use.

    The LLM becomes a PeftModel, merged into plain weights when `merge` (a quantised LLM cannot
    be merged and keeps the adapter layers). The modules outside the LLM are loaded in place.
    """
    from peft import PeftModel

    folder = resolve_folder(adapter, what="LoRA adapter")
    logger.info("Applying the adapter %s", folder)
    try:
        # peft imports bitsandbytes when it builds the LoRA layers: its notice about a 4-bit CPU
        # kernel is not about this model
        with quiet_peft_deprecation(), without_cpu_kernel_notice(relevant=False):
            llm = PeftModel.from_pretrained(llm, os.fspath(folder), is_trainable=False)
    except Exception as error:  # peft raises ValueError, OSError, KeyError...
        raise LisaLoadError(
            f"LoRA adapter '{adapter}' cannot be applied: {error}".splitlines()[0]
        ) from error
    load_lisa_modules(folder, text_hidden_fcs, mask_decoder, adapter=adapter)
    return llm.merge_and_unload() if merge else llm


@contextmanager
def quiet_peft_deprecation() -> Iterator[None]:
    """peft asks transformers 5 `is_gradient_checkpointing`, which warns that it is renamed: a
    FutureWarning about peft's code, not the caller's, repeated at every adapter."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        yield


def load_lisa_modules(
    folder: Path,
    text_hidden_fcs: nn.Module,
    mask_decoder: nn.Module,
    *,
    adapter: str | os.PathLike | None = None,
) -> bool:
    """Load ``lisa_modules.safetensors`` of `folder` into the two modules; False if absent."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / LISA_MODULES_FILE
    if not path.is_file():
        return False
    name = adapter if adapter is not None else folder
    try:
        tensors = load_file(path)
        for prefix, module in (
            (TEXT_FCS_PREFIX, text_hidden_fcs),
            (MASK_DECODER_PREFIX, mask_decoder),
        ):
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            module.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError, SafetensorError) as error:  # a corrupt file
        raise LisaLoadError(
            f"adapter '{name}': {LISA_MODULES_FILE} does not fit this model: {error}".splitlines()[
                0
            ]
        ) from error
    return True


def save_adapter(net: LisaNet, folder: os.PathLike | str, info: dict[str, Any]) -> Path:
    """Write the adapter folder of a network prepared by `lisa_ros.training.trainable`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # embed_tokens and lm_head are saved whole as modules_to_save; peft's extra embedding-layer
    # logic ("auto") would look the base model's vocabulary up on the hub, offline or not
    net.llm.save_pretrained(os.fspath(folder), save_embedding_layers=False)
    tensors = {
        **{TEXT_FCS_PREFIX + k: v for k, v in net.text_hidden_fcs.state_dict().items()},
        **{MASK_DECODER_PREFIX + k: v for k, v in net.sam.mask_decoder.state_dict().items()},
    }
    save_file(
        {key: value.detach().contiguous().cpu() for key, value in tensors.items()},
        os.fspath(folder / LISA_MODULES_FILE),
        metadata={"format": "pt"},
    )
    (folder / ADAPTER_INFO_FILE).write_text(json.dumps(info, indent=1, default=str) + "\n")
    # safetensors writes owner-only files; an adapter is for other users (a training job, the node)
    apply_default_mode(folder)
    return folder


def load_adapter_weights(net: LisaNet, folder: os.PathLike | str) -> None:
    """Load an adapter folder's weights into a network already prepared for training
    (resuming)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    result = set_peft_model_state_dict(net.llm, load_file(folder / PEFT_WEIGHTS_FILE))
    if result.unexpected_keys:
        raise LisaLoadError(
            f"{folder}: adapter weights this model does not have: {result.unexpected_keys[:3]}"
        )
    if not load_lisa_modules(folder, net.text_hidden_fcs, net.sam.mask_decoder):
        raise LisaLoadError(f"{folder}: no {LISA_MODULES_FILE}: not a lisa-finetune checkpoint")


def cast_trainable(module: nn.Module, dtype: torch.dtype) -> None:
    """Trainable parameters in `dtype` (float32 master weights beside a bf16 frozen model)."""
    for parameter in module.parameters():
        if parameter.requires_grad and parameter.dtype != dtype:
            parameter.data = parameter.data.to(dtype)
