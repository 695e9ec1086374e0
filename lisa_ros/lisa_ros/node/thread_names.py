"""Names for the node's threads as the operating system sees them.

Python before 3.14 keeps a thread's name to itself: ``top -H``, ``ps -L``, ``/proc/PID/task`` and
profilers show every thread of lisa_node under the executable's name, so nobody can tell whether
the model, the executor or DDS burns the CPU. Linux takes one name of up to 15 bytes per thread
(``prctl(PR_SET_NAME)``); elsewhere naming does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

__all__ = ["name_this_thread"]

_PR_SET_NAME = 15  # linux/prctl.h
_MAX_BYTES = 15  # the kernel's TASK_COMM_LEN less the terminating NUL


def name_this_thread(name: str) -> bool:
    """Give the calling thread ``name`` (cut to 15 bytes) in the OS; False where unsupported."""
    libc = _libc()
    if libc is None:
        return False
    return libc.prctl(_PR_SET_NAME, name.encode()[:_MAX_BYTES], 0, 0, 0) == 0


@functools.cache
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.prctl.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]
        libc.prctl.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc
