"""Ctrl-C and SIGTERM for ``lisa_node``: a request to shut down, served in order by the main thread.

rclpy's own handlers (``rclpy.init``'s default) shut the context down inside the signal handler,
while executor threads still wait on it, callbacks still log to /rosout and the inference thread
still answers a goal: what follows is a race ("failed to initialize wait set: the given context is
not valid", "publisher's context is invalid", a traceback, exit code 1). Python's default SIGINT
handler raises KeyboardInterrupt wherever the main thread happens to be. Both make ``ros2 launch``
report "process has died".

Here a signal only *asks* for the shutdown: the handler records which signal came and sets an
event. The main thread, which only waits for that event while an executor thread spins, then takes
everything down in order while the context is still valid: say what is interrupted, stop the
inference, stop the executor, destroy the node, and only then shut the context down. A terminal's
Ctrl-C reaches the node twice (once from the terminal's process group, once forwarded by
``ros2 launch``), and launch adds SIGTERM if the node is slow: repeats are ignored.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownRequest:
    """Handles SIGINT and SIGTERM by recording a shutdown request; one per process, from
    :func:`install`."""

    def __init__(self) -> None:
        self._requested = threading.Event()
        self._reason: str | None = None

    def _install(self) -> ShutdownRequest:
        for signum in SIGNALS:
            signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._reason is None:
            self._reason = signal.Signals(signum).name
        self._requested.set()

    def ignore_further(self) -> None:
        """Ignore SIGINT and SIGTERM from now on: the shutdown is done. Python's finalization
        puts the default handlers back, and launch's forwarded Ctrl-C often arrives after the
        terminal's, when a quick shutdown is already exiting: it would end the process with -2."""
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def request(self, reason: str) -> None:
        """Ask for the shutdown from code (e.g. the executor stopped on its own)."""
        if self._reason is None:
            self._reason = reason
        self._requested.set()

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    @property
    def reason(self) -> str | None:
        """The first signal's name ('SIGINT', 'SIGTERM') or the reason given to :meth:`request`."""
        return self._reason

    def wait(self) -> str:
        """Block until a shutdown is requested; returns its reason. Short waits, so the signal
        handler runs promptly on every platform."""
        while not self._requested.wait(0.2):
            pass
        assert self._reason is not None
        return self._reason


_installed: ShutdownRequest | None = None


def install() -> ShutdownRequest:
    """The process's shutdown request, its handlers installed by the first call (which must come
    from the main thread: Python runs signal handlers there only)."""
    global _installed
    if _installed is None:
        _installed = ShutdownRequest()._install()
    return _installed
