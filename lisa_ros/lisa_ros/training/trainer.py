"""The fine-tuning loop: LISA's recipe driven by accelerate, so one script runs everywhere.

On one device it is a plain loop. Under ``accelerate launch`` or ``torchrun`` each process
trains on its share of every batch and accelerate keeps the trained weights in sync with DDP;
the command is the same. (FSDP and DeepSpeed ZeRO are refused: they shard the weights this loop
saves whole; a LoRA step of LISA-7B should fit one GPU.)

The batch order is a function of the seed and the step (a fixed permutation per epoch, split
between processes), so a run resumed from a checkpoint sees the same samples it would have seen.
An optimizer step is ``batch_size x processes x grad_accumulation`` examples.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lisa_ros.data import Sample, load_dataset
from lisa_ros.distributed import Launch, gather_to_all, shard
from lisa_ros.evaluation import MetricSums
from lisa_ros.evaluation.runner import evaluate
from lisa_ros.model.adapter import load_adapter_weights, save_adapter
from lisa_ros.model.checkpoint import resolve_folder
from lisa_ros.model.lisa import LisaModel
from lisa_ros.model.logs import resolve_progress
from lisa_ros.model.teacher_forcing import image_features

from .adapter_card import write_adapter_card
from .examples import ExampleSource
from .settings import FinetuneSettings
from .trainable import LisaForTraining, TrainingExample, make_trainable

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE_FILE = "trainer_state.pt"
TRAIN_LOG_FILE = "train_log.jsonl"
ADAM_BETAS = (0.9, 0.95)  # the authors' DeepSpeed config


class TrainingError(RuntimeError):
    """The run cannot go on (a held-out sample failed); the message says which and why."""


@dataclass
class FinetuneResult:
    """What a run produced: the adapter folder, and the losses and scores on the way."""

    adapter: Path
    steps: int
    losses: list[dict[str, float]]
    evaluations: list[dict[str, Any]]
    model: LisaModel
    """The trained model itself (adapter not merged), as the adapter folder reloads it."""


class Progress:
    """A bar on a terminal, a log line every ~5 % of the steps otherwise; main process only."""

    def __init__(self, total: int, initial: int, enabled: bool, mode: str) -> None:
        self.enabled = enabled
        self.total = total
        self.bar = None
        self.every = max(1, total // 20)
        if enabled and mode == "bars":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="fine-tuning", unit="step")

    def update(self, step: int, losses: dict[str, float], lr: float) -> None:
        if not self.enabled:
            return
        shown = {name: f"{value:.4f}" for name, value in losses.items()}
        if self.bar is not None:
            self.bar.set_postfix(**shown, lr=f"{lr:.2e}", refresh=False)
            self.bar.update(1)
        elif step % self.every == 0 or step == self.total:
            parts = " ".join(f"{name} {value}" for name, value in shown.items())
            logger.info("step %d/%d: %s lr %.2e", step, self.total, parts, lr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to the learning rate, then linear decay to 0 (the authors' WarmupDecayLR)."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def batch_indices(
    micro_step: int, batch_size: int, rank: int, world: int, count: int, seed: int
) -> list[tuple[int, int]]:
    """(epoch, sample index) of this process's share of global micro-batch `micro_step`."""
    first = (micro_step * world + rank) * batch_size
    picked = []
    for position in range(first, first + batch_size):
        epoch, offset = divmod(position, count)
        order = np.random.default_rng([seed, epoch]).permutation(count)
        picked.append((epoch, int(order[offset])))
    return picked


def checkpoints(output: Path) -> list[Path]:
    """The output's checkpoint folders, oldest first."""
    found = [
        p
        for p in output.glob(f"{CHECKPOINT_PREFIX}*")
        if p.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def resume_folder(settings: FinetuneSettings) -> Path | None:
    if settings.resume is None:
        return None
    if settings.resume == "latest":
        found = checkpoints(settings.output)
        if not found:
            raise ValueError(
                f"--resume latest: {settings.output} holds no {CHECKPOINT_PREFIX}* folder"
            )
        return found[-1]
    folder = Path(settings.resume).expanduser()
    if not (folder / TRAINER_STATE_FILE).is_file():
        raise ValueError(f"--resume {folder}: not a checkpoint (no {TRAINER_STATE_FILE})")
    return folder


def check_output(settings: FinetuneSettings) -> None:
    """Refuse to mix a new run into an earlier run's folder unless resuming it."""
    if settings.resume is None and settings.output.exists():
        if checkpoints(settings.output) or (settings.output / TRAIN_LOG_FILE).exists():
            raise ValueError(
                f"{settings.output} holds an earlier run: pass --resume latest to continue it, "
                "or choose another --output"
            )


def evaluate_share(
    lisa: LisaModel, samples: list[Sample], launch: Launch, questions: str = "authors"
) -> MetricSums:
    """lisa-eval's validation protocol on this process's share of `samples`, summed for all
    processes (every process gets the total, so each can record it). `questions` as trained."""
    result = evaluate(lisa, shard(samples, launch), mode="validation", worst=0, questions=questions)
    if result.failure is not None:
        raise TrainingError(
            f"the held-out evaluation failed at sample {result.failure.name}: "
            f"{result.failure.error}"
        )
    total = MetricSums()
    for part in gather_to_all(result.sums, launch):
        total = total + part
    return total


class FinetuneRun:
    """One fine-tuning run: the accelerator, the model, the data and the loop's state.

    `finetune` builds one and calls `train`; `optimizer_step` is one step of it, which
    `benchmarks.finetune` times.
    """

    def __init__(self, settings: FinetuneSettings) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from lisa_ros.model.loading import load_model

        self.settings = settings
        self.accelerator = Accelerator(
            cpu=settings.device == "cpu",
            # bf16 autocast is ours (`_autocast`): accelerate keeps its mixed-precision choice
            # in a process-wide singleton, which a second run in the process could not change
            mixed_precision="no",
        )
        _check_engine(self.accelerator)
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.main = self.accelerator.is_main_process
        self.launch = Launch(self.rank, self.world, self.accelerator.local_process_index)
        self.samples = load_dataset(settings.data)
        self.eval_samples = load_dataset(settings.eval_data) if settings.eval_data else []
        self.lisa = load_model(
            settings.model,
            vision_tower=settings.vision_tower,
            precision=settings.precision,
            device=self.accelerator.device,
            progress=settings.progress if self.main else "log",
        )
        set_seed(settings.seed)  # LoRA's initial weights and dropout
        make_trainable(
            self.lisa.net, settings.lora, gradient_checkpointing=settings.gradient_checkpointing
        )
        # peft records "None" otherwise (it cannot tell where the weights came from)
        for config in self.lisa.net.llm.peft_config.values():
            config.base_model_name_or_path = settings.model
        if settings.init_adapter:
            load_adapter_weights(
                self.lisa.net, resolve_folder(settings.init_adapter, what="adapter")
            )
        self.source = ExampleSource(
            self.samples,
            self.lisa.tokenizer,
            lambda image: image_features(self.lisa, image),
            questions=settings.questions,
            seed=settings.seed,
        )
        module = LisaForTraining(self.lisa.net, settings.loss_weights)
        optimizer = torch.optim.AdamW(
            module.trainable_parameters(),
            lr=settings.learning_rate,
            betas=ADAM_BETAS,
            weight_decay=settings.weight_decay,
        )
        self.module, self.optimizer = self.accelerator.prepare(module, optimizer)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(step, settings.warmup_steps, settings.steps),
        )
        self.step = 0
        self.losses: list[dict[str, float]] = []
        self.evaluations: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ state
    def info(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        settings["output"] = str(self.settings.output)
        return {
            "format": "lisa_ros adapter 1",
            "base_model": self.settings.model,
            "steps": self.step,
            "processes": self.world,
            "settings": settings,
            "last_loss": self.losses[-1] if self.losses else None,
            "evaluations": self.evaluations,
        }

    def save_checkpoint(self) -> None:
        self.accelerator.wait_for_everyone()
        if self.main:
            folder = self.settings.output / f"{CHECKPOINT_PREFIX}{self.step}"
            self.save_adapter(folder)
            torch.save(
                {
                    "step": self.step,
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "losses": self.losses,
                    "evaluations": self.evaluations,
                    "rng": _rng_state(),
                },
                folder / TRAINER_STATE_FILE,
            )
            for old in checkpoints(self.settings.output)[: -self.settings.keep_checkpoints or None]:
                shutil.rmtree(old, ignore_errors=True)
            logger.info("Saved %s", folder)
        self.accelerator.wait_for_everyone()

    def save_adapter(self, folder: Path) -> None:
        """The adapter, its record and its card (peft's own card knows nothing of the run)."""
        info = self.info()
        save_adapter(self.lisa.net, folder, info)
        write_adapter_card(folder, info)

    def restore(self, folder: Path) -> None:
        load_adapter_weights(self.lisa.net, folder)
        state = torch.load(folder / TRAINER_STATE_FILE, map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.losses = list(state["losses"])
        self.evaluations = list(state["evaluations"])
        _set_rng_state(state["rng"])
        logger.info("Resumed from %s at step %d", folder, self.step)

    # ------------------------------------------------------------------ loop
    def _autocast(self) -> torch.autocast:
        """bf16 compute around float32 trained weights in a bf16 model (no-op in fp32)."""
        return torch.autocast(
            self.accelerator.device.type,
            dtype=torch.bfloat16,
            enabled=self.settings.precision == "bf16",
        )

    def examples(self, micro_step: int) -> list[TrainingExample]:
        picked = batch_indices(
            micro_step,
            self.settings.batch_size,
            self.rank,
            self.world,
            len(self.source),
            self.settings.seed,
        )
        return [self.source.example(index, epoch) for epoch, index in picked]

    def optimizer_step(self) -> dict[str, float]:
        accumulation = self.settings.grad_accumulation
        totals = torch.zeros(4, device=self.accelerator.device)
        for micro in range(accumulation):
            micro_step = self.step * accumulation + micro
            syncing = micro == accumulation - 1
            with nullcontext() if syncing else self.accelerator.no_sync(self.module):
                with self._autocast():
                    terms = self.module(self.examples(micro_step))
                self.accelerator.backward(terms.total / accumulation)
            totals += torch.stack([terms.total, terms.text, terms.bce, terms.dice]).detach()
        if self.settings.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.module.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        mean = self.accelerator.reduce(totals / accumulation, reduction="mean").tolist()
        return dict(zip(("loss", "text", "bce", "dice"), mean, strict=True))

    def run_evaluation(self) -> None:
        if not self.eval_samples:
            return
        self.module.eval()
        with self._autocast():
            sums = evaluate_share(
                self.lisa, self.eval_samples, self.launch, self.settings.questions
            )
        self.module.train()
        record = {"step": self.step, "giou": sums.giou, "ciou": sums.ciou, "samples": sums.count}
        self.evaluations.append(record)
        if self.main:
            logger.info(
                "step %d: eval gIoU %.4f cIoU %.4f over %d samples",
                self.step,
                sums.giou,
                sums.ciou,
                sums.count,
            )
            self._log(dict(record, kind="eval"))

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.settings.output / TRAIN_LOG_FILE, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    def train(self) -> FinetuneResult:
        settings = self.settings
        progress = Progress(
            settings.steps, self.step, self.main, resolve_progress(settings.progress)
        )
        self.module.train()
        try:
            while self.step < settings.steps:
                start = time.perf_counter()
                losses = self.optimizer_step()
                lr = self.scheduler.get_last_lr()[0]
                self.losses.append(losses)
                if self.main:
                    self._log(
                        {
                            "kind": "train",
                            "step": self.step,
                            "lr": lr,
                            **losses,
                            "seconds": time.perf_counter() - start,
                        }
                    )
                progress.update(self.step, losses, lr)
                if settings.eval_every and self.step % settings.eval_every == 0:
                    self.run_evaluation()
                if settings.save_every and self.step % settings.save_every == 0:
                    self.save_checkpoint()
        finally:
            progress.close()
        if not self.evaluations or self.evaluations[-1]["step"] != self.step:
            self.run_evaluation()
        self.accelerator.wait_for_everyone()
        if self.main:
            self.save_adapter(settings.output)
        self.accelerator.wait_for_everyone()
        return FinetuneResult(settings.output, self.step, self.losses, self.evaluations, self.lisa)


def _rng_state() -> dict[str, Any]:
    """The generators LoRA's dropout draws from, so a resumed run continues identically."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_engine(accelerator: Any) -> None:
    """One process, or DDP (on GPUs or CPUs): the engines this loop saves and resumes right.

    FSDP and DeepSpeed shard the trained weights and the optimizer state across processes;
    the adapter and checkpoint writing here reads them whole, so it would save one shard.
    """
    from accelerate.utils import DistributedType

    supported = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    if accelerator.distributed_type not in supported:
        raise ValueError(
            f"lisa-finetune runs on one device or under DDP, not {accelerator.distributed_type}: "
            "choose 'multi-GPU' (no FSDP/DeepSpeed) in `accelerate config`; a LoRA step of "
            "LISA-7B should fit one 24 GB GPU with gradient checkpointing (see docs/benchmarks.md)"
        )


def finetune(settings: FinetuneSettings) -> FinetuneResult:
    """Fine-tune `settings.model` on `settings.data`; the adapter lands in `settings.output`.

    Raises ValueError (bad settings, an earlier run in the folder), `DatasetError` (the data,
    one line naming the file) or `LisaLoadError` (the model) before the first training step.
    """
    settings.check()
    check_output(settings)
    resume = resume_folder(settings)
    settings.output.mkdir(parents=True, exist_ok=True)
    run = FinetuneRun(settings)
    if resume is not None:
        run.restore(resume)
    return run.train()
