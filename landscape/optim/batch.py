"""Batch sharpness and the gradient's share in the Hessian's top eigenspace.

With minibatch SGD the quantity that settles at ``2 / lr`` is not the full-batch
``lambda_max`` but the *batch sharpness* ``E_B[g_B^T H_B g_B / ||g_B||^2]`` (Andreyev &
Beneventano 2024, "Edge of Stochastic Stability"): the curvature of each minibatch's own
loss along its own gradient, averaged over minibatches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .._progress import progress_bar
from .._provenance import provenance
from ..hessian.eigen import hessian_eigenpairs
from ..objective import Objective
from ..params import ParamSelection, select_params
from ..results.optim import BatchSharpness, GradientAlignment

__all__ = ["batch_sharpness", "gradient_alignment", "loss_gradient"]


def _leaves(objective: Objective, state, params: ParamSelection):
    objective.check_differentiable()  # a sharded model: refused before any work
    point = objective.full_state(state)
    names = select_params(objective.model, params)
    leaves = {n: point[n].detach().clone().requires_grad_(True) for n in names}
    return point, names, leaves


def _quotient(objective: Objective, point, leaves, batch) -> tuple[torch.Tensor, Any]:
    """``[g^T H g, ||g||^2]`` of one batch's mean loss (float64, on the device)."""
    sums, count = objective.batch_sums(
        objective.full_state({**point, **leaves}), batch, with_metrics=False
    )
    weights = list(leaves.values())
    grads = torch.autograd.grad(sums["loss"] / count, weights, create_graph=True)
    flat = [g.detach() for g in grads]
    hg = torch.autograd.grad(grads, weights, grad_outputs=flat, materialize_grads=True)
    ghg = torch.stack([(g.double() * h.double()).sum() for g, h in zip(flat, hg, strict=True)])
    gg = torch.stack([g.double().pow(2).sum() for g in flat])
    return torch.stack([ghg.sum(), gg.sum()]), count


def batch_sharpness(
    objective: Objective,
    *,
    lr: float | None = None,
    max_batches: int | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    progress: bool = False,
) -> BatchSharpness:
    """The mean of ``g_B^T H_B g_B / ||g_B||^2`` over the objective's batches.

    The mean of the ratios is the value; the ratio of the means ``E[g^T H g] / E[||g||^2]``
    (which weighs batches by their squared gradient norm) is given beside it: on the digits
    MLPs tried the two differ by a few percent.

    Give the objective the minibatches the model trains on (a loader with the training
    batch size): each batch is one ``B``. The standard error treats the batches as draws of
    the sampler. The host reads once, at the end.

    Args:
        objective: the loss and the minibatches.
        lr: the learning rate, for ``threshold = 2 / lr``.
        max_batches: use only the first ones.
        state, params: the point and the weights, as in :class:`~landscape.hessian.HessianOperator`.
        progress: a tqdm bar over the batches.

    Example:
        >>> from torch import nn
        >>> x = torch.randn(32, 3, dtype=torch.float64)
        >>> loader = [(x[i : i + 8], x[i : i + 8].sum(1)) for i in range(0, 32, 8)]
        >>> model = nn.Linear(3, 1).double()
        >>> batch_sharpness(Objective(model, loader, loss="mse"), lr=0.1).num_batches
        4
    """
    point, names, leaves = _leaves(objective, state, params)
    values: list[torch.Tensor] = []
    size: Any = None
    with progress_bar(progress, desc="batch sharpness", unit="batch") as bar:
        for batch in objective.batches():
            if max_batches is not None and len(values) >= max_batches:
                break
            q, count = _quotient(objective, point, leaves, batch)
            values.append(q.detach())
            size = count if size is None else size
            bar.update(1)
    if not values:
        raise ValueError("expected at least one batch, got empty data")
    pairs = torch.stack(values).cpu().numpy()  # the one host read
    samples = pairs[:, 0] / pairs[:, 1]
    stderr = float(samples.std(ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else math.nan
    return BatchSharpness(
        value=float(samples.mean()),
        stderr=stderr,
        ratio_of_expectations=float(pairs[:, 0].sum() / pairs[:, 1].sum()),
        samples=samples,
        num_batches=len(samples),
        batch_size=int(size),  # read once, here
        threshold=2 / lr if lr else math.nan,
        settings={**provenance(objective, state), "lr": lr, "max_batches": max_batches},
    )


def loss_gradient(
    objective: Objective,
    *,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
) -> tuple[list[str], torch.Tensor]:
    """The exact full-batch mean loss's gradient, flat float64 in the order of the names."""
    point, names, leaves = _leaves(objective, state, params)
    total = torch.zeros(sum(t.numel() for t in leaves.values()), dtype=torch.float64)
    total = total.to(objective.device)
    examples: Any = 0  # an int, or a 0-dim tensor for token counts (no sync in the loop)
    for batch in objective.batches():
        sums, count = objective.batch_sums(
            objective.full_state({**point, **leaves}), batch, with_metrics=False
        )
        grads = torch.autograd.grad(sums["loss"], list(leaves.values()), materialize_grads=True)
        total += torch.cat([g.reshape(-1).double() for g in grads])
        examples += count
    total = objective.all_reduce(total)
    count = torch.as_tensor(examples, dtype=torch.float64, device=objective.device)
    return names, total / objective.all_reduce(count)


def gradient_alignment(
    objective: Objective,
    *,
    num_eigenpairs: int = 5,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    **eigen_options,
) -> GradientAlignment:
    """``||V_k^T g||^2 / ||g||^2``: the share of the full-batch gradient ``g`` in the span of
    the Hessian's top ``k`` eigenvectors (computed by :func:`~landscape.hessian.hessian_eigenpairs`,
    which takes ``eigen_options``).

    Example:
        >>> from torch import nn
        >>> x = torch.randn(20, 3, dtype=torch.float64)
        >>> model = nn.Linear(3, 1).double()
        >>> objective = Objective(model, (x, x.sum(1)), loss="mse")
        >>> result = gradient_alignment(objective, num_eigenpairs=4)
        >>> round(result.share, 6)  # four eigenvectors span all four weights
        1.0
    """
    names, g = loss_gradient(objective, state=state, params=params)
    eigen = hessian_eigenpairs(
        objective, k=num_eigenpairs, state=state, params=names, progress=False, **eigen_options
    )
    vectors = torch.from_numpy(eigen.eigenvectors).to(g.device)
    norm = float(g.norm())
    share = float((vectors @ g).pow(2).sum()) / norm**2 if norm > 0 else math.nan
    return GradientAlignment(
        share=share,
        gradient_norm=norm,
        eigenvalues=np.asarray(eigen.eigenvalues),
        converged=eigen.converged,
        num_hvps=eigen.num_hvps,
        settings={**eigen.settings, "num_eigenpairs": num_eigenpairs},
    )
