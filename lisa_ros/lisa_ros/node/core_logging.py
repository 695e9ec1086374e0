"""The core's Python ``logging`` (and Python warnings) through the node's ROS logger.

``lisa_ros.model`` is ROS-free, so it reports with the standard ``logging`` module: "max_new_tokens
lowered ...", the steps of a model load, a library's warning. In the node those lines must be ROS
log lines like any other: with a severity, the node's name, the ``--log-level`` filter, and on
``/rosout`` where ``rqt_console`` and ``ros2 bag`` see them. Without this they went to stderr
bare (or, below WARNING, nowhere).

Python warnings (e.g. rclpy's ``RuntimeWarning: failed to send response (timeout)`` when a
``ros2 lifecycle get`` gave up during a model load) become one WARN line each: the message, then
the category and where it was raised in brackets. ``logging.captureWarnings`` would log what
``warnings.formatwarning`` makes of it: a path-first line plus the offending source line.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, TextIO

__all__ = ["CoreLogRoute", "ROUTED_LOGGERS", "warning_line"]

# The core's own loggers, bitsandbytes' (its int8 cast warning, let through once by the core), and
# the logger Python warnings go to (the name `logging.captureWarnings` uses).
ROUTED_LOGGERS = ("lisa_ros", "bitsandbytes", "py.warnings")


def warning_line(
    message: Warning | str, category: type[Warning], filename: str, lineno: int
) -> str:
    """A Python warning as one log line: "<message> (<Category> at <file>:<line>)"."""
    text = " ".join(str(message).split())  # one line, whatever the message holds
    return f"{text} ({category.__name__} at {os.path.basename(filename)}:{lineno})"


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A ``warnings.showwarning`` that logs one line to the "py.warnings" logger."""
    logging.getLogger("py.warnings").warning(warning_line(message, category, filename, lineno))


class _RosLogHandler(logging.Handler):
    """Hands each record to an rclpy logger at the matching severity."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self._ros_logger = ros_logger
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.CRITICAL:
                self._ros_logger.fatal(message)
            elif record.levelno >= logging.ERROR:
                self._ros_logger.error(message)
            elif record.levelno >= logging.WARNING:
                self._ros_logger.warning(message)
            elif record.levelno >= logging.INFO:
                self._ros_logger.info(message)
            else:
                self._ros_logger.debug(message)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


class CoreLogRoute:
    """While attached, the records of :data:`ROUTED_LOGGERS` go to ``ros_logger`` only.

    Python loggers are process-wide, so the route is too: attach it once per process (lisa_node
    runs one node), and :meth:`detach` restores what was there before.
    """

    def __init__(self, ros_logger: Any, level: int = logging.INFO) -> None:
        self._handler = _RosLogHandler(ros_logger)
        self._level = level
        self._saved: list[tuple[logging.Logger, int, bool]] = []
        self._saved_showwarning: Any = None

    def attach(self) -> None:
        if self._saved:
            return
        for name in ROUTED_LOGGERS:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.level, logger.propagate))
            logger.addHandler(self._handler)
            logger.setLevel(self._level)
            logger.propagate = False  # not also printed bare by Python's last-resort handler
        self._saved_showwarning = warnings.showwarning
        warnings.showwarning = _log_warning

    def detach(self) -> None:
        for logger, level, propagate in self._saved:
            logger.removeHandler(self._handler)
            logger.setLevel(level)
            logger.propagate = propagate
        self._saved = []
        if self._saved_showwarning is not None:
            warnings.showwarning = self._saved_showwarning
            self._saved_showwarning = None
