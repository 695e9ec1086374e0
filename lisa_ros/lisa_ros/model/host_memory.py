"""Host (CPU) memory that a dropped model gives back to the system, for processes that reload.

glibc serves a large ``malloc`` with a mapping of its own, returned to the system on ``free``, but
only above a threshold that it raises to the size of every such block freed (up to 32 MiB). After
the first model is dropped, the next model's weights and activations (tensors of a few MB) are
therefore carved out of the heap arenas of the threads that allocate them: in lisa_node the
lifecycle services' executor threads load, the inference thread runs. Freed, they stay in those
arenas, fragmented: each cleanup -> configure of the node kept 20-50 MB more resident memory,
although every old model was collected. A fixed threshold keeps large blocks in mappings of their
own, so a dropped model is given back whole.

Camera frames are the opposite case: blocks of a few MB (a 1280x720 rgb8 image is 2.7 MB), taken,
converted, drawn on and published many times a second, each freed before the next comes. glibc
gives free memory at the top of a heap back to the system beyond its trim threshold (128 KiB once
the mmap threshold is fixed), so every frame faulted its pages in again: on the development
machine a 2.7 MB copy cost 1.1 ms with its 643 page faults and 0.06 ms without, and the overlay of
one 1280x720 answer 7.5 ms instead of 2.7. So while a model serves, the heap keeps up to
``KEPT_FREE_BYTES`` free at its top for the next frames (:func:`keep_free_for_reuse`), and once it
is dropped, gives everything back again (:func:`give_back_free_at_once`, then :func:`trim`).

That works for the main heap only: ``malloc_trim`` leaves the top of a thread's own arena alone,
and such an arena keeps what its trim threshold allows. So all threads share the main heap (one
arena; the node's threads allocate under Python's GIL, so they hardly contend for it). glibc fixes
the arena limit when a thread first allocates, and importing torch starts threads that do: the
settings must come before the heavy imports (``lisa_node``'s entry point makes them first). Made
after them, two arenas were already there, later threads were spread over them, and a cleanup left
13 MB resident now and then (with an arena per thread, ten reloads grew it by 20-60 MB).

The functions do nothing and return False where the C library is not glibc (macOS, musl).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

__all__ = [
    "KEPT_FREE_BYTES",
    "LARGE_BLOCK_BYTES",
    "give_back_free_at_once",
    "keep_free_for_reuse",
    "return_large_blocks_on_free",
    "trim",
]

# Blocks from this size on get a mapping of their own. An mmap per such block costs a system call
# and fresh pages, small next to the model step that fills them; blocks below stay in the arenas.
LARGE_BLOCK_BYTES = 4 * 1024 * 1024
# Free memory the heap keeps at its top for the next blocks: several camera frames below
# LARGE_BLOCK_BYTES (image and depth, each taken, converted and published).
KEPT_FREE_BYTES = 32 * 1024 * 1024
# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# glibc's own trim threshold: what the heap keeps free at its top otherwise.
GLIBC_TRIM_BYTES = 128 * 1024


def return_large_blocks_on_free(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Make every later allocation of ``threshold`` bytes or more a mapping of its own, and serve
    all threads from one heap (process wide, fixed: glibc no longer adjusts them). For
    long-running processes that load models again; call it before importing what starts threads
    (torch, rclpy): a thread that allocated before keeps an arena of its own."""
    libc = _glibc()
    return (
        libc is not None
        and libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1
        and libc.mallopt(_M_ARENA_MAX, 1) == 1
        and libc.mallopt(_M_TRIM_THRESHOLD, GLIBC_TRIM_BYTES) == 1
    )


def keep_free_for_reuse(nbytes: int = KEPT_FREE_BYTES) -> bool:
    """Keep up to ``nbytes`` free at the top of the heap for the next blocks (frames) instead of
    giving them back at once, until :func:`give_back_free_at_once`."""
    libc = _glibc()
    return libc is not None and libc.mallopt(_M_TRIM_THRESHOLD, nbytes) == 1


def give_back_free_at_once() -> bool:
    """Give free memory at the top of the heap back as glibc does by default (e.g. once a model
    is dropped: what is freed after the last :func:`trim` is not kept either)."""
    return keep_free_for_reuse(GLIBC_TRIM_BYTES)


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
