"""A training set the tiny model learns in a minute on a CPU: dark noise with one red square per
image, "the red square" -> "It is [SEG].", and the lisa-finetune settings the tests train it with.

Shared by the fine-tuning tests (unit/test_finetune.py, unit/test_adapter_card.py) and the node's
adapter test (graph/test_node_adapter.py), which loads what they train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lisa_ros.data import write_sample
from lisa_ros.training.trainer import FinetuneSettings
from testbed.tiny_lisa import CHECKPOINT, CLIP

INSTRUCTION = "the red square"
ANSWER = "It is [SEG]."


def write_squares(folder: Path, count: int, seed: int = 0) -> Path:
    """Dark noise with one red square per image, at its own place and size: the target."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        image = rng.integers(0, 60, (96, 128, 3)).astype(np.uint8)
        size = int(rng.integers(25, 40))
        top, left = int(rng.integers(5, 96 - size - 5)), int(rng.integers(5, 128 - size - 5))
        mask = np.zeros((96, 128), np.uint8)
        mask[top : top + size, left : left + size] = 1
        image[mask == 1] = (230, 40, 40)
        write_sample(folder, f"square_{index}", image, mask, INSTRUCTION, ANSWER)
    return folder


def settings(data: Path, output: Path, **overrides) -> FinetuneSettings:
    values = dict(
        model=str(CHECKPOINT),
        vision_tower=str(CLIP),
        data=str(data),
        output=output,
        precision="fp32",
        device="cpu",
        steps=60,
        batch_size=2,
        grad_accumulation=1,
        learning_rate=5e-3,
        warmup_steps=5,
        questions="as-is",
        save_every=0,
        gradient_checkpointing=False,
        progress="log",
    )
    values.update(overrides)
    return FinetuneSettings(**values)
