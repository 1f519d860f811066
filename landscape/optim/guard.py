"""A stability guard: a warning (or a call of yours) when a tracked curvature stays near its
optimizer's threshold.

The guard never changes the optimizer: it tells you, or calls ``action``, which may (for
example, lower the learning rate).

Example:
    >>> guard = StabilityGuard(fraction=0.9, patience=2)
    >>> guard.update("lambda_max", 1.0, threshold=2.0, step=0)
    False
    >>> guard.update("lambda_max", 1.9, threshold=2.0, step=1)
    False
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     guard.update("lambda_max", 1.95, threshold=2.0, step=2)
    True
    >>> str(caught[0].message).split(":")[0]
    'lambda_max stayed above 0.9 of its threshold 2 for 2 logs (steps 1..2)'
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from ..checks import check_count

__all__ = ["StabilityGuard", "StabilityWarning"]


class StabilityWarning(RuntimeWarning):
    """A tracked curvature stayed above the guard's fraction of its threshold."""


@dataclass
class StabilityGuard:
    """Watches ``(measure, value, threshold)`` per log; when a measure is above ``fraction``
    of its threshold for ``patience`` logs in a row, it fires: ``action(measure, value,
    threshold, step)`` if given, else a :class:`StabilityWarning`. It fires once per such
    run of logs and re-arms when the measure falls below the fraction.

    Args:
        fraction: of the threshold (``0 < fraction``; 1 is the edge itself).
        patience: consecutive logs above it before firing.
        action: called instead of warning.
        measures: the measures watched; ``None``: every one given a finite threshold.
    """

    fraction: float = 0.9
    patience: int = 3
    action: Callable[[str, float, float, int], None] | None = None
    measures: tuple[str, ...] | None = None
    _above: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _fired: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.fraction, bool) or not (
            isinstance(self.fraction, int | float) and self.fraction > 0
        ):
            raise ValueError(f"expected a fraction > 0, got {self.fraction!r}")
        self.patience = check_count(self.patience, "patience")
        if self.action is not None and not callable(self.action):
            raise TypeError(f"expected a callable action, got {type(self.action).__name__}")

    def update(self, measure: str, value: float, *, threshold: float, step: int) -> bool:
        """Take one log of ``measure``; returns whether the guard fired on it."""
        if (self.measures is not None and measure not in self.measures) or not (
            math.isfinite(threshold) and math.isfinite(value)
        ):
            return False
        if value <= self.fraction * threshold:
            self._above.pop(measure, None)
            self._fired.discard(measure)
            return False
        steps = self._above.setdefault(measure, [])
        steps.append(step)
        if len(steps) < self.patience or measure in self._fired:
            return False
        self._fired.add(measure)
        if self.action is not None:
            self.action(measure, value, threshold, step)
        else:
            warnings.warn(
                f"{measure} stayed above {self.fraction:g} of its threshold {threshold:g} for "
                f"{len(steps)} logs (steps {steps[0]}..{step}): {value:.4g} at step {step}; "
                "the optimizer is at its edge of stability (lower the learning rate to leave it)",
                StabilityWarning,
                stacklevel=2,
            )
        return True
