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

from .. import checks
from .._progress import progress_bar
from ..hessian import hessian_trace
from ..hessian.operator import HessianOperator, resolve_operator
from ..hessian.planner import plan_for, plan_settings
from ..hessian.sharded import ShardedHessianOperator
from ..linalg import MatvecOperator, lanczos_eigenpairs
from ..objective import Objective
from ..options import HvpBackendName, WhichName
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
    hvp: HvpBackendName | None = None,
    max_memory: int | None = None,
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
        hvp: the Hessian-vector products (see :class:`landscape.hessian.HessianOperator`;
            default ``"exact"``). A model sharded by FSDP2 takes ``"fd"``: its products
            on each rank's local shards, collective (call on every rank), the trace then by
            Hutchinson (``settings["method"]``); ``settings["hvp"]`` and
            ``settings["hvp_error"]`` record them.
        max_memory: bytes the solver may hold (default: the device's free memory; see
            :mod:`landscape.hessian.planner`): the trace is Hutch++ where its sketch fits,
            else Hutchinson; an eigenvalue whose thick-restart basis does not fit is
            refused before any product. ``settings["strategy"]`` and
            ``settings["planned_bytes"]`` record the plan.
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
    _checks.check_objective(objective, sharded=getattr(objective, "sharded", None) == "FSDP2")
    seed = _checks.check_seed(seed)
    if quantity not in (*_WHICH, "trace"):
        raise ValueError(
            f"expected quantity 'lambda_max', 'lambda_min' or 'trace', got {quantity!r}"
        )
    op = resolve_operator(objective, None, params, None, hvp)  # refuses what cannot run
    if max_memory is not None:
        max_memory = checks.check_count(max_memory, "max_memory")  # bytes: no draw limit
    if quantity in _WHICH:
        if tol is not None:
            tol = _checks.check_positive("tol", tol)
        max_hvps = _checks.check_count("max_hvps", max_hvps)
        if warm_start is not None:
            check_warm_start(warm_start)
        plan = plan_for(op, "eigenpairs", max_memory, "thick-restart", k=1, max_hvps=max_hvps)
        found = extreme_eigenvalue(op, quantity, seed, tol, max_hvps, warm_start, progress)
        found.settings.update(plan_settings(plan, max_memory))
        return found
    num_probes = _checks.check_count("num_probes", num_probes)
    tr = hessian_trace(
        op,
        num_probes=num_probes,
        method="hutchinson" if isinstance(op, ShardedHessianOperator) else "auto",
        seed=seed,
        progress=progress,
        max_memory=max_memory,
    )
    settings = {**_plain(tr.settings), "method": tr.method, **_products(op)}
    value, stderr = float(tr.value), float(tr.stderr)
    return SharpnessResult(
        "trace", value, stderr, settings, {"num_hvps": float(tr.num_hvps)}, tr.samples,
        normal_interval(value, stderr),
    )  # fmt: skip


def extreme_eigenvalue(
    op: HessianOperator | ShardedHessianOperator,
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
    solved: Any = op
    if not float64 and op.dtype == torch.float32 and isinstance(op, HessianOperator):
        solved = MatvecOperator(op.matvec, op.size, op.dtype, op.device)  # checked in float32
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
        **_products(op),
    }  # fmt: skip
    extra = {
        "residual": residual,
        "converged": float(pairs.converged),
        "num_hvps": float(pairs.num_matvecs),
    }
    return SharpnessResult(quantity, value, 0.0, settings, extra)


def _products(op: HessianOperator | ShardedHessianOperator) -> dict[str, Any]:
    """Products other than exact: their backend and measured relative error (a reason
    where it could not be measured), as settings (none for exact ones, as in 0.2)."""
    return {} if op.hvp == "exact" else {"hvp": op.hvp, "hvp_error": op.hvp_error}


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
    defaults={
        "seed": 0,
        "params": None,
        "tol": None,
        "max_hvps": 500,
        "warm_start": None,
        "hvp": None,
        "max_memory": None,
    },
)
register(
    "trace",
    measure_hessian,
    fixed={"quantity": "trace"},
    defaults={"num_probes": 99, "seed": 0, "params": None, "hvp": None, "max_memory": None},
    sampled=True,
)
