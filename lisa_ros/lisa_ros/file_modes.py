"""File permissions for what lisa_ros writes: the mode a plain ``open(path, "w")`` would give.

Atomic writes go through :func:`tempfile.mkstemp`, and safetensors' ``save_file`` writes its own
temporary file the same way: both create files readable by their owner only (0600), whatever the
umask. A recorded dataset, an adapter or an evaluation report is meant for other users too (a
labelling tool, a training job under another account), so every such file is given
``0o666 & ~umask`` after it is written, as any other file of the same folder has.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["apply_default_mode", "current_umask", "default_file_mode"]

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the kernel tells it (Linux >= 4.7).

    ``os.umask`` can only be read by setting it; a node writes from several threads, so the
    fallback swaps it under a lock for the shortest possible time.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        umask = os.umask(0o077)
        os.umask(umask)
    return umask


def default_file_mode() -> int:
    """The permission bits of a regular file created now with ``open(path, "w")``."""
    return 0o666 & ~current_umask()


def apply_default_mode(*paths: os.PathLike | str) -> None:
    """Give each file (or each file directly inside each folder) :func:`default_file_mode`."""
    mode = default_file_mode()
    for path in map(Path, paths):
        files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
        for file in files:
            os.chmod(file, mode)
