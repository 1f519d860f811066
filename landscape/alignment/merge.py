"""``merge``: a weighted average of checkpoints, each first aligned to the first one, and
its loss beside the checkpoints' own."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import save_checkpoint
from ..checks import check_choice
from ..objective import Objective
from ..options import AlignMethod
from ..params import expand_tied, tied_names
from ..results.base import Result
from .align import align_states
from .spec import permutation_spec

__all__ = ["MergeResult", "merge"]


@dataclass(frozen=True, eq=False)
class MergeResult(Result):
    """A merged checkpoint and its loss against the checkpoints'; compared by value.

    Attributes:
        state: the merged ``state_dict`` (new tensors).
        weights: the normalized weights, float64 ``(num_checkpoints,)``.
        align: the alignment method (``None``: a plain average).
        losses: each checkpoint's loss on the data, float64 ``(num_checkpoints,)``; NaN
            without data.
        loss: the merged checkpoint's loss (NaN without data).
        metrics: every metric of the merged checkpoint (``loss``, ``accuracy``, ...; empty
            without data).
        model: a new module holding ``state`` (``None`` without an architecture).
    """

    state: dict[str, torch.Tensor]
    weights: np.ndarray
    align: str | None
    losses: np.ndarray
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, compare=False)

    def save(self, path: str | os.PathLike) -> Path:
        """Write :attr:`state` as a checkpoint (:func:`landscape.save_checkpoint`); load it
        with ``landscape.load_checkpoint(model, path)``. Returns the path written."""
        return save_checkpoint(self.state, path)


def _average(states: Sequence[Mapping[str, torch.Tensor]], w: Sequence[float]) -> dict:
    first, total = states[0], sum(w)
    merged = {}
    for name, t in first.items():
        if not t.is_floating_point():
            merged[name] = t.detach().clone()
            continue
        acc = torch.zeros(t.shape, dtype=torch.float64, device=t.device)
        for wi, s in zip(w, states, strict=True):
            acc += (wi / total) * s[name].detach().to(device=t.device, dtype=torch.float64)
        merged[name] = acc.to(t.dtype)
    return merged


def merge(
    models: Sequence[nn.Module | Mapping[str, torch.Tensor]],
    weights: Sequence[float] | None = None,
    *,
    align: str | None = None,
    data: Any = None,
    loss: Any = "cross_entropy",
    model: nn.Module | None = None,
    seed: int = 0,
    residual: bool = False,
) -> MergeResult:
    """The weighted average of checkpoints (a model soup, Wortsman et al. 2022), after
    permuting every one into the first one's frame when ``align`` is given (Ainsworth et
    al. 2023: averaging unaligned networks averages unrelated units), and, with ``data``,
    its loss beside each checkpoint's.

    Floating tensors are averaged in float64 and cast back; integer buffers
    (``num_batches_tracked``) are the first checkpoint's. A BatchNorm network's averaged
    running statistics belong to none of the checkpoints: re-estimate them
    (:func:`landscape.paths.reestimate_bn`).

    Args:
        models: two or more models or state_dicts of one architecture.
        weights: one non-negative weight per checkpoint, summing to a positive number
            (normalized); default equal weights.
        align: ``None`` (plain average), ``"weights"`` or ``"activations"`` (as in
            :func:`landscape.align`).
        data: the evaluation data (any form :class:`landscape.Objective` takes, or an
            Objective itself): the losses are measured on it, and ``align="activations"``
            matches on it.
        loss: the loss when ``data`` is not an Objective.
        model: the architecture, when ``models`` holds only state_dicts (default: the first
            model).
        seed: weight matching's order of the groups.
        residual: with ``align``, permute the residual stream of a Hugging Face GPT-2 or
            Llama too (as in :func:`landscape.align`).

    Returns:
        A :class:`MergeResult`: ``.state`` (load it with ``model.load_state_dict``),
        ``.model``, ``.losses`` and ``.loss``, and ``.save(path)`` for a checkpoint file.

    Raises:
        ValueError: fewer than two checkpoints, weights of the wrong length or sign, an
            architecture whose symmetry cannot be derived, or names and shapes that differ.
        TypeError: state_dicts alone with ``align`` or ``data`` and no ``model=``.

    Example:
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> merged = merge([a, b], [3, 1])
        >>> torch.allclose(merged.state["bias"], 0.75 * a.bias + 0.25 * b.bias)
        True
        >>> data = (torch.randn(8, 2), torch.randint(0, 2, (8,)))
        >>> merged = merge([a, b], data=data)
        >>> merged.losses.shape, bool(merged.loss > 0)
        ((2,), True)
    """
    states = [m.state_dict() if isinstance(m, nn.Module) else dict(m) for m in models]
    if len(states) < 2:
        raise ValueError(f"expected at least two checkpoints to merge, got {len(states)}")
    w = [1.0] * len(states) if weights is None else [float(x) for x in weights]
    if len(w) != len(states) or min(w) < 0 or sum(w) <= 0:
        raise ValueError(
            f"expected {len(states)} non-negative weights with a positive sum, got {weights!r}"
        )
    first_model = models[0] if isinstance(models[0], nn.Module) else None
    template = model if model is not None else first_model
    if template is None and (align is not None or data is not None):
        raise TypeError("expected model= (the architecture) with state_dicts alone, got None")
    objective = None
    if data is not None and template is not None:
        objective = data if isinstance(data, Objective) else Objective(template, data, loss=loss)
    aligned = states
    if align is not None and template is not None:
        method = check_choice(align, AlignMethod, "align")
        spec = permutation_spec(template, residual=residual)
        batches = objective.batches() if objective is not None else None
        aligned = [states[0]] + [
            align_states(
                template, states[0], s, method=method, data=batches, spec=spec, seed=seed
            ).state
            for s in states[1:]
        ]
    first = aligned[0]
    for i, state in enumerate(aligned[1:], start=1):
        if set(state) != set(first) or any(state[k].shape != first[k].shape for k in first):
            raise ValueError(
                f"expected checkpoints with the names and shapes of checkpoint 0, got "
                f"checkpoint {i} differing"
            )
    merged = _average(aligned, w)
    losses, metrics = np.full(len(states), np.nan), {}
    if objective is not None:
        losses = np.array([objective(s)["loss"] for s in states], dtype=np.float64)
        metrics = {k: float(v) for k, v in objective(merged).items()}
    built = None
    if template is not None:
        built = copy.deepcopy(template)
        built.load_state_dict(expand_tied(merged, tied_names(built)))
    return MergeResult(
        merged,
        np.asarray(w, dtype=np.float64) / sum(w),
        None if align is None else str(align),
        losses,
        float(metrics.get("loss", np.nan)),
        metrics,
        built,
    )
