"""Running under ``torchrun`` / ``accelerate launch``: which process this is, and gathering results.

Several processes, one per GPU (or several CPU processes), are started by an existing launcher,
not by lisa_ros: ``torchrun --nproc_per_node K`` and ``accelerate launch`` both describe the
process in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). :func:`launch_from_env` reads that description (a plain run is rank 0 of 1),
:func:`shard` gives each process its share of the work, :func:`process_device` its GPU, and
:func:`gather_to_main` brings every process's Python objects to rank 0.

Torch-free at import: a single-process run never imports ``torch.distributed``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

__all__ = [
    "GATHER_TIMEOUT",
    "Launch",
    "LaunchError",
    "gather_to_all",
    "gather_to_main",
    "launch_from_env",
    "process_device",
    "process_group",
    "shard",
]

T = TypeVar("T")

GATHER_TIMEOUT = timedelta(hours=6)
"""How long a process that finished its shard waits for the others at the gather.

Shards take about the same time, but one process may meet the larger images; the default of
torch (10 minutes for NCCL) would fail a long evaluation that did nothing wrong. A process that
crashes does not leave the others waiting: the launcher stops them all.
"""


class LaunchError(RuntimeError):
    """The launcher's environment cannot be understood (one line saying which variable)."""


@dataclass(frozen=True)
class Launch:
    """This process's place among the processes a launcher started (rank 0 of 1 when alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """More than one process: results must be gathered."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that merges, reports and writes."""
        return self.rank == 0

    def __str__(self) -> str:
        return f"process {self.rank + 1} of {self.world_size}"


def _read_int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise LaunchError(f"{name}={text!r} is not an integer (set by the launcher?)") from None


def launch_from_env(environ: Mapping[str, str] | None = None) -> Launch:
    """The :class:`Launch` that ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` describe.

    Without them (a plain run) this is rank 0 of 1. Inconsistent values raise
    :class:`LaunchError` rather than silently evaluating a wrong share.
    """
    environ = os.environ if environ is None else environ
    world_size = _read_int(environ, "WORLD_SIZE", 1)
    rank = _read_int(environ, "RANK", 0)
    local_rank = _read_int(environ, "LOCAL_RANK", rank)
    if world_size < 1:
        raise LaunchError(f"WORLD_SIZE={world_size} must be at least 1")
    if not 0 <= rank < world_size:
        raise LaunchError(f"RANK={rank} must be in [0, WORLD_SIZE={world_size})")
    if local_rank < 0:
        raise LaunchError(f"LOCAL_RANK={local_rank} must not be negative")
    return Launch(rank, world_size, local_rank)


def shard(items: Sequence[T], launch: Launch) -> list[tuple[int, T]]:
    """This process's share: ``(i, items[i])`` for every ``i`` with ``i % world_size == rank``.

    Interleaved rather than in blocks, so that a dataset sorted by name (and so often by scene)
    spreads its slow and fast samples over all processes.
    """
    return [(index, items[index]) for index in range(launch.rank, len(items), launch.world_size)]


def process_device(launch: Launch, requested: str | None, cuda_available: bool) -> str | None:
    """The device this process runs on: ``requested`` when given; otherwise, when several
    processes share a machine with CUDA, ``cuda:LOCAL_RANK`` (each its own GPU); otherwise
    None (the model's default: a GPU if there is one)."""
    if requested:
        return requested
    if launch.distributed and cuda_available:
        return f"cuda:{launch.local_rank}"
    return None


@contextmanager
def process_group(launch: Launch, device: str | None) -> Iterator[None]:
    """The ``torch.distributed`` process group of a distributed launch, for the ``with`` body.

    NCCL when this process computes on CUDA, gloo otherwise; nothing at all for a single
    process. The group is destroyed on the way out, also after an error.
    """
    if not launch.distributed:
        yield
        return
    import torch
    import torch.distributed as dist

    backend = "gloo"
    if device is not None and device.startswith("cuda") and torch.cuda.is_available():
        backend = "nccl"
        torch.cuda.set_device(torch.device(device))  # all_gather_object's NCCL buffers go here
    if not dist.is_initialized():
        dist.init_process_group(
            backend, rank=launch.rank, world_size=launch.world_size, timeout=GATHER_TIMEOUT
        )
    try:
        yield
        # Tear the group down together: a process that destroys its gloo group while a peer
        # is still finishing the last collective can abort ("terminate called without an
        # active exception", exit -6). Not after an error: the peers may never arrive.
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def gather_to_all(value: Any, launch: Launch) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order, on every process.

    For results every process acts on alike (a training loop's held-out scores decide what all
    processes do next). A single process gets ``[value]`` without any communication. Must be
    called by every process of the group, inside :func:`process_group` (or another initialised
    ``torch.distributed`` group, such as accelerate's).
    """
    if not launch.distributed:
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * launch.world_size
    dist.all_gather_object(values, value)
    return values


def gather_to_main(value: Any, launch: Launch) -> list[Any] | None:
    """Every process's ``value`` (picklable), in rank order, on rank 0; None on the others.

    A single process gets ``[value]`` without any communication. Must be called by every
    process of the group, inside :func:`process_group`.
    """
    values = gather_to_all(value, launch)
    return values if launch.is_main else None
