"""``merge``: a weighted average of checkpoints, each first aligned to the first one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..checks import check_choice
from ..options import AlignMethod
from .align import align_states
from .spec import permutation_spec

__all__ = ["merge"]


def merge(
    models: Sequence[nn.Module | Mapping[str, torch.Tensor]],
    weights: Sequence[float] | None = None,
    *,
    align: str | None = None,
    data: Any = None,
    model: nn.Module | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """The weighted average of checkpoints (a model soup, Wortsman et al. 2022), after
    permuting every one into the first one's frame when ``align`` is given (Ainsworth et
    al. 2023: averaging unaligned networks averages unrelated units).

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
        data: the batches for ``align="activations"``.
        model: the architecture, when ``models`` holds only state_dicts and ``align`` is
            given (default: the first model).
        seed: weight matching's order of the groups.

    Returns:
        The merged ``state_dict``; load it with ``model.load_state_dict(merged)``.

    Raises:
        ValueError: fewer than two checkpoints, weights of the wrong length or sign, an
            architecture whose symmetry cannot be derived, or names and shapes that differ.

    Example:
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> merged = merge([a, b], [3, 1])
        >>> torch.allclose(merged["bias"], 0.75 * a.bias + 0.25 * b.bias)
        True
    """
    states = [m.state_dict() if isinstance(m, nn.Module) else dict(m) for m in models]
    if len(states) < 2:
        raise ValueError(f"expected at least two checkpoints to merge, got {len(states)}")
    w = [1.0] * len(states) if weights is None else [float(x) for x in weights]
    if len(w) != len(states) or min(w) < 0 or sum(w) <= 0:
        raise ValueError(
            f"expected {len(states)} non-negative weights with a positive sum, got {weights!r}"
        )
    if align is not None:
        method = check_choice(align, AlignMethod, "align")
        template = model if model is not None else models[0]
        if not isinstance(template, nn.Module):
            raise TypeError("expected model= (the architecture) to align state_dicts, got None")
        spec = permutation_spec(template)
        states = [states[0]] + [
            align_states(
                template, states[0], s, method=method, data=data, spec=spec, seed=seed
            ).state
            for s in states[1:]
        ]
    first = states[0]
    for i, state in enumerate(states[1:], start=1):
        if set(state) != set(first) or any(state[k].shape != first[k].shape for k in first):
            raise ValueError(
                f"expected checkpoints with the names and shapes of checkpoint 0, got "
                f"checkpoint {i} differing"
            )
    total = sum(w)
    merged = {}
    for name, t in first.items():
        if not t.is_floating_point():
            merged[name] = t.detach().clone()
            continue
        acc = torch.zeros(t.shape, dtype=torch.float64, device=t.device)
        for wi, s in zip(w, states, strict=True):
            acc = acc + (wi / total) * s[name].detach().to(device=t.device, dtype=torch.float64)
        merged[name] = acc.to(t.dtype)
    return merged
