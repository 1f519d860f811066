"""Sharding across ``torch.distributed`` ranks: who am I, what is mine, bring it together.

Everything here works without a process group too: then there is one rank (0) of one,
every shard is the whole list, and gathers and broadcasts hand the value back. So code
written with these helpers runs unchanged under ``torchrun`` and in a plain process.

Under ``torchrun --nproc-per-node N`` call :func:`init_from_env` once; it joins the
group (``gloo`` on CPU, ``nccl`` on CUDA) and returns this rank's device
(``cuda:LOCAL_RANK`` when there are GPUs).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

__all__ = [
    "is_distributed",
    "rank",
    "world_size",
    "init_from_env",
    "shard_chunks",
    "broadcast_object",
    "gather_objects",
    "all_gather_objects",
    "all_reduce_sum",
    "alone",
    "on_leader",
    "share_errors",
]

# inside alone(): this rank works by itself, as rank 0 of 1
_ALONE: contextvars.ContextVar[bool] = contextvars.ContextVar("landscape_alone", default=False)


def is_distributed() -> bool:
    """Whether a process group is initialized (even one of a single rank)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank, 0 without a process group."""
    return dist.get_rank() if is_distributed() and not _ALONE.get() else 0


def world_size() -> int:
    """The number of ranks, 1 without a process group (or inside :func:`alone`)."""
    return dist.get_world_size() if is_distributed() and not _ALONE.get() else 1


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Within the block this rank works by itself: :func:`rank` is 0 and :func:`world_size`
    1, so the helpers here make no collective call (work dealt whole to one rank, such as
    one checkpoint of a comparison, is computed as one process computes it).

    Example:
        >>> with alone():
        ...     (rank(), world_size())
        (0, 1)
    """
    token = _ALONE.set(True)
    try:
        yield
    finally:
        _ALONE.reset(token)


def init_from_env(backend: str | None = None) -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment.

    Reads ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` (``env://``) and
    ``LOCAL_RANK``. Without them (a plain ``python`` run) nothing is initialized. A group
    that is already initialized is kept.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default ``nccl`` when CUDA is available,
            else ``gloo``.

    Returns:
        The device this rank should use: ``cuda:LOCAL_RANK`` (made current) when CUDA is
        available, else ``cpu``.

    Raises:
        RuntimeError: ``nccl`` was asked for without CUDA.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if backend == "nccl" and not use_cuda:
        raise RuntimeError("the nccl backend needs CUDA; use backend='gloo' on CPU")
    device = torch.device("cpu")
    if use_cuda and backend != "gloo":
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if not is_distributed() and "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        chosen = backend or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend=chosen, init_method="env://")
    return device


def shard_chunks(
    items: Sequence[T], chunk_size: int, *, rank_: int | None = None, world: int | None = None
) -> list[list[T]]:
    """Cut ``items`` into consecutive chunks of ``chunk_size`` and deal them round-robin.

    Chunk ``c`` goes to rank ``c % world``; every rank computes the same cut, so the
    shards are disjoint, cover ``items``, and depend only on ``items``, ``chunk_size`` and
    the number of ranks.

    Example:
        >>> shard_chunks(list(range(7)), 2, rank_=1, world=2)
        [[2, 3], [6]]
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    chunks = [list(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]
    return chunks[r::w]


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (picklable objects)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any, dst: int = 0) -> list[Any] | None:
    """Every rank's ``obj``, in rank order, on rank ``dst``; ``None`` on the others."""
    if world_size() == 1:
        return [obj]
    out: list[Any] | None = [None] * world_size() if rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks, in place, and return it (no-op without a group)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _sendable(err: BaseException) -> BaseException:
    """``err`` if it survives pickling (as a broadcast sends it), else a RuntimeError with
    its message."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # an exception type that cannot be rebuilt from its args
        return RuntimeError(str(err))


def share_errors(error: BaseException | None) -> None:
    """Raise, on every rank, the error of the first rank that had one (collective).

    Every rank calls it with its own outcome (``None``: no error). The raised exception
    carries ``landscape_rank``, the rank it came from, so that a front end reports it once
    (on rank 0) and names that rank. Without a process group, ``error`` is raised as it is.

    Raises:
        Exception: the first rank's error (by rank), on every rank.
    """
    found = all_gather_objects(None if error is None else _sendable(error))
    for source, err in enumerate(found):
        if err is not None:
            if source == rank() and error is not None:
                err = error  # the original, with its traceback
            if world_size() > 1:
                err.landscape_rank = source
            raise err


def on_leader(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 alone; its result (picklable), or its error, on every rank.

    Example:
        >>> on_leader(lambda: 3)
        3
    """
    outcome: Any = None
    error: BaseException | None = None
    if rank() == 0:
        try:
            outcome = fn()
        except Exception as err:  # sent to every rank, raised there below
            error = err
    shared = broadcast_object((outcome, None if error is None else _sendable(error)))
    if rank() != 0:  # rank 0 keeps its own (an error with its traceback)
        outcome, error = shared
    if error is not None:
        if world_size() > 1:
            error.landscape_rank = 0  # type: ignore[attr-defined]
        raise error
    return outcome
