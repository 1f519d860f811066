"""Warnings when a checkpoint is clearly not a minimum, as the measures assume.

Two checks, each one line of :class:`NotAMinimumWarning`:

- average-case measures (``avg_l2``, ``adaptive_avg_l2``, ``rise``): the mean rise is below
  zero by more than two standard errors, so points nearby are lower on average;
- worst-case measures (``keskar``, ``*worst_*``): the first-order rise, the most the
  linearized loss rises over the same set (``rho ||c * grad L||_q`` with ``q`` the dual
  of ``p``; the gradient at the weights over the data the measure used), is over
  :data:`SLOPE_SHARE` of the measured rise. To second order the rise is that linear term
  plus a curvature term, so above one half the slope makes more of the value than the
  curvature; at a minimum the gradient vanishes and the share is 0.

The average-case measures need no gradient check: the linear term averages to zero under
symmetric noise, so it widens their error bars but does not bias them.
"""

from __future__ import annotations

import math
import warnings

__all__ = ["NotAMinimumWarning", "SLOPE_SHARE", "check_mean_rise", "check_slope"]

#: Share of a worst-case rise above which the first-order rise is said to dominate it.
SLOPE_SHARE = 0.5


class NotAMinimumWarning(UserWarning):
    """The checkpoint is clearly not a minimum, so a sharpness value is hard to read."""


def check_mean_rise(name: str, value: float, stderr: float) -> None:
    """Warn when the mean rise ``value`` is below zero by more than two ``stderr``."""
    if math.isfinite(stderr) and value < -2 * stderr:
        spread = f"{-value / stderr:.1f} standard errors" if stderr > 0 else "every sample"
        warnings.warn(
            f"{name}: the mean rise {value:.4g} is below zero by {spread}: nearby points are "
            "lower, so the checkpoint is not a minimum",
            NotAMinimumWarning,
            stacklevel=3,
        )


def check_slope(name: str, linear: float, rise: float) -> None:
    """Warn when the first-order rise ``linear`` is over :data:`SLOPE_SHARE` of ``rise``."""
    if linear > 0 and linear > SLOPE_SHARE * rise:
        warnings.warn(
            f"{name}: the gradient makes most of the rise (first-order rise {linear:.4g} of "
            f"{rise:.4g}): the checkpoint is not a minimum, so the value measures its slope "
            "more than its curvature",
            NotAMinimumWarning,
            stacklevel=3,
        )
