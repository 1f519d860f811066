"""The :class:`~landscape.tracking.Tracker`'s eigenvalues: one Hessian operator a log
(an FSDP2 model's on its local shards with ``hvp="fd"``), single-vector Lanczos with a
tolerance suited to tracking, planned before any product, its residual stored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..hessian import HessianOperator
from ..hessian.operator import resolve_operator
from ..hessian.planner import plan_for
from ..hessian.sharded import ShardedHessianOperator
from ..objective import Objective
from ..sharpness import SharpnessResult, WarmStart
from ..sharpness.curvature import extreme_eigenvalue

#: Default Lanczos tolerance of ``lambda_max`` for models below float64: residual at most
#: ``TOL * ||H||``, the eigenvalue's error about its square over the gap (float64 models:
#: 1e-8; ``lambda_min``, often among close eigenvalues near 0: 1e-4, as
#: ``landscape.sharpness.measure_hessian``).
TOL = 1e-2

#: Default cadence of the float64 check of the eigenvalues, in logs:
#: ``verify_every = VERIFY_EVERY * every``.
VERIFY_EVERY = 10

#: The eigenvalue measures, each logged with its residual ``<measure>_residual``.
EIGENVALUES = ("lambda_max", "lambda_min")

__all__ = ["EIGENVALUES", "TOL", "VERIFY_EVERY", "log_eigenvalue", "log_operator"]


def log_operator(
    here: Objective, settings: Mapping[str, Any], check_deterministic: bool
) -> HessianOperator | ShardedHessianOperator:
    """The Hessian at one log for its eigenvalues (``settings``: the routed ``params`` and
    ``hvp``): the loss checked deterministic where asked (the first log), and no
    fingerprints of the point (the log's step names it); an FSDP2 model's with
    ``hvp="fd"`` (or ``"auto"``) on its local shards, refused otherwise."""
    params, hvp = settings.get("params"), settings.get("hvp")
    if here.sharded:
        return resolve_operator(here, None, params, None, hvp)
    return HessianOperator(here, params=params, check_deterministic=check_deterministic,
                           fingerprint=False, hvp=hvp or "exact")  # fmt: skip


def log_eigenvalue(
    op: HessianOperator | ShardedHessianOperator,
    name: str,
    settings: Mapping[str, Any],
    warm: WarmStart | None,
    progress: bool,
    float64: bool,
) -> SharpnessResult:
    """``name`` of ``op`` by the registry measure's Lanczos with the routed ``settings``
    (``tol``: :data:`TOL` for ``lambda_max`` below float64; ``max_memory`` planned before
    any product, refused in one line if the basis does not fit) from ``warm``, its
    residual checked in float64 or (``float64=False``, a float32 model) in float32."""
    tracking = name == "lambda_max" and op.dtype != torch.float64
    tol = settings.get("tol", TOL if tracking else None)
    plan_for(op, "eigenpairs", settings.get("max_memory"), "thick-restart", k=1,
             max_hvps=settings["max_hvps"])  # fmt: skip
    return extreme_eigenvalue(op, name, settings["seed"], tol, settings["max_hvps"], warm,
                              progress, float64)  # fmt: skip
