"""The objective of the sharpness examples: a bias-free ``nn.Linear(2, 1)`` in float64 at
two points with zero targets, under the mean squared error (loss ``(w1**2 + w2**2) / 2``,
Hessian the identity).

Example:
    >>> example_objective().num_examples
    2
"""

from __future__ import annotations

import torch
from torch import nn

from ..objective import Objective

__all__ = ["example_objective"]


def example_objective(seed: int = 0) -> Objective:
    """A two-parameter quadratic objective (see the module docstring), its weights drawn
    with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 2, generator=generator, dtype=torch.float64))
    data = (torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    return Objective(model, data, loss="mse")
