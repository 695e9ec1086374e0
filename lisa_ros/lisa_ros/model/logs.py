"""What a model load prints: progress that suits where it goes, and library chatter kept to a line.

Hugging Face libraries draw tqdm bars: redrawn in place with carriage returns, which on a terminal
is what a person wants, and in a log (a file, a pipe, `ros2 launch`, whose pseudo-terminal is read
line by line) is a run of blank or garbled lines. `load_model(progress=...)` picks:

- ``"bars"``: the libraries' own bars, untouched;
- ``"log"``: the same progress as a few INFO lines of the ``lisa_ros.model.progress`` logger
  ("Loading weights: 21/21 in 0.4 s", a download every 10 % at most every few seconds);
- ``"auto"`` (default): bars when stderr is a terminal, log lines otherwise.

The Hugging Face switches still apply in both modes: `HF_HUB_DISABLE_PROGRESS_BARS=1`,
`huggingface_hub.utils.disable_progress_bars()` or
`transformers.utils.logging.disable_progress_bar()` turn the progress off, lines included.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.std import tqdm as _std_tqdm

from .errors import LisaLoadError

progress_logger = logging.getLogger("lisa_ros.model.progress")

PROGRESS_MODES = ("auto", "bars", "log")
# A progress line at most this often (seconds) while a bar advances, each at a new 10 % step;
# without a known total, one line this often.
LOG_INTERVAL_S = 5.0
LOG_INTERVAL_NO_TOTAL_S = 30.0


def resolve_progress(progress: str) -> str:
    """ "bars" or "log" for a `progress` option; LisaLoadError for an unknown one."""
    if progress not in PROGRESS_MODES:
        raise LisaLoadError(f"progress '{progress}' is not one of {', '.join(PROGRESS_MODES)}")
    if progress != "auto":
        return progress
    stream = sys.stderr
    try:
        return "bars" if stream is not None and stream.isatty() else "log"
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return "log"


class _Discard:
    """A stream that keeps nothing: where LogProgress's inherited tqdm drawing goes."""

    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class LogProgress(_std_tqdm):
    """A tqdm reporting via `logging` (INFO), not drawing: a few lines, no carriage returns.

    It is a real tqdm, so every caller's use of the tqdm API (iteration, update, totals that grow,
    descriptions, postfixes, locks) works; only what is shown differs: a line when the bar passes a
    new 10 % step, at most every LOG_INTERVAL_S, and one line when it closes.
    """

    monitor_interval = 0  # no tqdm monitor thread

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("name", None)  # huggingface_hub's bar-group name, not a tqdm argument
        kwargs["file"] = _Discard()
        kwargs.setdefault("mininterval", 1.0)
        self._closed_log = False
        self._last_line_at = time.monotonic()
        self._last_step = 0
        super().__init__(*args, **kwargs)

    def _amount(self, value: float) -> str:
        if self.unit_scale:
            return f"{self.format_sizeof(value, divisor=self.unit_divisor)}{self.unit}"
        return f"{int(value)}"

    def _label(self) -> str:
        return (self.desc or "progress").rstrip(": ")

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self._closed_log or msg == "":
            return True
        now = time.monotonic()
        n, total = self.n, self.total
        if total:
            step = int(10 * n / total)
            if self._last_step < step < 10 and now - self._last_line_at >= LOG_INTERVAL_S:
                progress_logger.info(
                    "%s: %d%% (%s of %s)",
                    self._label(),
                    10 * step,
                    self._amount(n),
                    self._amount(total),
                )
                self._last_step, self._last_line_at = step, now
        elif n and now - self._last_line_at >= LOG_INTERVAL_NO_TOTAL_S:
            progress_logger.info("%s: %s so far", self._label(), self._amount(n))
            self._last_line_at = now
        return True

    def close(self) -> None:
        if not getattr(self, "disable", True) and not self._closed_log:
            self._closed_log = True
            if self.n:
                elapsed = self._time() - self.start_t
                done = self._amount(self.n)
                if self.total and not self.unit_scale:
                    done = f"{done}/{self._amount(self.total)}"
                progress_logger.info("%s: %s in %.1f s", self._label(), done, elapsed)
        super().close()


def _hub_bars_disabled() -> bool:
    from huggingface_hub.utils import are_progress_bars_disabled

    return are_progress_bars_disabled()


def hub_tqdm_class(mode: str) -> type | None:
    """The `tqdm_class` for huggingface_hub downloads in `mode` (None: the hub's own bars)."""
    if mode == "log" and not _hub_bars_disabled():
        return LogProgress
    return None


@contextmanager
def transformers_progress(mode: str) -> Iterator[None]:
    """While open, transformers' bars (weight loading) follow `mode`; restored afterwards.

    Recent transformers releases take a hook for their tqdm (`set_tqdm_hook`); with a release
    without it, log mode switches its bars off for the duration instead (the core's own log lines
    still tell the steps).
    """
    if mode != "log":
        yield
        return
    from transformers.utils import logging as hf_logging

    if (
        not hf_logging.is_progress_bar_enabled()
    ):  # switched off by the user: nothing, not even lines
        yield
        return
    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    if set_hook is not None:

        def hook(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return LogProgress(*args, **kwargs)

        previous = set_hook(hook)
        try:
            yield
        finally:
            set_hook(previous)
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------
# bitsandbytes

# bitsandbytes' int8 matmul logs this WARNING on every forward pass whose input is not fp16: with
# precision bf16 that is once per layer per decoding step, hundreds of lines per answer.
INT8_CAST_LOGGER = "bitsandbytes.autograd._functions"
INT8_CAST_MESSAGE = "MatMul8bitLt: inputs will be cast from"
# Logged when bitsandbytes is imported on a CPU with AVX512-BF16 and without the `kernels` package:
# about its CPU kernel for 4-bit weights, nothing to do with int8 or with a model that runs on CUDA.
CPU_KERNEL_LOGGER = "bitsandbytes.backends.cpu.ops"
CPU_KERNEL_MESSAGE = "Failed to load CPU gemm_4bit_forward"


class OncePerProcess(logging.Filter):
    """Lets the first record that starts with `prefix` through and drops the ones after it."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        if self.seen:
            return False
        self.seen = True
        return True


class DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def _add_filter_once(logger_name: str, kind: type[logging.Filter], prefix: str) -> None:
    logger = logging.getLogger(logger_name)
    if not any(
        isinstance(f, kind) and getattr(f, "prefix", None) == prefix for f in logger.filters
    ):
        logger.addFilter(kind(prefix))


def quiet_int8_cast_warning() -> None:
    """bitsandbytes' per-step "inputs will be cast ... to float16" warning: once per process."""
    _add_filter_once(INT8_CAST_LOGGER, OncePerProcess, INT8_CAST_MESSAGE)


@contextmanager
def without_cpu_kernel_notice(relevant: bool) -> Iterator[None]:
    """While bitsandbytes is imported, drop its notice about a CPU 4-bit kernel.

    The notice is kept when `relevant` (nf4 on the CPU).
    """
    if relevant:
        yield
        return
    logger = logging.getLogger(CPU_KERNEL_LOGGER)
    drop = DropMessage(CPU_KERNEL_MESSAGE)
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
