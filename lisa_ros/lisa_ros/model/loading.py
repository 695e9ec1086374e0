"""`load_model`: a released LISA checkpoint (hub id or folder) ready to segment on a device."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .adapter import apply_adapter
from .checkpoint import (
    LisaCheckpoint,
    read_checkpoint,
    resolve_folder,
    resolve_vision_tower,
    token_layout,
)
from .errors import LisaLoadError
from .lisa import LisaModel
from .logs import (
    hub_tqdm_class,
    quiet_int8_cast_warning,
    resolve_progress,
    transformers_progress,
    without_cpu_kernel_notice,
)
from .network import LisaNet
from .options import DEVICE_FORMS, PRECISIONS, QUANTIZATIONS, spoken_choices
from .sam import load_sam
from .versions import check_versions

logger = logging.getLogger(__name__)

# LLM modules kept in 16 bits when the LLM is quantised: the logits decide when [SEG] is emitted
# (the authors' 8/4-bit path quantised lm_head too). The projector, the [SEG] projection and SAM are
# separate modules and never quantised.
UNQUANTIZED_LLM_MODULES = ["lm_head"]

# Fields of LISA's "llava" config.json that describe the Llama decoder itself.
LLAMA_CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "initializer_range",
    "rms_norm_eps",
    "pretraining_tp",
    "tie_word_embeddings",
    "rope_theta",
    "rope_scaling",
    "attention_bias",
    "mlp_bias",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "head_dim",
)


def best_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _parse_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return best_device()
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise LisaLoadError(
            f"device '{device}' is not a torch device: use {spoken_choices(DEVICE_FORMS)}"
        ) from error
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise LisaLoadError(
                f"device '{device}' asked for, but CUDA is not available here: use device 'cpu'"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise LisaLoadError(
                f"device '{device}' does not exist: "
                f"this machine has {torch.cuda.device_count()} GPU(s)"
            )
    return parsed


def check_options(
    precision: str, quantization: str | None, device: str | torch.device | None
) -> tuple[torch.device, torch.dtype]:
    """The device and dtype the load options mean; a LisaLoadError before any work if wrong."""
    check_versions()
    parsed = _parse_device(device)
    return parsed, _validate_options(precision, quantization, parsed)


def _validate_options(
    precision: str, quantization: str | None, device: torch.device
) -> torch.dtype:
    if precision not in PRECISIONS:
        raise LisaLoadError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise LisaLoadError(
            f"quantization '{quantization}' is not one of none, {', '.join(QUANTIZATIONS)}"
        )
    if quantization and device.type not in ("cuda", "cpu"):
        raise LisaLoadError(
            f"{quantization} quantization (bitsandbytes) runs on CUDA (or slowly on the CPU), "
            f"not on {device.type}"
        )
    if quantization and precision == "fp32":
        raise LisaLoadError(
            f"{quantization} quantization computes in 16 bits: use precision bf16 or fp16"
        )
    return getattr(torch, PRECISIONS[precision])


def llama_config(lisa_config: dict[str, Any]) -> Any:
    """A transformers LlamaConfig from the decoder fields of LISA's config.json."""
    from transformers import LlamaConfig

    fields = {
        key: lisa_config[key] for key in LLAMA_CONFIG_KEYS if lisa_config.get(key) is not None
    }
    config = LlamaConfig(**fields)
    config.use_cache = True  # LISA saved use_cache=false, which is what made its generation slow
    return config


def _quantization_config(quantization: str | None, dtype: torch.dtype, device: torch.device) -> Any:
    if quantization is None:
        return None
    try:
        with without_cpu_kernel_notice(relevant=quantization == "nf4" and device.type == "cpu"):
            import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise LisaLoadError(
            f"{quantization} quantization needs bitsandbytes: pip install 'lisa_ros[quantization]'"
        ) from error
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        quiet_int8_cast_warning()
        if dtype != torch.float16:
            logger.info(
                "int8: bitsandbytes computes the quantised layers in fp16, "
                "so their %s inputs are cast to fp16 "
                "(it says so once: 'MatMul8bitLt: inputs will be cast ...'); "
                "precision fp16 avoids the cast",
                str(dtype).removeprefix("torch."),
            )
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=UNQUANTIZED_LLM_MODULES)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=UNQUANTIZED_LLM_MODULES,
    )


def _load_llm(
    checkpoint: LisaCheckpoint, dtype: torch.dtype, device: torch.device, quantization: str | None
) -> nn.Module:
    from transformers import LlamaForCausalLM

    logger.info(
        "Building the language model (%s layers, hidden %s)",
        checkpoint.config["num_hidden_layers"],
        checkpoint.config["hidden_size"],
    )
    try:
        llm = LlamaForCausalLM.from_pretrained(
            None,
            config=llama_config(checkpoint.config),
            state_dict=checkpoint.llm_state,
            dtype=dtype,
            device_map={"": device},
            quantization_config=_quantization_config(quantization, dtype, device),
        )
    except LisaLoadError:
        raise
    except (RuntimeError, ValueError, KeyError) as error:
        raise LisaLoadError(
            f"the checkpoint's language-model weights do not load: {error}"
        ) from error
    if quantization == "nf4" and device.type == "cpu":
        _generic_cpu_nf4_where_needed(llm)
    return llm.eval()


# bitsandbytes' AVX512-BF16 CPU kernel for 4-bit weights repacks them in blocks: it needs a layer's
# input size to be a multiple of the quantisation block (64) and its output size of 32, and fails
# with "shape '[96, 1]' is invalid" at the first forward pass otherwise (full-size LISA layers fit).
CPU_NF4_PACK_OUT = 32


def _generic_cpu_nf4_where_needed(llm: nn.Module) -> None:
    """Route 4-bit layers whose sizes the CPU repacking kernel cannot take to the generic path.

    That is, to bitsandbytes' generic CPU kernel.
    """
    rerouted = []
    for name, module in llm.named_modules():
        if not getattr(module, "support_avx512bf16_for_cpu", False):
            continue  # not a bitsandbytes Linear4bit, or a CPU without that kernel
        state = getattr(module.weight, "quant_state", None)
        block = getattr(state, "blocksize", 64)
        if module.in_features % block or module.out_features % CPU_NF4_PACK_OUT:
            module.support_avx512bf16_for_cpu = False
            rerouted.append(name)
    if rerouted:
        logger.info(
            "nf4 on the CPU: %d layer(s) whose sizes are not multiples of 64 (inputs) "
            "and 32 (outputs) use bitsandbytes' generic CPU kernel (slower), e.g. %s",
            len(rerouted),
            rerouted[0],
        )


def _load_vision_tower(
    name: str, dtype: torch.dtype, device: torch.device
) -> tuple[nn.Module, Any]:
    from transformers import CLIPVisionModel

    # the PIL back-end resizes exactly as the reference did; the torchvision one differs slightly
    try:
        from transformers.models.clip import CLIPImageProcessorPil as ClipProcessor
    except ImportError:  # transformers releases without separate back-ends
        from transformers import CLIPImageProcessor as ClipProcessor

    logger.info("Loading the vision tower %s", name)
    try:
        processor = ClipProcessor.from_pretrained(name)
        tower = CLIPVisionModel.from_pretrained(name, dtype=dtype)
    except OSError as error:
        raise LisaLoadError(
            (
                f"vision tower '{name}' cannot be loaded "
                f"(not a CLIP folder, or not in the HF cache while offline): {error}"
            ).splitlines()[0]
        ) from error
    return tower.to(device).eval(), processor


def _load_tokenizer(folder: Path) -> Any:
    """The checkpoint's tokenizer, with its added tokens ([SEG], <im_start>, ...) as saved.

    (Handing AutoTokenizer a LlamaConfig picks transformers' LlamaTokenizer class, which splits
    `<im_start>` into pieces: the generic backend it picks from LISA's own config keeps the ids
    of the reference.) Parsing LISA's old "llava" config.json warns about `rope_scaling`, which
    only the tokenizer class lookup reads here.
    """
    from transformers import AutoTokenizer

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*rope_scaling.*", category=FutureWarning)
            return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise LisaLoadError(
            f"'{folder}' has no usable tokenizer: {error}".splitlines()[0]
        ) from error


def _linear_from_state(state: dict[str, torch.Tensor], prefix: str = "") -> nn.Linear:
    weight = state[f"{prefix}weight"]
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=f"{prefix}bias" in state)
    linear.load_state_dict(
        {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    )
    return linear


def _text_hidden_fcs(state: dict[str, torch.Tensor]) -> nn.Module:
    """LISA's Sequential(Linear(H, H), ReLU, Linear(H, out_dim), Dropout(0)), from its weights."""
    return nn.Sequential(
        _linear_from_state(state, "0."), nn.ReLU(), _linear_from_state(state, "2."), nn.Dropout(0.0)
    )


def load_model(
    model: str | os.PathLike,
    vision_tower: str | os.PathLike | None = None,
    precision: str = "bf16",
    quantization: str | None = None,
    device: str | torch.device | None = None,
    adapter: str | os.PathLike | None = None,
    progress: str = "auto",
) -> LisaModel:
    """Load a released LISA checkpoint (hub id like 'xinlai/LISA-7B-v1', or a local folder).

    `vision_tower` overrides the CLIP tower named in the checkpoint's config (hub id or folder).
    `precision` sets the LLM, CLIP and SAM image encoder dtype; SAM's prompt encoder, mask decoder
    and the [SEG] projection stay in fp32 (they are tiny and SAM's positional encoding fails in
    bf16). `quantization` ("int8" / "nf4", bitsandbytes; meant for CUDA, also runs on the CPU)
    applies to the LLM's linear layers except `lm_head`; the projector, [SEG] projection and SAM are
    never quantised. `adapter` is a `lisa-finetune` output folder (or hub id; a plain peft LoRA
    folder works too, see `adapter.py`): the fine-tuned model exactly. Hub downloads
    use the Hugging Face cache and honour HF_HUB_OFFLINE. `progress` is how downloads and weight
    loading show progress: "bars" (tqdm, for a terminal), "log" (a few INFO lines of the
    `lisa_ros.model.progress` logger, for log files, pipes and `ros2 launch`) or "auto" (bars when
    stderr is a terminal). Raises LisaLoadError with a one-line explanation when something is wrong.
    """
    check_options(precision, quantization, device)  # fail before any download
    mode = resolve_progress(progress)
    checkpoint = read_checkpoint(
        resolve_folder(model, what="LISA checkpoint", tqdm_class=hub_tqdm_class(mode))
    )
    return build_model(
        checkpoint, vision_tower, precision, quantization, device, adapter, progress=mode
    )


def build_model(
    checkpoint: LisaCheckpoint,
    vision_tower: str | os.PathLike | None = None,
    precision: str = "bf16",
    quantization: str | None = None,
    device: str | torch.device | None = None,
    adapter: str | os.PathLike | None = None,
    progress: str = "auto",
) -> LisaModel:
    """A LisaModel from checkpoint parts already in memory (`load_model` without the file reading).

    The tokenizer is read from `checkpoint.folder`. Benchmarks use this to build full-size random
    models without writing their weights to disk.
    """
    parsed_device, dtype = check_options(precision, quantization, device)
    mode = resolve_progress(progress)
    tokenizer = _load_tokenizer(checkpoint.folder)
    layout = token_layout(tokenizer)
    tower_name = (
        os.fspath(vision_tower)
        if vision_tower
        else resolve_vision_tower(checkpoint.vision_tower, checkpoint.folder)
    )

    with transformers_progress(mode):
        llm = _load_llm(checkpoint, dtype, parsed_device, quantization)
        tower, processor = _load_vision_tower(tower_name, dtype, parsed_device)

    logger.info("Building SAM from the checkpoint's weights")
    sam = load_sam(checkpoint.sam_state, checkpoint.config)
    sam.image_encoder.to(parsed_device, dtype)
    sam.prompt_encoder.to(parsed_device, torch.float32)
    sam.mask_decoder.to(parsed_device, torch.float32)

    projector = _linear_from_state(checkpoint.projector_state).to(parsed_device, dtype)
    text_fcs = _text_hidden_fcs(checkpoint.text_fcs_state).to(parsed_device, torch.float32)
    if adapter:
        llm = apply_adapter(llm, text_fcs, sam.mask_decoder, adapter, merge=quantization is None)
    logger.info(
        "LISA ready on %s (%s%s)",
        parsed_device,
        precision,
        f", {quantization} LLM" if quantization else "",
    )
    net = LisaNet(
        llm=llm,
        vision_tower=tower,
        mm_projector=projector,
        text_hidden_fcs=text_fcs,
        sam=sam,
        seg_token_id=layout.seg,
        vision_select_layer=int(checkpoint.config.get("mm_vision_select_layer", -2)),
    )
    return LisaModel(
        net=net.eval(),
        clip_processor=processor,
        tokenizer=tokenizer,
        layout=layout,
        device=parsed_device,
        dtype=dtype,
    )
