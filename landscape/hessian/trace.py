"""The Hessian trace by Hutchinson or Hutch++, with a standard error that covers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch

from .. import distributed, options
from .._progress import progress_bar
from ..linalg import TraceMethod, estimate_trace
from ..objective import Objective
from .operator import HessianOperator, ParamSelection, resolve_operator
from .planner import plan_for, plan_settings
from .results import TraceResult
from .sharded import ShardedHessianOperator

__all__ = ["hessian_trace"]


def hessian_trace(
    objective: Objective | HessianOperator | ShardedHessianOperator,
    *,
    num_probes: int = 99,
    method: TraceMethod | Literal["auto"] = "auto",
    seed: int = 0,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
    max_memory: int | None = None,
    hvp: options.HvpBackendName | None = None,
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

    Products of ``hvp="fd"`` (see :class:`HessianOperator`): the result records their
    measured error ``hvp_error`` and ``settings["hvp_bias_bound"]``, a bound on what that
    error adds to the estimate (``delta`` times the sum over the exact quadratic forms and
    the mean over the random ones of ``||x|| ||H_fd x||``; NaN where ``delta`` could not be
    measured), to be added to the sampling error ``stderr``.

    Ranks: under ``torchrun`` with an objective that does not shard its data (each rank
    holds all of it, so a product needs no collective), Hutchinson's probes are dealt
    across the ranks, probe ``i`` to rank ``i % world_size``, each drawn as one process
    draws it, and gathered by one all-reduce at the end: every rank returns the
    one-process result after ``1 / world_size`` of the HVPs (``settings["ranks"]``).
    Hutch++ is not dealt (its sketch is shared by every probe), nor are the probes of an
    objective with ``shard_data=True`` (every rank makes every product, all-reduced).

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
        hvp: the products of the operator built from an Objective (see
            :class:`HessianOperator`; default ``"exact"``). A model sharded by FSDP2 takes
            ``"fd"`` (or ``"auto"``): a :class:`ShardedHessianOperator` on each rank's local
            shards, collective (call it on every rank), with Hutchinson's probes drawn
            parameter by parameter (the same whole probes on any number of ranks);
            Hutch++ is refused there (its sketch is factored whole).

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
    op = resolve_operator(objective, state, params, dtype, hvp)
    if isinstance(op, ShardedHessianOperator) and method == "auto":
        method = "hutchinson"  # Hutch++'s sketch is factored whole
    plan = plan_for(op, "trace", max_memory, method, num_probes=num_probes)
    chosen: Literal["hutch++", "hutchinson"] = (
        "hutch++" if plan.choice == "hutch++" else "hutchinson"
    )
    recorded = _Recorded(op) if op.hvp == "fd" else op
    dealt = probes_dealt(op) and chosen == "hutchinson"  # every rank joins
    ranks = distributed.world_size() if dealt else 1
    mine = len(range(distributed.rank() if dealt else 0, num_probes, ranks))
    with progress_bar(progress, desc="trace", unit="HVP", total=mine) as bar:
        estimate = estimate_trace(
            recorded, num_probes=num_probes, method=chosen, seed=seed, callback=bar.update,
            deal_probes=dealt,
        )  # fmt: skip
    settings = {**op.settings, "num_probes": num_probes, "seed": seed, "ranks": ranks}
    if isinstance(recorded, _Recorded):
        settings["hvp_bias_bound"] = recorded.bias_bound(estimate.settings["num_sketch"], dealt)
    return TraceResult(
        value=estimate.value,
        stderr=estimate.stderr,
        num_hvps=estimate.num_matvecs,
        method=chosen,
        samples=estimate.samples,
        settings={**settings, **plan_settings(plan, max_memory)},
        hvp=op.hvp,
        hvp_error=op.hvp_error,
    )


def probes_dealt(op: HessianOperator | ShardedHessianOperator) -> bool:
    """Whether the probes of a Hutchinson trace or a density are dealt across the ranks:
    under a process group of several ranks, with products local to each rank (the data not
    sharded), and the same operator on every rank (the fingerprints of the point, the
    weights and the data agree; else each rank computes its own operator's answer, as one
    process would). Every rank must call it (one small collective)."""
    if distributed.world_size() < 2 or op.objective.shard_data or op.objective.sharded:
        return False  # products collective: every rank makes every one
    keys = ("checkpoint_sha256", "state_sha256", "data_sha256")
    mine = tuple(op.settings.get(key) for key in keys)
    return all(theirs == mine for theirs in distributed.all_gather_objects(mine))


class _Recorded:
    """An operator that records ``||x|| ||A x||`` for each product (on the device)."""

    def __init__(self, op: HessianOperator | ShardedHessianOperator):
        self.op, self.size, self.dtype, self.device = op, op.size, op.dtype, op.device
        self.space = getattr(op, "space", None)  # a sharded model's pieces
        self.norms: list[torch.Tensor] = []

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op.matvec(x)
        if self.space is not None:  # the whole vectors' norms
            self.norms.append(torch.tensor(self.space.norm(x) * self.space.norm(y)))
            return y
        norm = torch.linalg.vector_norm
        self.norms.append(norm(x.to(torch.float64)) * norm(y.to(torch.float64)))
        return y

    __matmul__ = matvec

    def bias_bound(self, num_sketch: int, dealt: bool = False) -> float:
        """``delta (sum_q ||q|| ||H q|| + mean_g ||P g|| ||H P g||)``: each quadratic form
        ``x^T H_fd x`` is within ``delta ||x|| ||H x||`` of ``x^T H x`` for products of
        relative error ``delta`` (the sketch ``H S`` only chooses the subspace, and any
        subspace gives an unbiased estimate); NaN where ``delta`` is unknown. ``dealt``
        (Hutchinson's probes across the ranks): the mean over every rank's probes (a
        collective)."""
        delta = self.op.hvp_error
        if dealt:  # no sketch: the mean of the norms over the ranks
            zero = torch.zeros((), dtype=torch.float64, device=self.device)
            local = torch.stack([sum(self.norms, zero), zero + len(self.norms)])
            total = distributed.all_reduce_sum(local).cpu().numpy()
            return float("nan") if isinstance(delta, str) else float(delta * total[0] / total[1])
        if isinstance(delta, str) or not self.norms:
            return float("nan")
        norms = torch.stack(self.norms).cpu().numpy()
        forms, rest = norms[num_sketch : 2 * num_sketch], norms[2 * num_sketch :]
        return float(delta * (forms.sum() + (rest.mean() if len(rest) else 0.0)))
