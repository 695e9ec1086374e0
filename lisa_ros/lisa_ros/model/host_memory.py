"""Host (CPU) memory that a dropped model gives back to the system, for processes that reload.

glibc serves a large ``malloc`` with a mapping of its own, returned to the system on ``free``, but
only above a threshold that it raises to the size of every such block freed (up to 32 MiB). After
the first model is dropped, the next model's weights and activations (tensors of a few MB) are
therefore carved out of the heap arenas of the threads that allocate them: in lisa_node the
lifecycle services' executor threads load, the inference thread runs. Freed, they stay in those
arenas, fragmented: each cleanup -> configure of the node kept 20-50 MB more resident memory,
although every old model was collected. A fixed threshold keeps large blocks in mappings of their
own, so a dropped model is given back whole.

Fixing that threshold also fixes glibc's trim threshold at its default, 128 KiB: free memory at the
top of an arena beyond it goes back to the system at once. A camera's frames are just such blocks:
rclpy takes a 1280x720 rgb8 image (2.7 MB) into a buffer of its own and then into the Python
message, 30 times a second, and both are freed before the next frame comes. Given back each time,
every frame faulted 5.4 MB of fresh pages in: 5.6 ms of CPU to take one frame, against 0.2 ms when
the arenas keep the pages for the next one (on this project's 2-core development machine; an idle
node spent a third of a core on nothing else). So the arenas keep up to ``KEPT_FREE_BYTES`` free at
their top; :func:`trim` (after a model is dropped) still gives everything back.

Both functions do nothing and return False where the C library is not glibc (macOS, musl).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

__all__ = ["KEPT_FREE_BYTES", "LARGE_BLOCK_BYTES", "return_large_blocks_on_free", "trim"]

# Blocks from this size on get a mapping of their own. An mmap per such block costs a system call
# and fresh pages, small next to the model step that fills them; blocks below stay in the arenas.
LARGE_BLOCK_BYTES = 4 * 1024 * 1024
# Free memory an arena keeps at its top for the next blocks: a few camera frames below
# LARGE_BLOCK_BYTES (image and depth, each taken twice), so a stream's frames reuse their pages.
KEPT_FREE_BYTES = 16 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3


def return_large_blocks_on_free(
    threshold: int = LARGE_BLOCK_BYTES, keep_free: int = KEPT_FREE_BYTES
) -> bool:
    """Make every later allocation of ``threshold`` bytes or more a mapping of its own, and let
    each arena keep up to ``keep_free`` bytes of free memory for reuse (process wide, fixed: glibc
    no longer adjusts either). For long-running processes that load models again."""
    libc = _glibc()
    return (
        libc is not None
        and libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1
        and libc.mallopt(_M_TRIM_THRESHOLD, keep_free) == 1
    )


def trim() -> bool:
    """Give the free memory of every arena back to the system (glibc's ``malloc_trim``)."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


@functools.cache
def _glibc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc
