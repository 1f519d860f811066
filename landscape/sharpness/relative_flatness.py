"""Relative flatness (Petzka et al. 2021) of one Linear layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._progress import progress_bar
from .._provenance import provenance
from ..objective import Objective
from ..params import ParamSelection
from . import _checks
from ._evaluation import selection_setting, weights_of
from .registry import register
from .result import SharpnessResult

__all__ = ["MAX_HESSIAN_BYTES", "measure_relative_flatness"]

MAX_HESSIAN_BYTES = 2 * 2**30
"""The largest layer Hessian :func:`measure_relative_flatness` forms: 2 GiB."""


def measure_relative_flatness(
    objective: Objective,
    *,
    layer: str | None = None,
    params: ParamSelection = None,
    progress: bool = True,
) -> SharpnessResult:
    """Relative flatness of Petzka et al. (2021) on one Linear layer.

    ``kappa = sum_{s,s'} <w_s, w_s'> Tr(H_{s,s'})`` where ``w_s`` is row ``s`` of the layer's
    weight (the weights into unit ``s``) and ``H_{s,s'}`` the block of the Hessian of the mean
    loss with respect to rows ``s`` and ``s'``. The layer's full Hessian is formed
    (``torch.func.hessian``, ``(out * in)^2`` entries), so the layer must be small, as a
    network's last layers are: a layer whose Hessian would exceed :data:`MAX_HESSIAN_BYTES`
    (2 GiB) is refused before any work. Invariant to rescaling the layer against its
    neighbours.

    Args:
        objective: the loss and data; its model is never changed.
        layer: name of a 2-D weight (e.g. ``"fc.weight"``); default the last ``nn.Linear``
            (whose weight ``params`` selects).
        params: the weights ``layer`` is chosen from (names, glob patterns, a predicate or
            ``"trainable"``, see :func:`landscape.params.select_names`).
        progress: show a tqdm bar of the batches.

    Returns:
        A deterministic :class:`SharpnessResult` named ``"relative_flatness"``.

    Raises:
        ValueError: ``layer`` is not a 2-D weight, the model has no ``nn.Linear``, or the
            layer's Hessian would exceed :data:`MAX_HESSIAN_BYTES`.
        TypeError: ``layer`` is not a string.

    Example:
        >>> from landscape.sharpness._example import example_objective
        >>> measure_relative_flatness(example_objective()).value > 0
        True
    """
    _checks.check_objective(objective)
    weights = weights_of(objective, params)
    if layer is None:
        modules = objective.model.named_modules()
        linear = [f"{n}.weight" if n else "weight" for n, m in modules if isinstance(m, nn.Linear)]
        linear = [n for n in linear if n in weights]
        if not linear:
            raise ValueError(
                "the model has no nn.Linear (among the selected weights); pass layer= the name "
                "of a 2-D weight"
            )
        layer = linear[-1]
    layer = _checks.check_name("layer", layer)
    if layer not in weights or weights[layer].dim() != 2:
        two_d = [n for n, w in weights.items() if w.dim() == 2]
        raise ValueError(f"expected layer to name a 2-D weight, one of {two_d}, got {layer!r}")
    weight = weights[layer]
    num_bytes = weight.numel() ** 2 * weight.element_size()
    if num_bytes > MAX_HESSIAN_BYTES:
        raise ValueError(
            f"relative_flatness forms the full Hessian of layer {layer!r}: "
            f"{weight.numel():,} parameters, ({weight.numel():,})^2 entries of {weight.dtype} "
            f"= {num_bytes / 2**30:.1f} GiB, over the bound of {MAX_HESSIAN_BYTES / 2**30:g} GiB "
            "(MAX_HESSIAN_BYTES); pass layer= (or params=) a smaller 2-D weight, or use a "
            "measure that scales, such as 'trace' or 'adaptive_avg_l2'"
        )
    hessian = torch.zeros(weight.shape * 2, dtype=weight.dtype, device=weight.device)
    batches = list(objective.batches())
    with progress_bar(progress, desc="relative_flatness", unit="batch", total=len(batches)) as bar:
        for batch in batches:

            def batch_loss(w: torch.Tensor, batch: Any = batch) -> torch.Tensor:
                sums, _ = objective.batch_sums(
                    objective.full_state({layer: w}), batch, with_metrics=False
                )
                return sums["loss"]

            hessian += torch.func.hessian(batch_loss)(weight)
            bar.update()
    hessian = objective.all_reduce(hessian)
    traces = torch.einsum("sjtj->st", hessian / objective.num_examples)
    value = float(((weight @ weight.T).to(torch.float64) * traces.to(torch.float64)).sum())
    settings = {
        **provenance(objective),
        **selection_setting(objective, params, weights),
        "layer": layer,
    }
    return SharpnessResult("relative_flatness", value, 0.0, settings)


register("relative_flatness", measure_relative_flatness, defaults={"layer": None, "params": None})
