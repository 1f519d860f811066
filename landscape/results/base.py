"""Value comparison for the library's frozen result dataclasses.

Results hold numpy arrays, tensors and nested mappings, for which the ``==`` that
``dataclass`` generates raises ("truth value of an array is ambiguous"). Every result
class derives from :class:`Result`, whose ``==`` compares field by field *by value*:
arrays and tensors by shape, dtype and entries (NaN equal to NaN), mappings by keys and
values, floats with NaN equal to NaN. So a result loaded from a file equals the one that
was computed and saved.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True, eq=False)
    ... class Pair(Result):
    ...     values: np.ndarray
    ...     name: str
    >>> Pair(np.array([1.0, np.nan]), "a") == Pair(np.array([1.0, np.nan]), "a")
    True
    >>> Pair(np.array([1.0, 2.0]), "a") == Pair(np.array([1.0, 3.0]), "a")
    False
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["Result", "format_estimate", "values_equal"]


def values_equal(a: Any, b: Any) -> bool:
    """Whether two values are equal by value: arrays and tensors entrywise (same shape and
    dtype, NaN == NaN), mappings and sequences element by element, floats with NaN == NaN.

    Example:
        >>> values_equal({"x": np.array([np.nan])}, {"x": np.array([np.nan])})
        True
        >>> values_equal(torch.zeros(2), torch.zeros(3))
        False
    """
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        return values_equal(a.detach().cpu().numpy(), b.detach().cpu().numpy())
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype.kind in "fc":
            return bool(np.array_equal(a, b, equal_nan=True))
        return bool(np.array_equal(a, b))
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)) or set(a) != set(b):
            return False
        return all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))):
            return False
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            values_equal(getattr(a, f.name), getattr(b, f.name))
            for f in dataclasses.fields(a)
            if f.compare or not isinstance(a, Result)  # a nested Result compares as its own ==
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    r"""CSV text of table rows (dicts with the same keys), full precision.

    Example:
        >>> rows_to_csv([{"a": 1, "b": 0.5}])
        'a,b\n1,0.5\n'
    """
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def format_estimate(value: float, stderr: float | None, *, digits: int = 6) -> str:
    """``"value ± stderr"``, or the value alone when the error is 0 (an exact value), NaN or
    ``None`` (an error that cannot be estimated).

    Example:
        >>> format_estimate(1.23456789, 0.0123), format_estimate(2.0, math.nan)
        ('1.23457 ± 0.012', '2')
    """
    text = f"{value:.{digits}g}"
    if stderr is None or not math.isfinite(stderr) or stderr == 0:
        return text
    return f"{text} ± {stderr:.2g}"


class Result:
    """Base of the result dataclasses: equality by value over every field.

    Subclasses are declared ``@dataclass(frozen=True, eq=False)`` so this ``__eq__`` is
    kept; a field declared with ``field(compare=False)`` (where a result was read from, say)
    is left out. Results are not hashable (they hold arrays).
    """

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        return all(
            values_equal(getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if f.compare
        )
