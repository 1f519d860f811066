"""The memory plan of :func:`~landscape.hessian.block_curvature`, made before any product:
each job on the largest block (its top eigenvalue, trace and density), and the off-block
products with the Hessian of every block's weights together."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace

import torch

from ..linalg import TraceMethod
from .planner import Plan, plan_for

__all__ = ["plan_blocks"]


def plan_blocks(
    sizes: Mapping[str, int],
    dtype: torch.dtype,
    device: torch.device | str,
    max_memory: int | None,
    *,
    max_hvps: int,
    num_probes: int,
    method: TraceMethod,
    density: tuple[int, int] | None = None,
    num_off_block_probes: int | None = None,
    refuse: bool = True,
) -> dict[str, Plan]:
    """``{job: Plan}`` for the blocks of ``sizes`` (weights a block) in ``dtype`` on
    ``device`` under ``max_memory`` (default: the device's free memory).

    Jobs run one after another, each on one block's operator, so each is planned on its
    own against the cap: ``"eigenpairs"`` (``k = 1``), ``"trace"`` (``method``),
    ``"density"`` (``density = (probes, steps)``: reorthogonalized where it fits, else
    three-term) and ``"off_block"`` (``num_off_block_probes``: a few vectors of every
    block's weights, planned as a Hutchinson trace's six, which hold more).

    ``refuse=False``: a job that fits nowhere gets a plan with ``choice=""`` (for a
    table) instead of the refusal.

    Raises:
        RuntimeError: a job fits in no strategy: one line with the numbers, before any
            product.

    Example:
        >>> plans = plan_blocks({"a": 10**6, "b": 10}, torch.float32, "cpu", 10**9,
        ...                     max_hvps=500, num_probes=30, method="hutch++")
        >>> plans["eigenpairs"].choice, plans["trace"].n
        ('thick-restart', 1000000)
    """

    def plan(job: str, n: int, strategy: str, **settings) -> Plan:
        op = SimpleNamespace(size=n, dtype=dtype, device=device)
        return plan_for(op, job, max_memory, strategy, refuse=refuse, **settings)

    largest = max(sizes.values())
    plans = {
        "eigenpairs": plan("eigenpairs", largest, "auto", k=1, max_hvps=max_hvps),
        "trace": plan("trace", largest, method, num_probes=num_probes),
    }
    if density is not None:
        probes, steps = density
        plans["density"] = plan("density", largest, "auto", num_probes=probes, num_steps=steps)
    if num_off_block_probes is not None:
        union = sum(sizes.values())
        try:
            plans["off_block"] = plan("trace", union, "hutchinson", num_probes=num_off_block_probes)
        except RuntimeError as err:
            raise RuntimeError(f"off-block share: {err}") from None
    return plans
