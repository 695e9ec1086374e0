"""What a fine-tuning run is told: plain data, torch-free, so `lisa-finetune --help` and its option
checks answer at once. The defaults are the LISA authors' (`train_ds.py` and the paper).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LORA_TARGETS = ("q_proj", "v_proj")


@dataclass(frozen=True)
class LossWeights:
    """The paper's weights: text 1.0, BCE 2.0, Dice 0.5."""

    text: float = 1.0
    bce: float = 2.0
    dice: float = 0.5


@dataclass(frozen=True)
class LoraSettings:
    """The LoRA of the authors' `train_ds.py` by default."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: tuple[str, ...] = LORA_TARGETS


@dataclass
class FinetuneSettings:
    """What `lisa-finetune` takes; the defaults are the authors' (LoRA, loss, optimiser)."""

    model: str
    data: str
    output: Path
    eval_data: str | None = None
    vision_tower: str | None = None
    precision: str = "bf16"
    device: str | None = None
    steps: int = 500
    batch_size: int = 2
    grad_accumulation: int = 10
    learning_rate: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora: LoraSettings = field(default_factory=LoraSettings)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    gradient_checkpointing: bool = True
    questions: str = "authors"
    eval_every: int = 0
    save_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0
    resume: str | None = None
    init_adapter: str | None = None
    progress: str = "auto"

    def check(self) -> None:
        """A ValueError naming the option, before anything loads."""
        for name in ("steps", "batch_size", "grad_accumulation"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "save_every", "keep_checkpoints", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.device not in (None, "cpu", "cuda"):
            raise ValueError(
                f"device {self.device}: lisa-finetune takes cpu or cuda; each process uses "
                "cuda:LOCAL_RANK, so choose GPUs with CUDA_VISIBLE_DEVICES"
            )
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(
                f"precision {self.precision} cannot train: use bf16 (GPU) or fp32 "
                "(fp16 would need loss scaling and LISA trained in bf16)"
            )
