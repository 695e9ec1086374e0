"""What loading and quantised inference print: log lines in a log, bars on a terminal, one
warning."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from lisa_ros.model import LisaLoadError, load_model, logs
from lisa_ros.model.generation import ScriptedReply
from testbed.fixture_replies import REPLY_WITH_EOS
from testbed.tiny_lisa import CHECKPOINT, CLIP

LOAD_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    from lisa_ros.model import load_model
    load_model(
        sys.argv[1], vision_tower=sys.argv[2], precision="fp32", device="cpu", progress=sys.argv[3]
    )
    """
)


def _load_in_a_process(progress: str, **env: str) -> str:
    """stderr of a fresh process that loads the fixture with stderr on a pipe, as under a launcher.

    Read as bytes: text mode would turn the bars' carriage returns into newlines.
    """
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(CHECKPOINT), str(CLIP), progress],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=300,
    )
    err = done.stderr.decode()
    assert done.returncode == 0, err
    return err


def test_a_load_into_a_pipe_prints_log_lines_not_bars():
    err = _load_in_a_process("auto")
    assert "\r" not in err
    lines = err.splitlines()
    assert all(line.strip() for line in lines), lines  # no blank lines
    assert "INFO lisa_ros.model.progress: Loading weights: 21/21 in" in err  # the LLM
    assert "INFO lisa_ros.model.progress: Loading weights: 55/55 in" in err  # CLIP
    assert "LISA ready" in lines[-1]


def test_bars_are_kept_when_asked_for():
    assert "\rLoading weights" in _load_in_a_process("bars")


def test_the_hugging_face_switch_turns_progress_off_lines_included():
    err = _load_in_a_process("log", HF_HUB_DISABLE_PROGRESS_BARS="1")
    assert "Loading weights" not in err and "\r" not in err
    assert "LISA ready" in err


def test_auto_means_bars_only_on_a_terminal(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setattr(sys, "stderr", Stream(True))
    assert logs.resolve_progress("auto") == "bars"
    monkeypatch.setattr(sys, "stderr", Stream(False))
    assert logs.resolve_progress("auto") == "log"
    monkeypatch.setattr(sys, "stderr", None)
    assert logs.resolve_progress("auto") == "log"
    assert logs.resolve_progress("bars") == "bars"
    with pytest.raises(LisaLoadError, match="progress 'quiet'"):
        logs.resolve_progress("quiet")


def test_log_progress_reports_every_ten_percent_then_once_at_the_end(monkeypatch, caplog):
    monkeypatch.setattr(logs, "LOG_INTERVAL_S", 0.0)
    caplog.set_level(logging.INFO, logger="lisa_ros.model.progress")
    bar = logs.LogProgress(
        total=2_000_000, desc="Downloading", unit="B", unit_scale=True, mininterval=0
    )
    for _ in range(100):
        bar.update(20_000)
    bar.close()
    bar.close()  # a second close (tqdm's __del__ closes again) says nothing more
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == "Downloading: 10% (200kB of 2.00MB)"
    assert [m.split(":")[1].split("%")[0].strip() for m in messages[:-1]] == [
        str(p) for p in range(10, 100, 10)
    ]
    assert messages[-1].startswith("Downloading: 2.00MB in ")


def test_log_progress_is_rate_limited_and_silent_when_nothing_happened(caplog):
    caplog.set_level(logging.INFO, logger="lisa_ros.model.progress")
    bar = logs.LogProgress(total=100, desc="Loading weights", mininterval=0)
    for _ in range(100):  # much faster than LOG_INTERVAL_S: only the closing line
        bar.update(1)
    bar.close()
    logs.LogProgress(total=0, desc="Reconstructing").close()
    assert [record.getMessage().split(" in ")[0] for record in caplog.records] == [
        "Loading weights: 100/100"
    ]


def test_log_progress_works_as_huggingface_hub_uses_a_tqdm_class(caplog):
    """snapshot_download's file counter: hf_thread_map with our class (no network needed)."""
    from huggingface_hub.utils import hf_thread_map

    caplog.set_level(logging.INFO, logger="lisa_ros.model.progress")
    assert logs.hub_tqdm_class("log") is logs.LogProgress and logs.hub_tqdm_class("bars") is None
    assert hf_thread_map(
        lambda x: 2 * x, [1, 2, 3], desc="Fetching 3 files", tqdm_class=logs.LogProgress
    ) == [2, 4, 6]
    assert [record.getMessage().split(" in ")[0] for record in caplog.records] == [
        "Fetching 3 files: 3/3"
    ]


def test_transformers_hook_is_restored_after_a_load():
    from transformers.utils import logging as hf_logging

    def mine(factory, args, kwargs):
        return factory(*args, **kwargs)

    previous = hf_logging.set_tqdm_hook(mine)
    try:
        load_model(CHECKPOINT, precision="fp32", device="cpu", progress="log")
        assert hf_logging.set_tqdm_hook(previous) is mine
    finally:
        hf_logging.set_tqdm_hook(previous)


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None,
    reason="the quantization extra (pip install 'lisa_ros[quantization]')",
)
def test_int8_cast_warning_appears_once_and_the_load_says_what_it_means(fixture_image, caplog):
    # (not importorskip: importing bitsandbytes here would print its notice before the load could
    # drop it)
    caplog.set_level(logging.INFO)
    lisa = load_model(CHECKPOINT, precision="bf16", quantization="int8", device="cpu")
    for _ in range(2):
        lisa.segment(fixture_image, "where?", logits_processor=[ScriptedReply(REPLY_WITH_EOS)])
    casts = [
        r for r in caplog.records if r.getMessage().startswith("MatMul8bitLt: inputs will be cast")
    ]
    assert len(casts) <= 1  # at most one: an earlier int8 test in this process may have had it
    explained = [
        r for r in caplog.records if r.name == "lisa_ros.model.loading" and "int8" in r.getMessage()
    ]
    assert explained and "computes the quantised layers in fp16" in explained[0].getMessage()
    # The CPU 4-bit kernel notice is about nf4 only.
    assert not any(r.getMessage().startswith(logs.CPU_KERNEL_MESSAGE) for r in caplog.records)


def test_once_filter_is_added_once_and_leaves_other_records_alone():
    logs.quiet_int8_cast_warning()
    logs.quiet_int8_cast_warning()
    bnb_logger = logging.getLogger(logs.INT8_CAST_LOGGER)
    filters = [f for f in bnb_logger.filters if isinstance(f, logs.OncePerProcess)]
    assert len(filters) == 1
    other = logging.LogRecord(
        logs.INT8_CAST_LOGGER, logging.WARNING, __file__, 1, "something else", None, None
    )
    assert filters[0].filter(other) and filters[0].filter(other)
