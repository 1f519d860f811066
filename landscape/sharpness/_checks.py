"""Checks of the arguments every measure shares: clear errors saying what was expected."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .. import checks
from ..limits import MAX_DRAWS, check_limit
from ..objective import Objective


def check_objective(objective: Any, sharded: bool = False) -> None:
    """Raise ``TypeError`` unless ``objective`` is a landscape Objective, ``ValueError`` for
    one of a sharded model (before any work: see ``Objective.check_differentiable``) unless
    ``sharded`` (the measure takes it)."""
    if not isinstance(objective, Objective):
        raise TypeError(f"expected a landscape Objective, got {type(objective).__name__}")
    if not sharded:
        objective.check_differentiable()


def check_positive(name: str, value: Any) -> float:
    """A positive finite number, as a float.

    Example:
        >>> check_positive("rho", 1)
        1.0
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"expected a number for {name}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive finite {name}, got {value}")
    return float(value)


def check_count(name: str, value: Any) -> int:
    """A positive integer (``True`` is not a count).

    Example:
        >>> check_count("num_samples", 3)
        3
    """
    return check_limit(name, checks.check_count(value, name), MAX_DRAWS)


def check_seed(value: Any) -> int:
    """An integer seed in ``0 .. 2**63 - 1`` (a float such as 1.5, or a bool, is a
    ``TypeError``): :func:`landscape.checks.check_seed`."""
    return checks.check_seed(value)


def check_flag(name: str, value: Any) -> bool:
    """A bool: :func:`landscape.checks.check_flag`."""
    return checks.check_flag(value, name)


def check_name(name: str, value: Any) -> str:
    """A string (a parameter name)."""
    if not isinstance(value, str):
        raise TypeError(f"expected a str {name}, got {type(value).__name__} {value!r}")
    return value


def check_selection(value: Any) -> Any:
    """A selection of weights (``params=``): a string, a callable, or names and patterns.

    Example:
        >>> check_selection(("*.weight", "fc.bias"))
        ['*.weight', 'fc.bias']
    """
    if isinstance(value, str) or callable(value):
        return value
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        patterns = list(value)
        if patterns and all(isinstance(p, str) for p in patterns):
            return patterns
    raise TypeError(
        "expected 'all', 'trainable', names or glob patterns, or a callable "
        f"(name, tensor) -> bool for params, got {value!r}"
    )
