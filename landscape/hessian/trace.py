"""The Hessian trace by Hutchinson or Hutch++, with a standard error that covers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch

from .._progress import progress_bar
from ..linalg import TraceMethod, estimate_trace
from ..objective import Objective
from .operator import HessianOperator, ParamSelection, resolve_operator
from .planner import plan_for, plan_settings
from .results import TraceResult

__all__ = ["hessian_trace"]


def hessian_trace(
    objective: Objective | HessianOperator,
    *,
    num_probes: int = 99,
    method: TraceMethod | Literal["auto"] = "auto",
    seed: int = 0,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
    max_memory: int | None = None,
) -> TraceResult:
    """Trace of the Hessian with a fixed number of random-sign probes and a standard error.

    The estimator is :func:`landscape.linalg.estimate_trace` on the
    :class:`HessianOperator`. "hutchinson" averages ``z^T H z``. "hutch++" (Meyer et al.,
    2021) spends a third of the probes on a sketch ``Q = orth(H S)``, a third on
    ``tr(Q^T H Q)`` (exact), and the rest on Hutchinson for the deflated rest ``P H P``:
    far more accurate when the spectrum decays (a few large eigenvalues), and exact once the
    sketch covers all ``n`` dimensions (``num_probes >= 3 n``). The standard error comes
    from an unbiased estimate of the variance of one random quadratic form (from the norms
    of the products and the diagonal they reveal, not from the spread of a few skewed
    samples), so that ``value +- 1.96 stderr`` covers the trace in about 95% of seeds.

    Memory, in vectors of ``n`` (the number of weights) on the device: at most ``2 s + 6``
    in the operator's dtype (at least float32), ``s = num_probes // 3`` for Hutch++ and 0
    for Hutchinson (see :func:`~landscape.linalg.estimate_trace`); each HVP adds one float64
    vector (the sum over batches) and a batch's gradient graph, kept graphs at most
    ``max_graph_bytes`` (see :class:`HessianOperator`). The host reads the sums once, after
    the last probe.

    Args:
        objective: an Objective or a HessianOperator.
        num_probes: HVP budget (Hutch++ uses fewer if its sketch would exceed ``n``).
        method: "hutch++", "hutchinson", or "auto" (the default): Hutch++ when its sketch
            fits in ``max_memory``, else Hutchinson (:mod:`~landscape.hessian.planner`;
            ``settings["strategy"]`` and ``settings["planned_bytes"]`` record it).
        max_memory: bytes the job may hold; default the device's free memory (the host's
            available memory on the CPU).
        seed: seed of the probes.
        state, params, dtype: as in :class:`HessianOperator`.
        progress: show a tqdm bar of the HVPs.

    Returns:
        a :class:`TraceResult` (NaN value and error where an HVP is not finite).

    Raises:
        ValueError: unknown method, or too few probes (2 for Hutchinson, 4 for Hutch++:
            a standard error needs two residual probes).
        RuntimeError: the method does not fit in ``max_memory`` (before any HVP).

    Example:
        >>> from torch import nn
        >>> from landscape.objective import Objective
        >>> x = torch.randn(20, 3, dtype=torch.float64)
        >>> objective = Objective(nn.Linear(3, 1).double(), (x, x.sum(1)), loss="mse")
        >>> exact = 2 * (x.pow(2).sum() / 20 + 1)
        >>> abs(hessian_trace(objective, num_probes=12).value - float(exact)) < 1e-10
        True
    """
    if method not in ("auto", "hutch++", "hutchinson"):
        raise ValueError(f"expected method 'auto', 'hutch++' or 'hutchinson', got {method!r}")
    op = resolve_operator(objective, state, params, dtype)
    plan = plan_for(op, "trace", max_memory, method, num_probes=num_probes)
    method = plan.choice
    with progress_bar(progress, desc="trace", unit="HVP", total=num_probes) as bar:
        estimate = estimate_trace(
            op, num_probes=num_probes, method=method, seed=seed, callback=bar.update
        )
    return TraceResult(
        value=estimate.value,
        stderr=estimate.stderr,
        num_hvps=estimate.num_matvecs,
        method=method,
        samples=estimate.samples,
        settings={
            **op.settings,
            "num_probes": num_probes,
            "seed": seed,
            **plan_settings(plan, max_memory),
        },  # fmt: skip
    )
