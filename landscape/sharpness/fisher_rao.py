"""The squared Fisher-Rao norm (Liang et al. 2019)."""

from __future__ import annotations

import torch

from .._progress import progress_bar
from .._provenance import provenance
from ..objective import Objective
from ..params import ParamSelection
from . import _checks
from ._evaluation import State, is_pair, selection_setting, weights_of
from .registry import register
from .result import SharpnessResult

__all__ = ["measure_fisher_rao"]


def measure_fisher_rao(
    objective: Objective, *, params: ParamSelection = None, progress: bool = True
) -> SharpnessResult:
    """Squared Fisher-Rao norm (Liang et al. 2019), ``E_(x,y)[<w, grad_w l(w; x, y)>^2]``.

    The expectation is the mean over the data set's examples and their labels (the empirical
    version), computed exactly: the measure is deterministic. For a bias-free ReLU network of
    depth ``L + 1`` this equals ``(L + 1)^2 E[<dl/df, f>^2]``; in this form it needs no depth
    and is invariant to any rescaling of the weights that leaves the network's function
    unchanged. Each ``<w, grad l>`` is a forward-mode directional derivative along ``w``,
    vectorized over the examples of a batch.

    Args:
        objective: the loss and data (batches of ``(inputs, targets)`` tensors); its model is
            never changed.
        params: the weights ``w`` of ``<w, grad_w l>`` (names, glob patterns, a predicate or
            ``"trainable"``, see :func:`landscape.params.select_names`); default all.
        progress: show a tqdm bar of the batches.

    Returns:
        A deterministic :class:`SharpnessResult` named ``"fisher_rao"``.

    Raises:
        ValueError: the objective's batches are not ``(inputs, targets)`` tensors.

    Example:
        >>> from landscape.sharpness._example import example_objective
        >>> measure_fisher_rao(example_objective()).value > 0
        True
    """
    _checks.check_objective(objective)
    weights = weights_of(objective, params)
    batches = list(objective.batches())
    if not all(is_pair(b) for b in batches):
        raise ValueError(
            "fisher_rao needs per-example losses, so batches of (inputs, targets) tensors; "
            "this objective has other batches (a batch_loss closure?)"
        )

    def example_loss(w: State, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        batch = (x.unsqueeze(0), y.unsqueeze(0))
        sums, _ = objective.batch_sums(objective.full_state(w), batch, with_metrics=False)
        return sums["loss"]

    def along_weights(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(lambda w: example_loss(w, x, y), (weights,), (weights,))[1]

    total = torch.zeros((), dtype=torch.float64, device=objective.device)
    count = 0
    with progress_bar(progress, desc="fisher_rao", unit="batch", total=len(batches)) as bar:
        for batch in batches:
            values = torch.func.vmap(along_weights)(*batch)
            total += values.to(torch.float64).pow(2).sum()  # on the device, read once below
            count += len(values)
            bar.update()
    settings = {**provenance(objective), **selection_setting(objective, params, weights)}
    sums = objective.all_reduce(torch.stack([total, total.new_tensor(count)]))
    return SharpnessResult("fisher_rao", float(sums[0] / sums[1]), 0.0, settings)


register("fisher_rao", measure_fisher_rao, defaults={"params": None})
