"""benchmarks.finetune on the tiny fixture: it runs lisa-finetune's step with gradient
checkpointing on and off, and prints and records what docs/benchmarks.md quotes.

No timing is asserted (the machine decides those); the layer-pass count is, because it is the
evidence that checkpointing was really on in one column and off in the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from testbed import PACKAGE
from testbed.tiny_lisa import CHECKPOINT, CLIP

TINY_LAYERS = 2


@pytest.fixture(scope="module")
def benchmark():
    from benchmarks import finetune

    return finetune


def test_the_script_prints_and_records_both_settings(tmp_path):
    record = tmp_path / "finetune.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable, "-m", "benchmarks.finetune",
        "--model", str(CHECKPOINT), "--vision-tower", str(CLIP),
        "--device", "cpu", "--warmup", "1", "--steps", "2", "--json", str(record),
    ]  # fmt: skip
    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=PACKAGE, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout

    assert "| per optimizer step" in out and "checkpointing on" in out and "on / off" in out
    for row in (
        "step time, median",
        "step time, p90",
        "time per example, median",
        "peak memory (process RSS)",
        "  in forward + backward",
        "  in AdamW update",
        "growth during the step (process RSS)",
        "decoder layer passes / step",
    ):
        assert f"| {row}" in out, row
    assert "trainable:" in out and "adapter folder (save_adapter):" in out
    assert "not in the step time" in out  # the cached image features are said to be outside
    assert "ESTIMATE" not in out  # only full-size shapes with fewer layers are extrapolated
    assert "step 2" in completed.stderr  # progress goes to stderr

    data = json.loads(record.read_text())
    assert data["precision"] == "fp32" and data["batch_size"] == 2
    on, off = data["modes"]["checkpointing on"], data["modes"]["checkpointing off"]
    for mode in (on, off):
        assert len(mode["steps"]) == 2 and mode["error"] is None
        assert 0 < mode["median_s"] <= mode["p90_s"]
        assert mode["peak_bytes"] == max(mode["backward_peak_bytes"], mode["optimizer_peak_bytes"])
        assert mode["backward_peak_bytes"] > 0 and mode["optimizer_peak_bytes"] > 0
    # 2 examples x 2 layers, each layer run again in backward when checkpointing
    assert off["layer_passes"] == 2 * TINY_LAYERS
    assert on["layer_passes"] == 2 * off["layer_passes"]
    assert 0 < data["parameters"]["trainable"] < data["parameters"]["total"]
    assert data["parameters"]["lora"] > 0
    assert data["adapter_bytes"] == sum(data["adapter_files_bytes"].values()) > 0
    assert {"adapter_model.safetensors", "lisa_modules.safetensors"} <= set(
        data["adapter_files_bytes"]
    )
    assert data["estimate"] is None


def test_the_layer_skipped_step_and_the_extrapolation(benchmark):
    args = benchmark.parse_args(
        ["--model", str(CHECKPOINT), "--vision-tower", str(CLIP), "--device", "cpu"]
    )
    args.batch_size = 1
    with tempfile.TemporaryDirectory() as folder:
        data = benchmark.write_dataset(Path(folder) / "data", 1)
        run = benchmark.make_run(args, data, Path(folder) / "output")
        memory = benchmark.StepMemory(run.accelerator.device)
        modes = [
            benchmark.Mode(benchmark.ON, True, TINY_LAYERS),
            benchmark.Mode(benchmark.OFF, False, TINY_LAYERS),
            benchmark.Mode(benchmark.FIXED, True, 0),
        ]
        benchmark.measure(run, modes, memory, warmup=0, steps=1)
    on, off, fixed = modes
    assert [mode.layer_passes() for mode in modes] == [2 * TINY_LAYERS, TINY_LAYERS, 0]
    decoder = run.lisa.net.llm.get_decoder()
    assert decoder.config.num_hidden_layers == TINY_LAYERS  # restored after the skipped step
    assert all(layer.gradient_checkpointing for layer in decoder.layers)  # as the trainer left it

    # the arithmetic, on round numbers: 2 layers measured; the layer-skipped step takes 1 s and
    # peaks at 10 GiB in forward + backward and 11 GiB in AdamW's update
    gib = 2**30
    for mode, seconds, backward, update in (
        (on, 3.0, 12 * gib, 11 * gib),
        (off, 2.0, 14 * gib, 11 * gib),
        (fixed, 1.0, 10 * gib, 11 * gib),
    ):
        mode.steps = [benchmark.Step(seconds, backward, update, 0, 0, [], {})]
    estimate = benchmark.extrapolate(
        [on, off], fixed, 2, layer_weight_bytes=gib, layer_adapter_bytes=100, adapter_bytes=1000
    )
    on_name, off_name = benchmark.ON, benchmark.OFF
    assert estimate.per_layer_seconds == {on_name: 1.0, off_name: 0.5}
    assert estimate.seconds == {on_name: 3.0 + 30 * 1.0, off_name: 2.0 + 30 * 0.5}
    # a layer adds its weights to both phases, and its activations to forward + backward
    assert estimate.per_layer_bytes == {
        on_name: {"forward + backward": 2 * gib, "AdamW update": gib},
        off_name: {"forward + backward": 3 * gib, "AdamW update": gib},
    }
    assert estimate.phase_peak_bytes[on_name] == {
        "forward + backward": 72 * gib,
        "AdamW update": 41 * gib,
    }
    assert estimate.peak_bytes == {on_name: 72 * gib, off_name: 104 * gib}
    # a phase that peaks lower with the layers than without them is noise: weights only
    on.steps = [benchmark.Step(3.0, 9 * gib, 11 * gib, 0, 0, [], {})]
    estimate = benchmark.extrapolate([on], fixed, 2, gib, 100, 1000)
    assert estimate.per_layer_bytes[on_name]["forward + backward"] == gib
    assert estimate.peak_bytes[on_name] == 11 * gib + 30 * gib
    assert estimate.adapter_bytes == 1000 + 30 * 100
    assert benchmark.percentile([4.0, 1.0, 3.0, 2.0], 90) == 4.0
    assert benchmark.percentile([1.0, 2.0], 50) == 1.0
