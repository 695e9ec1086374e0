"""Finding and reading a released LISA checkpoint: folder or hub id, config, weights, token layout.

A LISA checkpoint is a LLaVA-v1 Llama whose `config.json` says `model_type: "llava"` (a name that
transformers >= 4.45 gives to a different architecture), so it cannot go through the Auto classes.
Everything here reads the files directly and hands the parts to the model builder.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import LisaLoadError
from .prompt import SEG_TOKEN
from .tokens import TokenLayout

logger = logging.getLogger(__name__)

# Files a LISA checkpoint folder may need; everything else in a hub repository is left alone.
CHECKPOINT_FILE_PATTERNS = ["*.json", "*.model", "*.bin", "*.safetensors", "*.txt"]

SAFETENSORS_SINGLE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_SINGLE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"

# State-dict prefixes of the released checkpoints.
PROJECTOR_PREFIX = "model.mm_projector."
TEXT_FCS_PREFIX = "model.text_hidden_fcs.0."
SAM_PREFIX = "model.visual_model."
VISION_TOWER_PREFIX = "model.vision_tower."


@dataclass
class LisaCheckpoint:
    """The parts of a checkpoint, split by the component that consumes them."""

    folder: Path
    config: dict[str, Any]
    llm_state: dict[str, torch.Tensor]
    projector_state: dict[str, torch.Tensor]
    text_fcs_state: dict[str, torch.Tensor]
    sam_state: dict[str, torch.Tensor]

    @property
    def vision_tower(self) -> str:
        return self.config.get("mm_vision_tower") or self.config.get("vision_tower") or ""


def is_local_reference(model: str | os.PathLike) -> bool:
    """A string that is meant as a path rather than a hub id ("org/name")."""
    text = os.fspath(model)
    return (
        os.path.isabs(text)
        or text.startswith((".", "~"))
        or text.count("/") != 1
        or os.path.exists(text)
    )


def resolve_folder(
    model: str | os.PathLike, *, what: str = "model", tqdm_class: type | None = None
) -> Path:
    """A local folder for `model`: the folder itself, or a hub snapshot (HF cache, HF_HUB_OFFLINE).

    `tqdm_class` shows the download's progress (None: huggingface_hub's own bars).
    """
    text = os.path.expanduser(os.fspath(model))
    if os.path.isdir(text):
        return Path(text)
    if is_local_reference(text):
        raise LisaLoadError(
            f"{what} folder '{text}' does not exist: "
            "pass an existing folder or a hub id like 'xinlai/LISA-7B-v1'"
        )
    return _download_snapshot(text, what, tqdm_class)


def _download_snapshot(repo_id: str, what: str, tqdm_class: type | None = None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    logger.info("Fetching %s '%s' (Hugging Face cache, downloads if missing)", what, repo_id)
    try:
        return Path(
            snapshot_download(
                repo_id, allow_patterns=CHECKPOINT_FILE_PATTERNS, tqdm_class=tqdm_class
            )
        )
    except GatedRepoError as error:
        raise LisaLoadError(
            f"{what} '{repo_id}' is gated: "
            "accept its licence on the hub and log in with `hf auth login`"
        ) from error
    except RepositoryNotFoundError as error:
        raise LisaLoadError(
            f"{what} '{repo_id}' was not found on the Hugging Face hub: "
            "check the id, or pass a local folder"
        ) from error
    except LocalEntryNotFoundError as error:
        raise LisaLoadError(
            f"{what} '{repo_id}' is not in the Hugging Face cache and the hub cannot be reached "
            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}): "
            f"download it first with `hf download {repo_id}`"
        ) from error
    except OSError as error:
        raise LisaLoadError(f"could not fetch {what} '{repo_id}': {error}") from error


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise LisaLoadError(f"'{folder}' is not a LISA checkpoint: it has no config.json")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise LisaLoadError(f"cannot read '{path}': {error}") from error
    if "hidden_size" not in config or "num_hidden_layers" not in config:
        raise LisaLoadError(
            f"'{folder}' is not a LISA checkpoint: "
            "config.json has no Llama fields (hidden_size, num_hidden_layers)"
        )
    return config


def weight_files(folder: Path) -> list[Path]:
    """A checkpoint's weight files, safetensors preferred, single file or sharded with an index."""
    for single, index in ((SAFETENSORS_SINGLE, SAFETENSORS_INDEX), (BIN_SINGLE, BIN_INDEX)):
        if (folder / index).is_file():
            shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            missing = [name for name in shards if not (folder / name).is_file()]
            if missing:
                raise LisaLoadError(
                    f"checkpoint '{folder}' is incomplete: "
                    f"{index} lists {', '.join(missing)}, which are missing"
                )
            return [folder / name for name in shards]
        if (folder / single).is_file():
            return [folder / single]
    raise LisaLoadError(
        f"'{folder}' is not a LISA checkpoint: "
        f"no {SAFETENSORS_SINGLE}, {SAFETENSORS_INDEX}, {BIN_SINGLE} or {BIN_INDEX}"
    )


def load_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint on the CPU (memory-mapped where the format allows)."""
    state: dict[str, torch.Tensor] = {}
    files = weight_files(folder)
    for number, path in enumerate(files, start=1):
        logger.info("Reading weights %d/%d: %s", number, len(files), path.name)
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state.update(load_file(path, device="cpu"))
            else:
                state.update(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
        except Exception as error:  # torch and safetensors raise many kinds for a corrupt file
            raise LisaLoadError(
                f"cannot read weights '{path}' (corrupt or truncated?): {error}"
            ) from error
    return state


def split_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], ...]:
    """(llm, projector, text_hidden_fcs, sam) state dicts with their LISA prefixes removed."""
    llm, projector, text_fcs, sam = {}, {}, {}, {}
    for key, tensor in state.items():
        if key.startswith(PROJECTOR_PREFIX):
            projector[key[len(PROJECTOR_PREFIX) :]] = tensor
        elif key.startswith(TEXT_FCS_PREFIX):
            text_fcs[key[len(TEXT_FCS_PREFIX) :]] = tensor
        elif key.startswith(SAM_PREFIX):
            sam[key[len(SAM_PREFIX) :]] = tensor
        elif key.startswith(VISION_TOWER_PREFIX) or key.endswith("rotary_emb.inv_freq"):
            continue  # CLIP comes from the vision tower; RoPE frequencies are recomputed
        else:
            llm[key] = tensor
    return llm, projector, text_fcs, sam


def read_checkpoint(folder: Path) -> LisaCheckpoint:
    config = read_config(folder)
    llm, projector, text_fcs, sam = split_state_dict(load_state_dict(folder))
    for part, tensors in (
        ("SAM (model.visual_model.*)", sam),
        ("text_hidden_fcs", text_fcs),
        ("mm_projector", projector),
    ):
        if not tensors:
            raise LisaLoadError(f"'{folder}' is not a LISA checkpoint: its weights have no {part}")
    return LisaCheckpoint(folder, config, llm, projector, text_fcs, sam)


def token_layout(tokenizer: Any) -> TokenLayout:
    """Look LISA's token ids up in the tokenizer: they are never the same across releases."""
    vocab = tokenizer.get_vocab()
    missing = [token for token in (SEG_TOKEN, "<im_start>", "<im_end>") if token not in vocab]
    if missing:
        raise LisaLoadError(
            f"the tokenizer has no {', '.join(missing)} token: this is not a LISA checkpoint"
        )
    return TokenLayout(
        seg=vocab[SEG_TOKEN],
        im_start=vocab["<im_start>"],
        im_end=vocab["<im_end>"],
        im_patch=vocab.get("<im_patch>"),
        bos=tokenizer.bos_token_id,
        eos=tokenizer.eos_token_id,
    )


def resolve_vision_tower(name: str, checkpoint_folder: Path) -> str:
    """The checkpoint's vision tower, with paths relative to the checkpoint folder made absolute."""
    if not name:
        raise LisaLoadError(
            "the checkpoint's config.json names no vision tower: "
            "pass vision_tower (e.g. 'openai/clip-vit-large-patch14')"
        )
    relative = checkpoint_folder / name
    if not os.path.isabs(name) and relative.is_dir():
        return str(relative.resolve())
    return name
