"""Fitting a curve between two checkpoints by minimizing the expected loss along it."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from ..checks import check_seed
from .curves import Curve, CurveKind, _as_state, _check_kind, _point

if TYPE_CHECKING:
    from ..objective import Objective

__all__ = ["fit_curve"]


def fit_curve(
    objective: Objective,
    start: nn.Module | Mapping[str, torch.Tensor],
    end: nn.Module | Mapping[str, torch.Tensor],
    *,
    kind: CurveKind = "bezier",
    num_steps: int = 500,
    lr: float = 0.01,
    optimizer: Literal["adam", "sgd"] = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> Curve:
    """Fit a curve between two checkpoints by minimizing the expected loss along it.

    The bend starts at the midpoint ``(a + b) / 2`` (the curve is then the straight line)
    and is moved by ``num_steps`` optimizer steps; step ``s`` draws ``t ~ U(0, 1)`` from a
    generator seeded with ``seed`` and takes the gradient of the mean loss at
    ``phi_theta(t)`` on the objective's next batch (the batches are cycled in their fixed
    order), as Garipov et al. (2018) do. The loss is computed through
    ``objective.batch_sums``, in the objective's mode: for a BatchNorm network, fit with an
    Objective made with ``train_mode=True`` (batch statistics, as in the paper) and
    evaluate with ``bn_reestimate=True``. The ends never move.

    Args:
        objective: the model and the (training) data.
        start, end: the two checkpoints (models or state_dicts of the objective's model).
        kind: ``"bezier"`` or ``"polychain"`` (``"line"`` returns the line unfitted).
        num_steps: optimizer steps.
        lr, optimizer, momentum, weight_decay: the optimizer (``momentum`` for SGD only).
        seed: seed of the ``t`` draws.

    Returns:
        The fitted :class:`Curve`; ``settings`` holds every option and the mean training
        loss over the last tenth of the steps (``final_loss``).

    Raises:
        ValueError: an unknown kind or optimizer, ``num_steps < 0``, ``lr <= 0``, or
            checkpoints that do not fit the model.
    """
    _check_kind(kind)
    objective.check_differentiable()  # a sharded model: refused before any work
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(f"num_steps must be a non-negative integer, got {num_steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    a = _as_state(objective, start, "start")
    b = _as_state(objective, end, "end")
    settings: dict[str, Any] = {
        "num_steps": num_steps, "lr": float(lr), "optimizer": optimizer,
        "momentum": float(momentum), "weight_decay": float(weight_decay), "seed": int(seed),
        "train_mode": bool(objective.train_mode),
    }  # fmt: skip
    if kind == "line":
        return Curve("line", a, b, None, settings)
    names = [n for n, p in objective.model.named_parameters() if p.is_floating_point() and n in a]
    bend = {n: torch.lerp(a[n], b[n], 0.5).requires_grad_(True) for n in names}
    params = list(bend.values())
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(check_seed(seed))
    batches = itertools.cycle(list(objective.batches()))
    recent: list[float] = []
    for step in range(num_steps):
        t = float(torch.rand((), generator=generator, dtype=torch.float64))
        t = min(max(t, 1e-12), 1 - 1e-12)  # an interior point: the bend has a gradient
        state = _point(kind, a, b, bend, t)
        sums, count = objective.batch_sums(
            objective.full_state(state), next(batches), with_metrics=False
        )
        loss = sums["loss"] / count
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= num_steps - max(1, num_steps // 10):
            recent.append(float(loss.detach()))
    settings["final_loss"] = float(np.mean(recent)) if recent else float("nan")
    fitted = {n: p.detach().clone() for n, p in bend.items()}
    return Curve(kind, a, b, fitted, settings)
