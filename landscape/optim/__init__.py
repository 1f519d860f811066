"""Curvature as an optimizer sees it: the diagonal preconditioners of SGD, Adam, AdamW,
RMSprop and Adagrad with their stability thresholds, the preconditioned sharpness
``lambda_1(P^-1 H)``, batch sharpness and the gradient's share in the top eigenspace.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    >>> round(preconditioner(opt, model).threshold)  # (2 + 2 momentum) / lr
    380
"""

from __future__ import annotations

from ..results.optim import BatchSharpness, GradientAlignment, PreconditionedSharpness
from .batch import batch_sharpness, gradient_alignment, loss_gradient
from .guard import StabilityGuard, StabilityWarning
from .preconditioners import (
    SUPPORTED,
    Preconditioner,
    optimizer_threshold,
    preconditioner,
    stability_threshold,
)
from .sharpness import preconditioned_sharpness, resolve_preconditioner

__all__ = [
    "SUPPORTED",
    "BatchSharpness",
    "GradientAlignment",
    "Preconditioner",
    "PreconditionedSharpness",
    "StabilityGuard",
    "StabilityWarning",
    "batch_sharpness",
    "gradient_alignment",
    "loss_gradient",
    "optimizer_threshold",
    "preconditioned_sharpness",
    "preconditioner",
    "resolve_preconditioner",
    "stability_threshold",
]
