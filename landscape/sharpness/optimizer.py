"""Curvature as an optimizer sees it, as registered measures: ``preconditioned_sharpness``
(``lambda_1(P^-1 H)`` for an optimizer's diagonal ``P``), ``batch_sharpness`` (the mean over
minibatches of ``g_B^T H_B g_B / ||g_B||^2``) and ``gradient_share`` (the share of the
gradient in the top eigenspace); see :mod:`landscape.optim`.

Each result's ``extra`` holds the quantity's stability threshold (``threshold``, NaN when
none is known) and ``ratio = value / threshold``.
"""

from __future__ import annotations

import math
from typing import Any

from ..objective import Objective
from ..optim import batch_sharpness, gradient_alignment, preconditioned_sharpness
from ..optim.sharpness import Source
from ..params import ParamSelection
from .curvature import _plain
from .registry import register
from .result import SharpnessResult

__all__ = ["measure_batch_sharpness", "measure_gradient_share", "measure_preconditioned"]


def _ratio(value: float, threshold: float) -> float:
    return value / threshold if math.isfinite(threshold) else math.nan


def measure_preconditioned(
    objective: Objective,
    *,
    optimizer: Source | None = None,
    seed: int = 0,
    tol: float | None = None,
    max_hvps: int = 300,
    progress: bool = True,
) -> SharpnessResult:
    """``preconditioned_sharpness``: :func:`landscape.optim.preconditioned_sharpness`'s
    largest eigenvalue (``optimizer`` is required: an optimizer, a Preconditioner or a
    diagonal).

    Raises:
        ValueError: no ``optimizer``.
    """
    if optimizer is None:
        raise ValueError(
            "expected optimizer= (the torch optimizer whose preconditioner is measured), got none"
        )
    found = preconditioned_sharpness(
        objective, optimizer, tol=tol, max_hvps=max_hvps, seed=seed, progress=progress
    )
    settings = {**_plain(found.settings), "optimizer": found.optimizer, "step": found.step}
    extra = {
        "threshold": found.threshold,
        "ratio": found.ratio,
        "residual": float(found.residuals[0]),
        "converged": float(found.converged),
        "num_hvps": float(found.num_hvps),
    }
    return SharpnessResult("preconditioned_sharpness", found.value, 0.0, settings, extra)


def measure_batch_sharpness(
    objective: Objective,
    *,
    lr: float | None = None,
    max_batches: int | None = None,
    seed: int = 0,
    params: ParamSelection = None,
    progress: bool = True,
) -> SharpnessResult:
    """``batch_sharpness`` over the objective's batches (give it the training batch size);
    its threshold is ``2 / lr`` when ``lr`` is given. ``seed`` is unused (deterministic)."""
    found = batch_sharpness(
        objective, lr=lr, max_batches=max_batches, params=params, progress=progress
    )
    settings = {**_plain(found.settings), "batch_size": found.batch_size}
    extra = {
        "threshold": found.threshold,
        "ratio": found.ratio,
        "ratio_of_expectations": found.ratio_of_expectations,
        "num_batches": float(found.num_batches),
    }
    return SharpnessResult(
        "batch_sharpness", found.value, found.stderr, settings, extra, found.samples
    )


def measure_gradient_share(
    objective: Objective,
    *,
    num_eigenpairs: int = 5,
    seed: int = 0,
    params: ParamSelection = None,
    tol: float | None = None,
    max_hvps: int = 500,
    progress: bool = True,
) -> SharpnessResult:
    """``gradient_share``: ``||V_k^T g||^2 / ||g||^2`` for the top ``num_eigenpairs``
    Hessian eigenvectors ``V_k`` and the full-batch gradient ``g``."""
    found = gradient_alignment(
        objective, num_eigenpairs=num_eigenpairs, params=params, seed=seed, tol=tol,
        max_hvps=max_hvps,
    )  # fmt: skip
    extra: dict[str, Any] = {
        "gradient_norm": found.gradient_norm,
        "converged": float(found.converged),
        "num_hvps": float(found.num_hvps),
        "threshold": math.nan,
        "ratio": math.nan,
    }
    return SharpnessResult("gradient_share", found.share, 0.0, _plain(found.settings), extra)


register(
    "preconditioned_sharpness",
    measure_preconditioned,
    defaults={"optimizer": None, "seed": 0, "tol": None, "max_hvps": 300},
)
register(
    "batch_sharpness",
    measure_batch_sharpness,
    defaults={"lr": None, "max_batches": None, "seed": 0, "params": None},
)
register(
    "gradient_share",
    measure_gradient_share,
    defaults={"num_eigenpairs": 5, "seed": 0, "params": None, "tol": None, "max_hvps": 500},
)
