#!/usr/bin/env bash
# The GPU table of the model benchmark in one go: a random full-size LISA-7B (no download), a
# 30-token answer with one [SEG], cached vs reference-style, at bf16, then int8 and nf4 LLMs; the
# time to the first mask of a 64-token explanatory answer; then
# the cost of fine-tuning: lisa-finetune's LoRA step on the same shapes (benchmarks.finetune);
# last, lisa_node's model reloads: CUDA memory allocated after each cleanup (benchmarks.reload,
# needs rclpy and lisa_ros_interfaces; without CUDA the same module reports host memory only).
# Usage: lisa_ros/benchmarks/gpu.sh [OUT_DIR] [extra benchmarks.model options]
# (OUT_DIR relative to lisa_ros/, the folder the benchmarks run from: python -m finds them there.)
# Needs torch with CUDA, transformers, peft, accelerate, segment-anything (and bitsandbytes for the
# quantised rows; a row whose packages are missing fails on its own and the next one still runs).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmark-gpu}
shift || true
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
for quantization in none int8 nf4; do
    options=(--full-size-7b --precision bf16 --device cuda --answer-tokens 30 --repeats 3 --warmup 1)
    [ "$quantization" != none ] && options+=(--quantization "$quantization")
    echo "=== bf16, LLM quantization: $quantization ==="
    "$PYTHON" -m benchmarks.model "${options[@]}" --json "$OUT/$quantization.json" "$@" \
        2>&1 | tee "$OUT/$quantization.txt"
done
# An explanatory checkpoint's answer: "Sure, [SEG]." and 61 more tokens of why. The table's "time to
# first mask" row against "total" is how early a robot can act on the target.
echo "=== bf16, explanatory answer of 64 tokens: time to first mask ==="
"$PYTHON" -m benchmarks.model --full-size-7b --precision bf16 --device cuda --answer-tokens 64 \
    --repeats 3 --warmup 1 --json "$OUT/first_mask.json" "$@" 2>&1 | tee "$OUT/first_mask.txt"
# 2 examples per step at bf16, gradient checkpointing on vs off side by side, peak GPU memory;
# about as long as one row above (making the random weights dominates), so last.
echo "=== fine-tuning step (LoRA), bf16, gradient checkpointing on vs off ==="
"$PYTHON" -m benchmarks.finetune --full-size-7b --precision bf16 --device cuda \
    --warmup 1 --steps 3 --json "$OUT/finetune.json" 2>&1 | tee "$OUT/finetune.txt"
# The node's cleanup -> configure -> activate, a goal each time: what PyTorch has allocated on the
# GPU before each configure must come back to the first cycle's figure (a reload leaves nothing).
echo "=== lisa_node reloads: CUDA memory after each cleanup, bf16 ==="
"$PYTHON" -m benchmarks.reload --full-size-7b --precision bf16 --device cuda --cycles 5 \
    --json "$OUT/reload.json" 2>&1 | tee "$OUT/reload.txt"
