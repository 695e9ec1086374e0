"""The adapter folder's ``README.md``: what the adapter is, for a person who finds the folder.

peft's ``save_pretrained`` writes a blank model card (``base_model: None`` and "More Information
Needed" under every heading). lisa-finetune replaces it with one built from the run's record
(``lisa_adapter.json``, see :mod:`lisa_ros.model.adapter`): what the folder holds, the checkpoint
it adapts, how long it trained on what, and the losses and scores it reached. The YAML header
keeps the keys the Hugging Face hub reads (``base_model``, ``library_name``, ``tags``), so the
folder can be uploaded as it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["CARD_FILE", "adapter_card", "write_adapter_card"]

CARD_FILE = "README.md"


def adapter_card(info: dict[str, Any], name: str = "adapter") -> str:
    """The Markdown card of an adapter whose ``lisa_adapter.json`` record is ``info``."""
    settings = info.get("settings", {})
    base = str(info.get("base_model") or settings.get("model") or "unknown")
    lora = settings.get("lora", {})
    targets = ", ".join(lora.get("targets", ())) or "?"
    lines = [
        "---",
        f"base_model: {json.dumps(base)}",
        "library_name: peft",
        "tags: [lisa, lisa_ros, lora, reasoning-segmentation]",
        "---",
        "",
        f"# LISA adapter: {name}",
        "",
        f"A `lisa-finetune` adapter for the LISA checkpoint `{base}`: LoRA "
        f"(r {lora.get('r', '?')}, alpha {lora.get('alpha', '?')}, on {targets}) on its language "
        "model, plus the token "
        "embeddings, `lm_head`, `text_hidden_fcs` and SAM's mask decoder as trained. It is not a "
        "model on its own: load it on top of that checkpoint.",
        "",
        "## Use",
        "",
        "```",
        f'lisa-segment "..." --image photo.jpg --model {base} --adapter {name}',
        f"ros2 launch lisa_ros lisa.launch.py model:={base} adapter:=$PWD/{name}",
        "```",
        "",
        "## Training",
        "",
        *_training_lines(info, settings),
        "",
        "## Metrics",
        "",
        *_metric_lines(info, settings),
        "",
        "## Files",
        "",
        "- `adapter_config.json`, `adapter_model.safetensors`: the LLM's LoRA (a peft adapter; "
        "embeddings and `lm_head` whole, as `modules_to_save`)",
        "- `lisa_modules.safetensors`: `text_hidden_fcs` and SAM's mask decoder",
        "- `lisa_adapter.json`: every setting of the run, the last losses, the evaluations",
        "- `train_log.jsonl`: one line per step (losses, learning rate) and per evaluation",
        "",
    ]
    return "\n".join(lines)


def _training_lines(info: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    steps, planned = info.get("steps", "?"), settings.get("steps", "?")
    batch = settings.get("batch_size", "?")
    accumulation = settings.get("grad_accumulation", 1)
    processes = info.get("processes", 1)
    rows = [
        ("steps", f"{steps} of {planned}" if steps != planned else f"{steps}"),
        (
            "examples per step",
            f"{batch} x {accumulation} accumulated x {processes} process(es)",
        ),
        ("training data", f"`{settings.get('data', '?')}`"),
        ("questions", str(settings.get("questions", "?"))),
        ("precision", str(settings.get("precision", "?"))),
        ("learning rate", f"{settings.get('learning_rate', '?')} (warm-up then linear decay)"),
        ("seed", str(settings.get("seed", "?"))),
    ]
    if settings.get("init_adapter"):
        rows.append(("started from", f"`{settings['init_adapter']}`"))
    return ["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows)]


def _metric_lines(info: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    lines = []
    last = info.get("last_loss")
    if last:
        parts = ", ".join(f"{key} {value:.4f}" for key, value in last.items())
        lines.append(f"Training loss at the last step: {parts}.")
    else:
        lines.append("No training step was recorded.")
    evaluations = info.get("evaluations") or []
    if not evaluations:
        lines += ["", "Not evaluated (no `--eval-data`)."]
        return lines
    lines += [
        "",
        f"Evaluation on `{settings.get('eval_data', '?')}` (`--eval-data`, lisa-eval's gIoU and "
        "cIoU):",
        "",
        "| step | gIoU | cIoU | samples |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {e['step']} | {e['giou']:.4f} | {e['ciou']:.4f} | {e['samples']} |" for e in evaluations
    ]
    return lines


def write_adapter_card(folder: os.PathLike | str, info: dict[str, Any]) -> Path:
    """Write ``README.md`` into the adapter ``folder`` (replacing peft's blank card)."""
    folder = Path(folder)
    path = folder / CARD_FILE
    path.write_text(adapter_card(info, folder.name), encoding="utf-8")
    return path
