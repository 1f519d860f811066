"""Results of curvature as an optimizer sees it: preconditioned and batch sharpness."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import Result

__all__ = ["BatchSharpness", "GradientAlignment", "PreconditionedSharpness"]


@dataclass(frozen=True, eq=False)
class PreconditionedSharpness(Result):
    """Top eigenvalues of ``P^-1 H``, computed on the symmetric ``P^-1/2 H P^-1/2``.

    Attributes:
        eigenvalues: shape ``(k,)``, descending, float64 Rayleigh quotients from float64
            products (the eigenvalues of ``P^-1 H``: the two matrices are similar).
        residuals: ``||A u - lambda u||`` of the symmetric operator ``A``, float64.
        converged: every residual is at most ``tol * ||A||`` (verified, as in
            :func:`~landscape.hessian.hessian_eigenpairs`).
        num_hvps: Hessian-vector products spent.
        threshold: the optimizer's stability threshold (``nan`` for a diagonal given by hand).
        lr: its reference learning rate; optimizer: its class name; step: its step count.
        names: the weights the optimizer trains (the operator's order).
        settings: every option, the optimizer's hyper-parameters and the operator's settings.
    """

    eigenvalues: np.ndarray
    residuals: np.ndarray
    converged: bool
    num_hvps: int
    threshold: float
    lr: float
    optimizer: str
    step: int
    names: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float:
        """``lambda_1(P^-1 H)``."""
        return float(self.eigenvalues[0])

    @property
    def ratio(self) -> float:
        """``lambda_1 / threshold``: 1 at the edge of stability."""
        return self.value / self.threshold if math.isfinite(self.threshold) else math.nan


@dataclass(frozen=True, eq=False)
class BatchSharpness(Result):
    """The mean over minibatches of ``g_B^T H_B g_B / ||g_B||^2`` (Andreyev & Beneventano
    2024), each minibatch's gradient and Hessian taken on that minibatch alone.

    Attributes:
        value: the mean over :attr:`samples`; stderr: their standard deviation over
            ``sqrt(num_batches)`` (minibatches as draws of the training sampler).
        samples: one Rayleigh quotient per minibatch, float64.
        ratio_of_expectations: ``sum_B g_B^T H_B g_B / sum_B ||g_B||^2``.
        num_batches: how many minibatches; batch_size: the examples of the first one.
        threshold: ``2 / lr`` when a learning rate was given, else ``nan``.
        settings: the options and the objective's provenance.
    """

    value: float
    stderr: float
    samples: np.ndarray
    ratio_of_expectations: float
    num_batches: int
    batch_size: int
    threshold: float = math.nan
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """``value / threshold``: 1 at the edge of stochastic stability."""
        return self.value / self.threshold if math.isfinite(self.threshold) else math.nan


@dataclass(frozen=True, eq=False)
class GradientAlignment(Result):
    """How much of the full-batch gradient lies in the Hessian's top eigenspace (Gur-Ari et
    al. 2018, "Gradient Descent Happens in a Tiny Subspace").

    Attributes:
        share: ``||V_k^T g||^2 / ||g||^2`` for the top-``k`` eigenvectors ``V_k``.
        gradient_norm: ``||g||``.
        eigenvalues: the top ``k`` eigenvalues; converged: they are verified.
        num_hvps: Hessian-vector products spent.
        settings: the options and the operator's settings.
    """

    share: float
    gradient_norm: float
    eigenvalues: np.ndarray
    converged: bool
    num_hvps: int
    settings: dict[str, Any] = field(default_factory=dict)
