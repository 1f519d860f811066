"""Small problems with exact answers for the sharpness tests (float64 throughout).

- :func:`closure_quadratic`: a bare weight vector whose loss is ``1/2 (w - c)^T H (w - c)``
  (a ``batch_loss`` closure), at its minimum ``w = c``;
- :func:`linear_quadratic`: a bias-free ``nn.Linear(dim, 1)`` with MSE on data ``y = X c``,
  so the loss is exactly ``1/2 (w - c)^T H (w - c)`` with ``H = 2 X^T X / n``, at weights
  ``w`` that need not be the minimum; its Objective can evaluate many points per pass;
- :func:`box_maximum` (all ``2^d`` vertices: a convex function's maximum over a box is at
  a vertex) and :func:`ball_maximum` (the trust-region problem, by its secular equation).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch
from torch import nn

from landscape.evaluate import Objective

DTYPE = torch.float64


class Point(nn.Module):
    """A bare weight vector; the loss lives in the objective's closure."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())


def closure_quadratic(h: torch.Tensor, c: torch.Tensor) -> Objective:
    """``L(w) = 1/2 (w - c)^T H (w - c)`` at ``w = c``."""

    def batch_loss(model: nn.Module, batch: object) -> tuple[torch.Tensor, int]:
        d = model.w - c
        return 0.5 * d @ h @ d, 1

    return Objective(Point(c), [torch.zeros(1)], batch_loss=batch_loss)


def spd(eigenvalues: list[float], seed: int = 0) -> torch.Tensor:
    """A symmetric matrix with these eigenvalues and seeded random eigenvectors."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(
        torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=DTYPE)
    )
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=DTYPE)) @ q.T


@dataclass
class LinearQuadratic:
    """A linear least-squares problem: loss ``1/2 (a + delta)^T H (a + delta)`` at
    ``weights + delta``, ``a`` the offset of the weights from the minimum."""

    objective: Objective
    hessian: np.ndarray
    offset: np.ndarray
    weights: np.ndarray

    @property
    def loss(self) -> float:
        return float(0.5 * self.offset @ self.hessian @ self.offset)

    def rises(self, deltas: np.ndarray) -> np.ndarray:
        """Exact rises of the loss at ``weights + delta`` for each row of ``deltas``."""
        x = deltas + self.offset
        return 0.5 * np.einsum("ki,ij,kj->k", x, self.hessian, x) - self.loss


def linear_quadratic(
    dim: int, seed: int, away: float, *, points_per_pass: int | None = None
) -> LinearQuadratic:
    """Weights ``w ~ N(0, I)``, minimum ``c = w + away * N(0, I)``, ``2 dim`` examples."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * dim, dim, generator=g, dtype=DTYPE)
    w = torch.randn(1, dim, generator=g, dtype=DTYPE)
    c = w + away * torch.randn(1, dim, generator=g, dtype=DTYPE)
    model = nn.Linear(dim, 1, bias=False).to(DTYPE)
    with torch.no_grad():
        model.weight.copy_(w)
    objective = Objective(model, (x, x @ c.T), loss="mse", points_per_pass=points_per_pass)
    hessian = (2 * x.T @ x / len(x)).numpy()
    return LinearQuadratic(objective, hessian, (w - c).reshape(-1).numpy(), w.reshape(-1).numpy())


def box_maximum(problem: LinearQuadratic, bounds: np.ndarray) -> float:
    """``max_{|delta_i| <= bounds_i}`` of the rise, over all vertices of the box."""
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=len(bounds))))
    return float(problem.rises(signs * bounds).max())


def ball_maximum(problem: LinearQuadratic, rho: float) -> float:
    """``max_{||delta||_2 <= rho}`` of the rise: on the sphere, ``delta = (mu I - H)^-1 H a``
    with ``mu > lambda_max`` such that ``||delta|| = rho`` (or along the top eigenvector
    when ``a = 0``)."""
    eigenvalues, vectors = np.linalg.eigh(problem.hessian)
    alpha = vectors.T @ problem.offset
    top = eigenvalues[-1]
    if not np.any(alpha):
        return float(0.5 * top * rho**2)

    def excess(mu: float) -> float:
        return float(np.sum((eigenvalues * alpha / (mu - eigenvalues)) ** 2) - rho**2)

    upper = top + 1.0
    while excess(upper) > 0:
        upper = top + 2 * (upper - top)
    mu = scipy.optimize.brentq(excess, top + 1e-14 * max(top, 1.0), upper, xtol=1e-15, rtol=1e-15)
    delta = vectors @ (eigenvalues * alpha / (mu - eigenvalues))
    return float(problem.rises(delta[None])[0])
