"""Curvature measures: the top Hessian eigenvalue and the Hessian trace.

``lambda_max`` is single-vector Lanczos (:func:`landscape.linalg.lanczos_eigenpairs` with
``k = 1``), verified in float64; with a :class:`WarmStart` passed to successive calls at
nearby weights (the logs of a training run, neighbouring checkpoints) each run starts from
the previous eigenvector, which takes a few Hessian-vector products when the weights moved
little. ``trace`` is Hutch++ with its standard error, and its 95% interval comes from the
same error model: ``value +- z stderr`` (``z = 1.96``), which covers the trace in about
95% of seeds (see :func:`landscape.linalg.estimate_trace`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import scipy.stats
import torch

from .._progress import progress_bar
from ..hessian import HessianOperator, hessian_trace
from ..linalg import MatvecOperator, lanczos_eigenpairs
from ..objective import Objective
from ..options import WhichName
from ..params import ParamSelection
from . import _checks
from ._stats import LEVEL
from .registry import WarmStart, check_warm_start, register
from .result import SharpnessResult

__all__ = ["extreme_eigenvalue", "measure_hessian", "normal_interval"]

_WHICH: dict[str, WhichName] = {"lambda_max": "LA", "lambda_min": "SA"}


def normal_interval(value: float, stderr: float, level: float = LEVEL) -> tuple[float, float]:
    """``value +- z stderr`` with ``z`` the normal quantile of ``level`` (1.96 for 95%).

    Example:
        >>> normal_interval(10.0, 1.0)
        (8.040036015459947, 11.959963984540053)
    """
    half = float(scipy.stats.norm.ppf(0.5 + level / 2)) * stderr
    return value - half, value + half


def measure_hessian(
    objective: Objective,
    *,
    quantity: Literal["lambda_max", "lambda_min", "trace"] = "lambda_max",
    num_probes: int = 99,
    seed: int = 0,
    params: ParamSelection = None,
    tol: float | None = None,
    max_hvps: int = 500,
    warm_start: WarmStart | None = None,
    progress: bool = True,
) -> SharpnessResult:
    """The top eigenvalue (Lanczos) or the trace (Hutch++) of the Hessian of the mean loss.

    Args:
        objective: the loss and data; its model is never changed.
        quantity: ``"lambda_max"``, ``"trace"``, or ``"lambda_min"`` (the smallest
            eigenvalue, as ``lambda_max``; not a registered measure, the Tracker logs it).
        num_probes: Hutch++ products for the trace.
        seed: seeds the Lanczos start vector and the trace probes.
        params: the Hessian of these weights only, the diagonal block of the selection
            (names, glob patterns, a predicate or ``"trainable"``, see
            :func:`landscape.params.select_names`).
        tol, max_hvps: Lanczos residual tolerance relative to ``||H||`` (default 1e-8
            for float64 models, 1e-4 otherwise) and product budget (see
            :func:`landscape.hessian.hessian_eigenpairs`); each eigenvalue is then
            within ``tol * ||H||`` of an eigenvalue of the Hessian.
        warm_start: a :class:`WarmStart` to start from and to update (eigenvalues only).
        progress: show a tqdm bar of the Hessian-vector products.

    Returns:
        A :class:`SharpnessResult` named ``quantity`` with the Hessian routine's settings
        (provenance included). The trace carries its standard error, samples and the
        interval ``value +- 1.96 stderr`` (:func:`normal_interval`); the eigenvalue its
        float64 residual, ``converged`` (1.0 or 0.0) and ``num_hvps`` in ``extra``, and
        ``settings["warm_start"]``: whether it started from a previous vector.

    Raises:
        ValueError: an unknown ``quantity``, a bad ``num_probes``, ``tol`` or
            ``max_hvps``.
        TypeError: a seed that is not an integer, a ``warm_start`` that is not a
            :class:`WarmStart`.

    Example:
        >>> from landscape.sharpness._example import example_objective
        >>> round(measure_hessian(example_objective()).value, 6)
        1.0
    """
    _checks.check_objective(objective)
    seed = _checks.check_seed(seed)
    if quantity in _WHICH:
        return _eigenvalue(objective, quantity, seed, params, tol, max_hvps, warm_start, progress)
    if quantity != "trace":
        raise ValueError(
            f"expected quantity 'lambda_max', 'lambda_min' or 'trace', got {quantity!r}"
        )
    num_probes = _checks.check_count("num_probes", num_probes)
    tr = hessian_trace(
        objective,
        num_probes=num_probes,
        method="hutch++",
        seed=seed,
        params=params,
        progress=progress,
    )
    settings = {**_plain(tr.settings), "method": tr.method}
    value, stderr = float(tr.value), float(tr.stderr)
    return SharpnessResult(
        "trace", value, stderr, settings, {"num_hvps": float(tr.num_hvps)}, tr.samples,
        normal_interval(value, stderr),
    )  # fmt: skip


def _eigenvalue(
    objective: Objective,
    quantity: str,
    seed: int,
    params: ParamSelection,
    tol: float | None,
    max_hvps: int,
    warm_start: WarmStart | None,
    progress: bool,
) -> SharpnessResult:
    """One extreme eigenvalue of the objective's Hessian (see :func:`extreme_eigenvalue`)."""
    if tol is not None:
        tol = _checks.check_positive("tol", tol)
    max_hvps = _checks.check_count("max_hvps", max_hvps)
    if warm_start is not None:
        check_warm_start(warm_start)
    op = HessianOperator(objective, params=params)
    return extreme_eigenvalue(op, quantity, seed, tol, max_hvps, warm_start, progress)


def extreme_eigenvalue(
    op: HessianOperator,
    quantity: str,
    seed: int,
    tol: float | None,
    max_hvps: int,
    warm_start: WarmStart | None,
    progress: bool,
    float64: bool = True,
) -> SharpnessResult:
    """``lambda_max`` or ``lambda_min`` of ``op`` by single-vector Lanczos, from
    ``warm_start`` if it has a vector of the right size, verified in float64 (see
    :func:`measure_hessian`; the settings checked by the caller). The Tracker calls it
    with an operator it builds once a log. ``float64=False`` for a float32 ``op``: the
    residual is checked with one explicit product in float32 instead (no float64 copy of
    the model and data; round-off ``1e-7 ||H||`` on the digits MLP)."""
    start = None if warm_start is None else warm_start.vector
    if start is not None and start.numel() != op.size:
        start = None
    solved = op
    if not float64 and op.dtype == torch.float32:  # no float64 version: checked in float32
        solved = MatvecOperator(op.matvec, op.size, op.dtype, op.device)
    with progress_bar(progress, desc=quantity, unit="HVP", total=max_hvps) as bar:
        pairs = lanczos_eigenpairs(
            solved, 1, which=_WHICH[quantity], tol=tol, max_matvecs=max_hvps, seed=seed,
            start=start, callback=bar.update,
        )  # fmt: skip
    value, residual = float(pairs.values[0]), float(pairs.residuals[0])
    if not math.isfinite(value):
        warnings.warn(
            f"{quantity}: a Hessian-vector product is not finite; returning NaN",
            RuntimeWarning,
            stacklevel=4,
        )
    elif not pairs.converged:
        warnings.warn(
            f"{quantity}: Lanczos stopped after {pairs.num_matvecs} HVPs with a "
            f"{pairs.settings['verify_dtype']} residual of {residual:.3g}, above tol * ||H|| = "
            f"{pairs.settings['tol'] * pairs.norm:.3g}; raise max_hvps, or tol",
            RuntimeWarning,
            stacklevel=4,
        )
    if warm_start is not None and bool(torch.isfinite(pairs.vectors).all()):
        warm_start.vector = pairs.vectors[0]
    settings = {
        **_plain(op.settings), "k": 1, "which": _WHICH[quantity], "tol": pairs.settings["tol"],
        "max_hvps": max_hvps, "seed": seed, "verify_dtype": pairs.settings["verify_dtype"],
        "num_hvps_float64": pairs.num_matvecs64, "warm_start": start is not None,
    }  # fmt: skip
    extra = {
        "residual": residual,
        "converged": float(pairs.converged),
        "num_hvps": float(pairs.num_matvecs),
    }
    return SharpnessResult(quantity, value, 0.0, settings, extra)


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
    defaults={"seed": 0, "params": None, "tol": None, "max_hvps": 500, "warm_start": None},
)
register(
    "trace",
    measure_hessian,
    fixed={"quantity": "trace"},
    defaults={"num_probes": 99, "seed": 0, "params": None},
    sampled=True,
)
