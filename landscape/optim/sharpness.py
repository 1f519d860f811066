"""Preconditioned sharpness: the top eigenvalues of ``P^-1 H`` for an optimizer's ``P``.

``P^-1 H`` is not symmetric, so a symmetric eigensolver must not be run on it. Its
eigenvalues are those of ``A = P^-1/2 H P^-1/2`` (similar matrices: ``A = P^1/2 (P^-1 H)
P^-1/2``), which is symmetric; the solver runs on ``A`` with the verification of
:func:`landscape.linalg.lanczos_eigenpairs`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from .._progress import progress_bar
from ..checks import check_count, check_seed
from ..hessian.operator import HessianOperator
from ..linalg import MatvecOperator, lanczos_eigenpairs
from ..objective import Objective
from ..params import flatten
from ..results.optim import PreconditionedSharpness
from .preconditioners import Preconditioner, preconditioner

__all__ = ["preconditioned_sharpness", "resolve_preconditioner"]

Source = Preconditioner | torch.optim.Optimizer | Mapping[str, torch.Tensor] | torch.Tensor


def resolve_preconditioner(source: Source, model: torch.nn.Module) -> Preconditioner:
    """A :class:`Preconditioner` from an optimizer, itself, or a diagonal given by hand: a
    ``{name: tensor}`` mapping of some of the model's weights, or a flat tensor over all of
    ``model.parameters()`` in order (then ``threshold`` and ``lr`` are ``nan``).

    Raises:
        ValueError: unknown names, wrong shapes or length, a diagonal that is not positive.
    """
    if isinstance(source, Preconditioner):
        found = source
    elif isinstance(source, torch.optim.Optimizer):
        found = preconditioner(source, model)
    else:
        weights = dict(model.named_parameters())
        if isinstance(source, torch.Tensor):
            n = sum(w.numel() for w in weights.values())
            if source.numel() != n:
                raise ValueError(f"expected a diagonal of {n} entries, got {source.numel()}")
            parts = source.detach().reshape(-1).split([w.numel() for w in weights.values()])
            source = {
                k: p.reshape(w.shape) for (k, w), p in zip(weights.items(), parts, strict=True)
            }
        if not isinstance(source, Mapping):
            raise TypeError(
                "expected an optimizer, a Preconditioner, a tensor or a {name: tensor} mapping, "
                f"got {type(source).__name__}"
            )
        for name, t in source.items():
            if name not in weights or tuple(t.shape) != tuple(weights[name].shape):
                got = tuple(t.shape) if name in weights else "a name not among the weights"
                want = tuple(weights[name].shape) if name in weights else sorted(weights)[:5]
                raise ValueError(f"expected {name!r} shaped {want}, got {got}")
        diagonal = {n: t.detach().to(torch.float64) for n, t in source.items()}
        found = Preconditioner(diagonal=diagonal, lr=math.nan, threshold=math.nan)
    smallest = min(float(t.min()) for t in found.diagonal.values())
    if not smallest > 0 or not all(bool(torch.isfinite(t).all()) for t in found.diagonal.values()):
        raise ValueError(
            f"expected a positive, finite diagonal, got a smallest entry {smallest:.3g}"
        )
    return found


def _operator(H: HessianOperator, P: Preconditioner) -> MatvecOperator:
    """``A = P^-1/2 (H + l2) P^-1/2`` on ``H``'s flat vectors, with its float64 twin."""

    def flat(values: Mapping[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        return flatten({n: values[n].to(H.device, dtype) for n in H.names}, H.names)

    inv_sqrt = {n: P.diagonal[n].rsqrt() for n in H.names}
    l2 = {n: torch.full_like(P.diagonal[n], P.l2.get(n, 0.0)) for n in H.names}

    def product(op: HessianOperator, dtype: torch.dtype):
        s, c = flat(inv_sqrt, dtype), flat(l2, dtype)
        return lambda x: s * (op.matvec(s * x) + c * (s * x))

    twin = None if H.dtype == torch.float64 else product(H.float64(), torch.float64)
    return MatvecOperator(product(H, H.dtype), H.size, H.dtype, H.device, twin)


def preconditioned_sharpness(
    objective: Objective,
    preconditioner: Source,
    *,
    num_eigenpairs: int = 1,
    tol: float | None = None,
    max_hvps: int = 300,
    seed: int = 0,
    state: Mapping[str, torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
) -> PreconditionedSharpness:
    """``lambda_1(P^-1 H)`` (and the next ``num_eigenpairs - 1``) for an optimizer's ``P``.

    The Hessian is the objective's, over the weights the optimizer trains; a coupled weight
    decay ``c`` (Adam's, SGD's) adds ``c I`` to it, as the optimizer's gradient includes
    ``c w``; AdamW's decoupled decay does not. Compare the result's ``value``
    with its ``threshold`` (38/lr for Adam with ``beta1 = 0.9``).

    Args:
        objective: the loss and data (the full batch, or the batch the user measures on).
        preconditioner: an optimizer (read by :func:`~landscape.optim.preconditioner`: the
            ``P`` of its last step), a :class:`Preconditioner` (``preconditioner(opt,
            model, next_step=True)`` for the coming step's), or a positive diagonal
            (``{name: tensor}`` or a flat tensor).
        num_eigenpairs: how many eigenvalues, largest first.
        tol, max_hvps, seed, state, dtype: as in :func:`~landscape.hessian.hessian_eigenpairs`.
        progress: a tqdm bar of the HVPs.

    Example:
        >>> from torch import nn
        >>> x = torch.randn(20, 3, dtype=torch.float64)
        >>> model = nn.Linear(3, 1).double()
        >>> diagonal = {"weight": torch.full((1, 3), 2.0), "bias": torch.full((1,), 2.0)}
        >>> result = preconditioned_sharpness(Objective(model, (x, x.sum(1)), loss="mse"), diagonal)
        >>> result.converged
        True
    """
    num_eigenpairs = check_count(num_eigenpairs, "num_eigenpairs")
    seed = check_seed(seed)
    P = resolve_preconditioner(preconditioner, objective.model)
    H = HessianOperator(objective, state=state, params=list(P.diagonal), dtype=dtype)
    if num_eigenpairs > H.size:
        raise ValueError(f"expected num_eigenpairs <= {H.size} weights, got {num_eigenpairs}")
    A = _operator(H, P)
    with progress_bar(progress, desc="preconditioned", unit="HVP", total=max_hvps) as bar:
        pairs = lanczos_eigenpairs(
            A, num_eigenpairs, which="LA", tol=tol, max_matvecs=max_hvps, seed=seed,
            callback=bar.update,
        )  # fmt: skip
    settings: dict[str, Any] = {
        **H.settings,
        **{f"optimizer_{k}": v for k, v in P.settings.items()},
        "num_eigenpairs": num_eigenpairs,
        "tol": pairs.settings["tol"],
        "max_hvps": max_hvps,
        "seed": seed,
        "when": P.when,
        "num_hvps_float64": pairs.num_matvecs64,
    }
    return PreconditionedSharpness(
        eigenvalues=pairs.values,
        residuals=pairs.residuals,
        converged=pairs.converged,
        num_hvps=pairs.num_matvecs,
        threshold=P.threshold,
        lr=P.lr,
        optimizer=P.optimizer,
        step=P.step,
        names=tuple(H.names),
        settings=settings,
    )
