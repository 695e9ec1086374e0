"""Host (CPU) memory that a dropped model gives back to the system, for processes that reload.

glibc serves a large ``malloc`` with a mapping of its own, returned to the system on ``free``, but
only above a threshold that it raises to the size of every such block freed (up to 32 MiB). After
the first model is dropped, the next model's weights and activations (tensors of a few MB) are
therefore carved out of the heap arenas of the threads that allocate them: in lisa_node the
lifecycle services' executor threads load, the inference thread runs. Freed, they stay in those
arenas, fragmented: each cleanup -> configure of the node kept 20-50 MB more resident memory,
although every old model was collected. A fixed threshold keeps large blocks in mappings of their
own, so a dropped model is given back whole.

Both functions do nothing and return False where the C library is not glibc (macOS, musl).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

__all__ = ["LARGE_BLOCK_BYTES", "return_large_blocks_on_free", "trim"]

# Blocks from this size on get a mapping of their own. An mmap per such block costs a system call
# and fresh pages, small next to the model step that fills them; blocks below stay in the arenas.
LARGE_BLOCK_BYTES = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def return_large_blocks_on_free(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Make every later allocation of ``threshold`` bytes or more a mapping of its own (process
    wide, fixed: glibc no longer raises it). For long-running processes that load models again."""
    libc = _glibc()
    return libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1


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
