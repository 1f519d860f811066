"""Normalization of a direction to the weights (Li et al. 2018).

Per tensor with ``dim > 1``, iterating over dim 0 (a filter is a conv output channel or a
row of a linear layer):

- ``filter``: each filter rescaled to the norm of the same filter of the weights;
- ``layer``: each tensor rescaled to the norm of the weight tensor;
- ``weight``: multiplied elementwise by the weights;
- ``none``: raw Gaussian.

Tensors with ``dim <= 1`` (biases, norm-layer parameters, running stats) are zeroed with
``ignore="biasbn"`` (default) or normalized as a one-filter tensor with ``ignore="none"``.
A filter of the direction that is all zeros (a frozen layer in an interpolation direction)
stays zero, as in Li et al.'s code, rather than turning the whole surface NaN.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .. import options
from ..checks import check_choice, check_state
from ..options import IgnoreName, NormName, values
from .core import State
from .drawing import normalize_

Norm = NormName  # the Literal aliases of landscape.options, under their 0.2 names
Ignore = IgnoreName
NORMS = values(options.Norm)
IGNORES = values(options.Ignore)

__all__ = ["IGNORES", "NORMS", "Ignore", "Norm", "is_running_stat", "normalize_direction"]


def _check_options(norm: str, ignore: str) -> None:
    check_choice(norm, options.Norm, "norm")
    check_choice(ignore, options.Ignore, "ignore")


def is_running_stat(name: str) -> bool:
    """Whether a state entry is a norm layer's running statistic (``running_mean`` or
    ``running_var``), which a random direction moves along itself (see the module docstring).

    Example:
        >>> is_running_stat("1.running_var"), is_running_stat("1.weight")
        (True, False)
    """
    return name.rsplit(".", 1)[-1] in ("running_mean", "running_var")


def normalize_direction(
    direction: Mapping[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor],
    *,
    norm: Norm = "filter",
    ignore: Ignore = "biasbn",
) -> State:
    """Rescale a direction to the weights, tensor by tensor (see the module docstring).

    Args:
        direction: the raw direction.
        weights: the point it is normalized to (same names and shapes).
        norm: ``"filter"``, ``"layer"``, ``"weight"`` or ``"none"``.
        ignore: ``"biasbn"`` zeroes tensors with ``dim <= 1``; ``"none"`` keeps them.

    Returns:
        A new state; the inputs are not modified.

    Example:
        >>> w = {"w": torch.tensor([[3.0, 4.0], [0.0, 1.0]]), "b": torch.ones(2)}
        >>> d = normalize_direction({"w": torch.ones(2, 2), "b": torch.ones(2)}, w)
        >>> [round(v, 6) for v in d["w"].norm(dim=1).tolist()], d["b"].tolist()
        ([5.0, 1.0], [0.0, 0.0])
    """
    _check_options(norm, ignore)
    check_state(direction, weights, name="the direction", against="the weights", missing=False)
    out = {}
    for name, d in direction.items():
        w = weights[name]
        work = torch.promote_types(d.dtype, torch.float32)  # norms in float32 or better
        draft = d.to(work, copy=True, memory_format=torch.contiguous_format)
        out[name] = normalize_(draft, w.to(work), norm, ignore).to(d.dtype)
    return out
