"""One bound on every request and every file read: points, draws, memory.

A request for more than these limits is refused before anything is allocated, with the
number asked for and the limit in the message: a grid of 40000 x 40000 points, a billion
density probes or a subspace of a million dimensions would otherwise take hundreds of
gigabytes or run without end.
"""

from __future__ import annotations

import os

import torch

__all__ = ["MAX_DRAWS", "MAX_POINTS", "check_limit", "check_memory", "memory_limit"]

MAX_POINTS = 10**8
"""The most points of a grid or a path (a float64 metric array of 800 MB)."""
MAX_DRAWS = 10**6
"""The most random draws of one estimate: probes, samples, restarts, resamples, dimensions."""


def check_limit(what: str, number: int, limit: int, hint: str = "") -> int:
    """``number`` if it is at most ``limit``.

    Example:
        >>> check_limit("density probes", 10, MAX_DRAWS)
        10

    Raises:
        ValueError: ``number`` is larger than ``limit``.
    """
    if number > limit:
        raise ValueError(
            f"expected at most {limit:,} {what}, got {number:,}: more than landscape "
            f"computes in one request{hint}"
        )
    return number


def memory_limit(device: torch.device | str | None = None) -> int:
    """The bytes a single request may take: the total memory of ``device`` (a CUDA
    device's, else the host's physical memory)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # no sysconf: do not guess
        return 2**62


def check_memory(what: str, num_bytes: int, device: torch.device | str | None = None) -> int:
    """``num_bytes`` if it fits the memory of ``device`` (default the host's).

    Raises:
        ValueError: the request needs more memory than the machine has.
    """
    limit = memory_limit(device)
    if num_bytes > limit:
        raise ValueError(
            f"expected {what} to fit the {_gib(limit)} of memory here, got a request for "
            f"{_gib(num_bytes)} ({num_bytes:,} bytes); ask for less"
        )
    return num_bytes


def _gib(num_bytes: int) -> str:
    return f"{num_bytes / 2**30:.3g} GiB"
