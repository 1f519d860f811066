"""``align``: one checkpoint permuted into another's frame, and what it found."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checks import check_choice, check_seed
from ..options import AlignMethod
from ..params import expand_tied, tied_names
from ..results.base import Result
from .activations import activation_matching
from .permute import identity_permutations, permute_state
from .spec import PermutationSpec, permutation_spec
from .weights import weight_matching, weight_objective

__all__ = ["Alignment", "align", "align_states"]


@dataclass(frozen=True, eq=False)
class Alignment(Result):
    """``b`` permuted into ``a``'s frame; compared by value.

    Attributes:
        method: ``"weights"`` or ``"activations"``.
        permutations: ``{group: int64 permutation}``; unit ``i`` of the aligned ``b`` is
            unit ``permutations[group][i]`` of ``b``.
        objective_before, objective_after: the matched quantity with the identity and with
            the permutations found: ``sum_w <a_w, b_w>`` over the permuted parameters
            (weights), or the mean correlation of paired units (activations).
        state: the aligned ``state_dict`` of ``b`` (new tensors; ``b`` is not changed).
        model: a new module holding ``state`` (``None`` when ``b`` was a state_dict).
        spec: the permutation groups (:func:`permutation_spec`).
    """

    method: str
    permutations: dict[str, torch.Tensor]
    objective_before: float
    objective_after: float
    state: dict[str, torch.Tensor]
    model: nn.Module | None = field(default=None, compare=False)
    spec: PermutationSpec | None = field(default=None, compare=False)


def _mean_paired(corr: Mapping[str, np.ndarray], perms: Mapping[str, torch.Tensor]) -> float:
    values = [c[np.arange(len(c)), perms[g].numpy()] for g, c in corr.items()]
    return float(np.mean(np.concatenate(values))) if values else float("nan")


def _loaded(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    out = copy.deepcopy(model)
    out.load_state_dict(expand_tied(state, tied_names(out)))
    return out


def align_states(
    model: nn.Module,
    state_a: Mapping[str, torch.Tensor],
    state_b: Mapping[str, torch.Tensor],
    *,
    method: str = "weights",
    data: Any = None,
    spec: PermutationSpec | None = None,
    max_iter: int = 100,
    seed: int = 0,
    residual: bool = False,
) -> Alignment:
    """:func:`align` on two states of the architecture of ``model`` (``model`` itself only
    gives the module graph; ``Alignment.model`` is ``None``; ``residual`` is used only
    when ``spec`` is not given)."""
    method = check_choice(method, AlignMethod, "method")
    seed = check_seed(seed)
    if method == AlignMethod.ACTIVATIONS and data is None:
        raise ValueError("expected data= for method='activations', got None")
    spec = spec if spec is not None else permutation_spec(model, residual=residual)
    state_a, state_b = dict(state_a), dict(state_b)
    identity = identity_permutations(spec)
    if method == AlignMethod.WEIGHTS:
        perms = weight_matching(spec, state_a, state_b, max_iter=max_iter, seed=seed)
        before = weight_objective(spec, state_a, state_b)
        after = weight_objective(spec, state_a, permute_state(state_b, spec, perms))
    else:
        model_a, model_b = _loaded(model, state_a), _loaded(model, state_b)
        perms, corr = activation_matching(spec, model_a, model_b, data)
        before, after = _mean_paired(corr, identity), _mean_paired(corr, perms)
    aligned = {k: v.detach().clone() for k, v in permute_state(state_b, spec, perms).items()}
    return Alignment(str(method), perms, before, after, aligned, None, spec)


def align(
    model_a: nn.Module,
    model_b: nn.Module | Mapping[str, torch.Tensor],
    *,
    method: str = "weights",
    data: Any = None,
    max_iter: int = 100,
    seed: int = 0,
    residual: bool = False,
) -> Alignment:
    """``model_b`` with its hidden units permuted into ``model_a``'s frame (Git Re-Basin).

    The permutation groups are derived from ``model_a``'s module graph
    (:func:`permutation_spec`, which refuses an architecture it cannot handle before any
    work). The aligned model computes the same function as ``model_b``.

    Args:
        model_a: the reference model.
        model_b: a model of the same architecture, or its ``state_dict`` (not changed).
        method: ``"weights"`` (weight matching, no data needed) or ``"activations"``
            (correlation of the activations over ``data``; traced by ``torch.fx``, or for
            Hugging Face GPT-2 and Llama recorded by forward hooks).
        data: batches for ``"activations"`` (any form :func:`landscape.data.as_batches`
            accepts).
        max_iter: most sweeps of weight matching.
        seed: the order in which weight matching visits the groups.
        residual: for Hugging Face GPT-2 and Llama, permute the residual stream too (group
            ``"residual"``; opt-in: the default reproduces alignments made before it was
            added). Other models' residual streams follow from their graph, always permuted.

    Returns:
        An :class:`Alignment`: ``.model`` (a new module, or ``None`` when ``model_b`` is a
        state_dict), ``.state``, ``.permutations``, ``.objective_before`` and
        ``.objective_after``.

    Raises:
        ValueError: an architecture whose symmetry cannot be derived (the message names the
            module), an unknown method, or ``"activations"`` without data.

    Example:
        >>> from torch import nn
        >>> a = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2))
        >>> b = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2))
        >>> result = align(a, b)
        >>> x = torch.randn(4, 3)
        >>> torch.allclose(result.model(x), b(x), atol=1e-6)
        True
        >>> result.objective_after >= result.objective_before
        True
    """
    state_b = model_b.state_dict() if isinstance(model_b, nn.Module) else model_b
    if not isinstance(state_b, Mapping):
        raise TypeError(f"expected model_b as an nn.Module or a state_dict, got {type(model_b)}")
    result = align_states(
        model_a,
        model_a.state_dict(),
        state_b,
        method=method,
        data=data,
        max_iter=max_iter,
        seed=seed,
        residual=residual,
    )
    if not isinstance(model_b, nn.Module):
        return result
    aligned = copy.deepcopy(model_b)
    aligned.load_state_dict(result.state)
    return Alignment(
        result.method,
        result.permutations,
        result.objective_before,
        result.objective_after,
        result.state,
        aligned,
        result.spec,
    )
