"""Every frozen result dataclass, and their comparison by value (imports numpy and torch only).

The lowest layer: :mod:`landscape.storage` reads and writes these, the compute modules make
them, and neither is imported from here. ``base`` holds :class:`Result` and the helpers;
``hessian``, ``sharpness``, ``paths`` and ``trajectory`` the results of those workflows (also
importable from their old homes, ``landscape.hessian.results``, ``landscape.sharpness.result``,
``landscape.paths`` and ``landscape.trajectory``).
"""

from __future__ import annotations

from .base import Result, format_estimate, rows_to_csv, values_equal

__all__ = ["Result", "format_estimate", "rows_to_csv", "values_equal"]
