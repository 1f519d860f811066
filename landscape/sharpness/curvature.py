"""Curvature measures: the top Hessian eigenvalue and the Hessian trace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from ..hessian import hessian_eigenpairs, hessian_trace
from ..objective import Objective
from ..params import ParamSelection
from . import _checks
from ._stats import mean_interval
from .registry import register
from .result import SharpnessResult

__all__ = ["measure_hessian"]


def measure_hessian(
    objective: Objective,
    *,
    quantity: Literal["lambda_max", "trace"] = "lambda_max",
    num_probes: int = 99,
    seed: int = 0,
    params: ParamSelection = None,
    progress: bool = True,
) -> SharpnessResult:
    """The top eigenvalue (Lanczos) or the trace (Hutch++) of the Hessian of the mean loss.

    Args:
        objective: the loss and data; its model is never changed.
        quantity: ``"lambda_max"`` or ``"trace"``.
        num_probes: probe vectors for the trace estimate.
        seed: seeds the Lanczos start vector and the trace probes.
        params: the Hessian of these weights only, the diagonal block of the selection
            (names, glob patterns, a predicate or ``"trainable"``, see
            :func:`landscape.params.select_names`).
        progress: show a tqdm bar of the Hessian-vector products.

    Returns:
        A :class:`SharpnessResult` named ``quantity`` with the Hessian routine's settings
        (provenance included); the
        trace carries its standard error, samples and interval, the eigenvalue its explicit
        residual and ``converged`` (1.0 or 0.0) in ``extra``.

    Raises:
        ValueError: an unknown ``quantity`` or a bad ``num_probes``.
        TypeError: a seed that is not an integer.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from landscape.objective import Objective
        >>> data = (torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> round(measure_hessian(Objective(model, data, loss="mse")).value, 6)
        1.0
    """
    _checks.check_objective(objective)
    seed = _checks.check_seed(seed)
    if quantity == "lambda_max":
        eig = hessian_eigenpairs(
            objective, k=1, which="LA", seed=seed, params=params, progress=progress
        )
        extra = {
            "residual": float(eig.residuals[0]),
            "converged": float(eig.converged),
            "num_hvps": float(eig.num_hvps),
        }
        return SharpnessResult(
            "lambda_max", float(eig.eigenvalues[0]), 0.0, _plain(eig.settings), extra
        )
    if quantity == "trace":
        num_probes = _checks.check_count("num_probes", num_probes)
        tr = hessian_trace(
            objective,
            num_probes=num_probes,
            method="hutch++",
            seed=seed,
            params=params,
            progress=progress,
        )
        extra = {"num_hvps": float(tr.num_hvps)}
        settings = {**_plain(tr.settings), "method": tr.method}
        interval = getattr(tr, "interval", None)
        if interval is None and tr.samples is not None and len(tr.samples) > 1:
            interval = mean_interval(np.asarray(tr.samples))
        interval = None if interval is None else (float(interval[0]), float(interval[1]))
        return SharpnessResult(
            "trace", float(tr.value), float(tr.stderr), settings, extra, tr.samples, interval
        )
    raise ValueError(f"quantity must be 'lambda_max' or 'trace', got {quantity!r}")


def _plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar (or None) entries of a settings mapping, which an HDF5 attribute holds,
    and the selection ``params`` (``"all"`` or a list of names) if there is one."""
    return {
        k: v
        for k, v in settings.items()
        if k == "params" or v is None or isinstance(v, (bool, int, float, str))
    }


register(
    "lambda_max",
    measure_hessian,
    fixed={"quantity": "lambda_max"},
    defaults={"seed": 0, "params": None},
)
register(
    "trace",
    measure_hessian,
    fixed={"quantity": "trace"},
    defaults={"num_probes": 99, "seed": 0, "params": None},
    sampled=True,
)
