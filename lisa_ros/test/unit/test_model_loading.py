"""The loader on every checkpoint layout LISA was released in, the hub path, and its failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lisa_ros.model import LisaLoadError, load_model
from lisa_ros.model.checkpoint import load_state_dict, split_state_dict
from lisa_ros.model.generation import ScriptedReply
from lisa_ros.model.random_checkpoint import TINY_SAM, RandomLisaSpec, write_random_checkpoint
from lisa_ros.model.sam import SAM_VIT_H, SamArchitecture, architecture_from_state_dict, build_sam
from testbed.fixture_replies import AND, COMMA, EOS, SEG, SURE
from testbed.tiny_lisa import CHECKPOINT, CLIP

IMAGE = (np.arange(40 * 64 * 3) % 251).astype(np.uint8).reshape(40, 64, 3)


def forced_run(checkpoint: Path, **load_options):
    """Load a checkpoint and segment IMAGE with a reply holding two [SEG] tokens."""
    lisa = load_model(checkpoint, precision="fp32", device="cpu", **load_options)
    words = lisa.tokenizer("the cup", add_special_tokens=False).input_ids
    reply = words + [lisa.layout.seg] + words + [lisa.layout.seg]
    return lisa, lisa.segment(
        IMAGE, "where is the cup?", logits_processor=[ScriptedReply(reply, lisa.layout.eos)]
    )


@pytest.mark.parametrize("layout", ["7b", "13b"])
def test_token_layouts_are_read_from_the_tokenizer(tmp_path, layout):
    lisa, result = forced_run(write_random_checkpoint(tmp_path, RandomLisaSpec(layout=layout)))
    vocab = lisa.tokenizer.get_vocab()
    assert lisa.layout.seg == vocab["[SEG]"]
    if layout == "13b":  # [SEG] was added first and there is no <im_patch>
        assert lisa.layout.im_patch is None and lisa.layout.seg < lisa.layout.im_start
    else:
        assert lisa.layout.im_patch is not None and lisa.layout.seg > lisa.layout.im_end
    assert result.token_ids.count(lisa.layout.seg) == 2
    assert result.mask_logits.shape == (2, 40, 64)
    assert result.text.count("[SEG]") == 2 and "</s>" not in result.text


def test_weight_formats_give_identical_results(tmp_path):
    """The same random weights saved as .bin, sharded .bin with an index, and safetensors."""
    results = {}
    for weight_format in ("bin", "sharded-bin", "safetensors", "sharded-safetensors"):
        folder = tmp_path / weight_format
        checkpoint = write_random_checkpoint(folder, RandomLisaSpec(weight_format=weight_format))
        index = {
            "sharded-bin": "pytorch_model.bin.index.json",
            "sharded-safetensors": "model.safetensors.index.json",
        }
        if weight_format in index:
            assert (checkpoint / index[weight_format]).is_file()
        results[weight_format] = forced_run(checkpoint)[1]
    first = results["bin"]
    for weight_format, result in results.items():
        assert result.token_ids == first.token_ids, weight_format
        np.testing.assert_array_equal(result.mask_logits, first.mask_logits, err_msg=weight_format)


def test_sam_architecture_is_read_from_the_weights(tmp_path):
    other = SamArchitecture(
        **{
            **TINY_SAM.as_dict(),
            "encoder_embed_dim": 64,
            "encoder_depth": 4,
            "encoder_num_heads": 4,
            "encoder_global_attn_indexes": (1, 3),
            "encoder_window_size": 7,
            "out_chans": 48,
            "decoder_mlp_dim": 96,
        }
    )
    for arch in (TINY_SAM, other):
        state = build_sam(arch).state_dict()
        assert architecture_from_state_dict(state, arch.decoder_num_heads) == arch
    with torch.device("meta"):
        vit_h = build_sam(SAM_VIT_H).state_dict()
    assert architecture_from_state_dict(vit_h) == SAM_VIT_H


def test_fixture_checkpoint_state_dict_is_split_by_component():
    llm, projector, text_fcs, sam = split_state_dict(load_state_dict(CHECKPOINT))
    assert set(projector) == {"weight", "bias"}
    assert set(text_fcs) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert "image_encoder.patch_embed.proj.weight" in sam
    assert not any("rotary_emb" in key for key in llm) and "lm_head.weight" in llm


def test_vision_tower_is_resolved_relative_to_the_checkpoint():
    """The fixture's config names its tower '../clip'; explicit and implicit give the same model."""
    implicit = load_model(CHECKPOINT, precision="fp32", device="cpu")
    explicit = load_model(CHECKPOINT, vision_tower=CLIP, precision="fp32", device="cpu")
    expected = explicit.net.vision_tower.state_dict()
    for name, tensor in implicit.net.vision_tower.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0)


def _hub_cache(root: Path, repo_id: str, source: Path) -> Path:
    """A Hugging Face cache holding `source` as the snapshot of `repo_id` (what `hf download`
    leaves)."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = root / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(source, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return root


HUB_SCRIPT = textwrap.dedent(
    """
    import sys
    from lisa_ros.model import LisaLoadError, load_model
    try:
        lisa = load_model(sys.argv[1], vision_tower=sys.argv[2], precision="fp32", device="cpu")
    except LisaLoadError as error:
        print("LOAD-ERROR", error)
        sys.exit(3)
    print("LOADED", lisa.layout.seg)
    """
)


def _load_from_hub(
    repo_id: str, cache: Path, vision_tower: str | Path
) -> subprocess.CompletedProcess:
    # huggingface_hub reads HF_HUB_OFFLINE and the cache path at import: a fresh process is the
    # honest test.
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(cache.parent / "hf-home"),
    }
    return subprocess.run(
        [sys.executable, "-c", HUB_SCRIPT, repo_id, str(vision_tower)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_hub_id_loads_from_the_cache_offline(tmp_path):
    cache = _hub_cache(tmp_path / "hub", "xinlai/LISA-tiny-test", CHECKPOINT)
    done = _load_from_hub("xinlai/LISA-tiny-test", cache, CLIP)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"LOADED {SEG}" in done.stdout


def test_hub_id_missing_from_the_cache_offline_says_how_to_fix(tmp_path):
    (tmp_path / "hub").mkdir()
    done = _load_from_hub("xinlai/LISA-7B-v1", tmp_path / "hub", CLIP)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "HF_HUB_OFFLINE=1" in done.stdout and "hf download xinlai/LISA-7B-v1" in done.stdout


def _copy_checkpoint(tmp_path: Path) -> Path:
    target = tmp_path / "checkpoint"
    shutil.copytree(CHECKPOINT, target)
    return target


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda folder: shutil.rmtree(folder), "does not exist"),
        (lambda folder: (folder / "config.json").unlink(), "no config.json"),
        (lambda folder: (folder / "config.json").write_text("{not json"), "cannot read"),
        (lambda folder: (folder / "pytorch_model.bin").unlink(), "no model.safetensors"),
        (
            lambda folder: (folder / "pytorch_model.bin").write_bytes(b"\x80\x02truncated"),
            "corrupt or truncated",
        ),
        (
            lambda folder: (folder / "pytorch_model.bin.index.json").write_text(
                json.dumps({"weight_map": {"a": "gone.bin"}})
            ),
            "gone.bin",
        ),
    ],
    ids=[
        "missing-folder",
        "no-config",
        "bad-config",
        "no-weights",
        "truncated-weights",
        "missing-shard",
    ],
)
def test_broken_checkpoints_raise_a_one_line_error(tmp_path, damage, message):
    folder = _copy_checkpoint(tmp_path)
    damage(folder)
    with pytest.raises(LisaLoadError) as error:
        load_model(folder, vision_tower=CLIP, precision="fp32", device="cpu")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_plain_llama_folder_is_not_taken_for_lisa(tmp_path):
    folder = _copy_checkpoint(tmp_path)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    torch.save(
        {k: v for k, v in state.items() if not k.startswith("model.visual_model.")},
        folder / "pytorch_model.bin",
    )
    with pytest.raises(LisaLoadError, match="no SAM"):
        load_model(folder, vision_tower=CLIP, precision="fp32", device="cpu")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"precision": "fp8"}, "precision 'fp8'"),
        ({"quantization": "int4"}, "quantization 'int4'"),
        ({"quantization": "nf4", "device": "cpu", "precision": "fp32"}, "16 bits"),
        ({"device": "tpu:0"}, "not a torch device"),
        ({"vision_tower": "/nonexistent/clip"}, "vision tower"),
        ({"progress": "quiet"}, "progress 'quiet'"),
    ],
)
def test_bad_options_raise_clear_errors(options, message):
    options = {"precision": "fp32", "device": "cpu", **options}
    with pytest.raises(LisaLoadError, match=message):
        load_model(CHECKPOINT, **options)


def test_every_precision_name_means_its_torch_dtype():
    from lisa_ros.model.loading import check_options
    from lisa_ros.model.options import PRECISIONS

    dtypes = {name: check_options(name, None, "cpu")[1] for name in PRECISIONS}
    assert dtypes == {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def test_a_bad_option_names_the_accepted_ones():
    with pytest.raises(LisaLoadError, match="not one of none, int8, nf4"):
        load_model(CHECKPOINT, precision="bf16", quantization="int4", device="cpu")
    with pytest.raises(LisaLoadError, match="use 'cpu', 'cuda' or 'cuda:<index>'"):
        load_model(CHECKPOINT, precision="bf16", device="tpu:0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_device_without_cuda_says_so():
    with pytest.raises(LisaLoadError, match="CUDA is not available"):
        load_model(CHECKPOINT, device="cuda", precision="fp32")


def test_lora_adapter_is_applied_to_the_llm(tmp_path):
    from peft import LoraConfig, get_peft_model

    base = load_model(CHECKPOINT, precision="fp32", device="cpu")
    peft_model = get_peft_model(
        base.net.llm,
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(tmp_path / "adapter", save_embedding_layers=False)
    expected = {
        name: module.get_delta_weight("default")
        for name, module in peft_model.named_modules()
        if hasattr(module, "get_delta_weight")
    }
    assert expected

    adapted = load_model(CHECKPOINT, precision="fp32", device="cpu", adapter=tmp_path / "adapter")
    plain = load_model(CHECKPOINT, precision="fp32", device="cpu")
    weights, plain_weights = adapted.net.llm.state_dict(), plain.net.llm.state_dict()
    for name, delta in expected.items():
        key = name.removeprefix("base_model.model.") + ".weight"
        torch.testing.assert_close(weights[key], plain_weights[key] + delta)


def test_missing_adapter_is_a_load_error(tmp_path):
    with pytest.raises(LisaLoadError, match="adapter"):
        load_model(CHECKPOINT, precision="fp32", device="cpu", adapter=tmp_path / "no-adapter")


@pytest.mark.parametrize("quantization", ["int8", "nf4"])
def test_quantization_keeps_lm_head_projector_and_sam_in_full_precision(
    quantization, fixture_image
):
    bnb = pytest.importorskip(
        "bitsandbytes", reason="the quantization extra (pip install 'lisa_ros[quantization]')"
    )
    lisa = load_model(CHECKPOINT, precision="bf16", quantization=quantization, device="cpu")
    quantized = bnb.nn.Linear8bitLt if quantization == "int8" else bnb.nn.Linear4bit
    assert isinstance(lisa.net.llm.model.layers[0].self_attn.q_proj, quantized)
    assert isinstance(lisa.net.llm.model.layers[0].mlp.down_proj, quantized)
    for module in (
        lisa.net.llm.lm_head,
        lisa.net.mm_projector,
        lisa.net.text_hidden_fcs[0],
        lisa.net.text_hidden_fcs[2],
    ):
        assert type(module) is torch.nn.Linear
    assert all(type(m) is not quantized for m in lisa.net.sam.modules())
    result = lisa.segment(
        fixture_image, "where?", logits_processor=[ScriptedReply([SURE, COMMA, SEG, AND, SEG, EOS])]
    )
    assert result.masks.shape == (2, 300, 420)


def test_nf4_on_the_cpu_takes_layer_sizes_the_packed_kernel_cannot(tmp_path, fixture_image):
    """bitsandbytes' AVX512-BF16 CPU kernel repacks 4-bit weights in blocks of 64 inputs and 32
    outputs: a 96-wide model failed at its first step with "shape '[96, 1]' is invalid" (on such
    CPUs)."""
    pytest.importorskip(
        "bitsandbytes", reason="the quantization extra (pip install 'lisa_ros[quantization]')"
    )
    folder = write_random_checkpoint(
        tmp_path, RandomLisaSpec(hidden_size=96, intermediate_size=160)
    )
    lisa = load_model(folder, precision="bf16", quantization="nf4", device="cpu")
    words = lisa.tokenizer("the cup", add_special_tokens=False).input_ids
    result = lisa.segment(
        fixture_image,
        "where?",
        logits_processor=[ScriptedReply(words + [lisa.layout.seg], lisa.layout.eos)],
    )
    assert result.masks.shape == (1, 300, 420)


@pytest.mark.parametrize(
    "torch_version, transformers_version, message",
    [
        ("2.5.1+cu121", "5.24.0", "torch 2.5.1+cu121 is too old: lisa_ros needs torch >= 2.6"),
        ("2.14.1", "5.23.0", "transformers 5.23.0 is too old: lisa_ros needs transformers >= 5.24"),
    ],
)
def test_too_old_torch_or_transformers_is_refused_at_load(
    monkeypatch, torch_version, transformers_version, message
):
    """Not an AttributeError at the first request (old torch), nor other token ids than the
    reference (old transformers)."""
    import transformers

    monkeypatch.setattr(torch, "__version__", torch_version)
    monkeypatch.setattr(transformers, "__version__", transformers_version)
    with pytest.raises(LisaLoadError) as error:
        load_model(CHECKPOINT, precision="fp32", device="cpu")
    assert str(error.value).startswith(message) and "pip install -U" in str(error.value)


@pytest.mark.parametrize(
    "torch_version, transformers_version",
    [("2.6.0a0+git1234", "5.24.0.dev0"), ("2.14.1", "5.30.2"), ("2.6", "5.24")],
)
def test_supported_versions_pass_the_check(torch_version, transformers_version):
    from lisa_ros.model.versions import check_versions

    check_versions(torch_version, transformers_version)


def test_in_memory_random_model_equals_the_written_one(tmp_path):
    """build_model on parts in memory is load_model without the file reading."""
    from lisa_ros.model import build_model
    from lisa_ros.model.random_checkpoint import random_checkpoint

    written = forced_run(write_random_checkpoint(tmp_path / "disk"))[1]
    lisa = build_model(random_checkpoint(tmp_path / "memory"), precision="fp32", device="cpu")
    words = lisa.tokenizer("the cup", add_special_tokens=False).input_ids
    reply = words + [lisa.layout.seg] + words + [lisa.layout.seg]
    in_memory = lisa.segment(
        IMAGE, "where is the cup?", logits_processor=[ScriptedReply(reply, lisa.layout.eos)]
    )
    assert in_memory.token_ids == written.token_ids
    np.testing.assert_array_equal(in_memory.mask_logits, written.mask_logits)
