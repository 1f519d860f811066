"""The coordinates of a surface: ``START:STOP:NUM`` ranges, checked coordinate arrays, and
the size limit on a grid."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..limits import MAX_POINTS, check_limit


def check_size(num_points: int) -> None:
    """A larger grid than :data:`~landscape.limits.MAX_POINTS` is refused before anything
    is allocated."""
    check_limit("grid points", num_points, MAX_POINTS, "; use fewer points")


def parse_range(text: str) -> np.ndarray:
    """``"START:STOP:NUM"`` -> ``np.linspace(START, STOP, NUM)``.

    Example:
        >>> parse_range("-1:1:5")
        array([-1. , -0.5,  0. ,  0.5,  1. ])
    """
    parts = str(text).split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"expected a range START:STOP:NUM such as -1:1:51, got {text!r}") from None
    if num < 1 or not (np.isfinite(start) and np.isfinite(stop)):
        raise ValueError(
            f"expected a range START:STOP:NUM with finite START, STOP and NUM >= 1, got {text!r}"
        )
    if num > 1 and start == stop:
        raise ValueError(
            f"expected a range START:STOP:NUM with START != STOP, got {text!r} ({num} equal "
            f"coordinates); for one point write {parts[0]}:{parts[1]}:1"
        )
    check_size(num)
    return np.linspace(start, stop, num)


def coordinates(values: Any, axis: str) -> np.ndarray:
    """``values`` as a float64 array, checked: one-dimensional, non-empty and finite.

    Example:
        >>> coordinates([0, 1], "x")
        array([0., 1.])
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0 or not np.all(np.isfinite(array)):
        raise ValueError(
            f"expected {axis} as a non-empty 1D array of finite numbers, got {values!r}"
        )
    return array
