"""What lisa-finetune tells people about adapters: the card in the adapter folder, and its --help
on --adapter vs --init-adapter."""

from __future__ import annotations

import json
import logging

import pytest
from squares import settings, write_squares

from lisa_ros.cli import finetune as finetune_cli
from lisa_ros.training.adapter_card import adapter_card
from lisa_ros.training.trainer import finetune
from testbed.tiny_lisa import CHECKPOINT


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Three real steps on the tiny model, evaluated, with a checkpoint at step 2."""
    root = tmp_path_factory.mktemp("card")
    squares = write_squares(root / "squares", 2)
    level = logging.getLogger("lisa_ros").level
    try:
        return finetune(
            settings(squares, root / "my_adapter", steps=3, eval_data=str(squares), save_every=2)
        )
    finally:
        logging.getLogger("lisa_ros").setLevel(level)


def test_the_card_says_what_the_adapter_is_its_base_model_steps_and_metrics(run):
    card = (run.adapter / "README.md").read_text()
    info = json.loads((run.adapter / "lisa_adapter.json").read_text())
    assert "More Information Needed" not in card and "base_model: None" not in card
    assert card.startswith(f'---\nbase_model: "{CHECKPOINT}"\n')
    assert "# LISA adapter: my_adapter" in card
    assert f"A `lisa-finetune` adapter for the LISA checkpoint `{CHECKPOINT}`" in card
    assert "| steps | 3 |" in card
    last = info["last_loss"]["loss"]
    assert f"Training loss at the last step: loss {last:.4f}" in card
    scores = info["evaluations"][-1]
    assert scores["step"] == 3
    assert f"| 3 | {scores['giou']:.4f} | {scores['ciou']:.4f} | 2 |" in card


def test_peft_records_the_base_model_too(run):
    config = json.loads((run.adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(CHECKPOINT)


def test_a_checkpoint_has_its_own_card(run):
    card = (run.adapter / "checkpoint-2" / "README.md").read_text()
    assert "# LISA adapter: checkpoint-2" in card and "| steps | 2 of 3 |" in card


def test_a_card_without_evaluations_or_steps_says_so():
    card = adapter_card({"base_model": "xinlai/LISA-7B-v1", "steps": 0, "settings": {}}, "a")
    assert "No training step was recorded." in card
    assert "Not evaluated (no `--eval-data`)." in card
    assert 'base_model: "xinlai/LISA-7B-v1"' in card


def test_help_tells_adapter_from_init_adapter_and_resume():
    text = " ".join(finetune_cli.build_parser().format_help().split())
    assert "--adapter ADAPTER not accepted for training" in text
    assert "train on from an adapter with --init-adapter" in text
    assert (
        "--init-adapter DIR start this run from a lisa-finetune adapter's trained weights" in text
    )
    assert "--init-adapter DIR begins a new run" in text
    assert "--resume continues an interrupted run" in text


def test_adapter_is_refused_with_the_way_to_train_on(tmp_path, capsys):
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in ("lisa_ros", finetune_cli.PROG)}
    try:
        status = finetune_cli.main(
            ["--model", "m", "--data", str(tmp_path), "--output", str(tmp_path / "o"),
             "--adapter", "old"]
        )  # fmt: skip
    finally:  # main() set up logging for a command line: give the other tests theirs back
        root.handlers[:] = handlers
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert status == 2
    assert "use --init-adapter" in capsys.readouterr().err
