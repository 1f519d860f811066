"""The result of one sharpness measure, and the contract's measure names in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import Result

__all__ = ["CONTRACT_ORDER", "SharpnessResult"]

#: The contract's measure names, in the contract's order (the order of
#: :data:`landscape.sharpness.MEASURES`, and of the results :func:`load_sharpness` reads).
CONTRACT_ORDER = (
    "lambda_max",
    "trace",
    "keskar",
    "worst_l2",
    "worst_linf",
    "adaptive_worst_l2",
    "adaptive_worst_linf",
    "avg_l2",
    "adaptive_avg_l2",
    "pacbayes",
    "pacbayes_mag",
    "fisher_rao",
    "relative_flatness",
    "rise",
    "preconditioned_sharpness",
    "batch_sharpness",
    "gradient_share",
)


@dataclass(frozen=True, eq=False)
class SharpnessResult(Result):
    """One sharpness measure and everything that made it; compared by value.

    Attributes:
        name: the measure's contract name (``"worst_l2"``, ``"pacbayes"``, ...).
        value: the measure; larger means sharper. For the worst-case measures (``keskar``,
            ``worst_*``, ``adaptive_worst_*``) a lower bound of the true maximum: the best
            of several local searches.
        stderr: its standard error (0.0 for a deterministic measure, NaN where it cannot
            be estimated: one batch, one sample).
        settings: every setting that made it, defaults and ``seed`` included, and where it
            came from (``model``, ``checkpoint_sha256``, ``data_sha256``, ``num_examples``,
            ``loss_name``, ``train_mode``, ``precision``).
        extra: derived quantities worth keeping (``loss`` at the weights, ``sigma`` for
            PAC-Bayes, ``num_agreed`` restarts for the worst-case measures, ...).
        samples: the per-sample (or per-batch) values behind ``value``, if any.
        interval: the 95% confidence interval ``(low, high)`` of a sampled estimate
            (Hall's skewness-corrected Student interval, see
            :func:`landscape.sharpness._stats.mean_interval`); ``None`` for a deterministic
            measure.
    """

    name: str
    value: float
    stderr: float
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    samples: np.ndarray | None = None
    interval: tuple[float, float] | None = None
