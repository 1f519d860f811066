"""Progress bars: one tqdm style for every long job, on stderr, on rank 0 only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

from . import distributed


def progress_bar(
    enabled: bool,
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    unit: str,
    total: int | None = None,
) -> tqdm:
    """A tqdm bar on stderr (with a rate, and an ETA when ``total`` is known), silent unless
    ``enabled`` and on rank 0: iterate over it, or use it as a context manager and call
    ``update``."""
    shown = enabled and distributed.rank() == 0
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not shown)
