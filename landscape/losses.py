"""Built-in losses and metrics, each the *sum* over a batch (means come from sums and counts).

A loss or metric is ``fn(outputs, targets) -> 0-dim tensor``, the sum over the batch's
examples, so that the mean over a whole data set is exact whatever the batch sizes.

- ``cross_entropy``: logits ``(N, C)`` (or ``(N, C, ...)``) against class indices or class
  probabilities, as ``F.cross_entropy(reduction="sum")``;
- ``mse``: the sum over the batch of each example's mean squared error, so the mean over a
  data set is ``F.mse_loss`` on the whole set;
- ``bce``: binary cross-entropy of logits, as ``F.binary_cross_entropy_with_logits``;
- :func:`accuracy_sum`: the number of correct predictions (argmax of several logits, the
  sign of one).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

LossName = Literal["cross_entropy", "mse", "bce"]
MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "LOSSES",
    "LossName",
    "MetricFn",
    "accuracy_sum",
    "bce_sum",
    "cross_entropy_sum",
    "is_classification",
    "mse_sum",
    "resolve_loss",
]


def cross_entropy_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of logits against class indices (or probabilities).

    Example:
        >>> logits, labels = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])
        >>> round(float(cross_entropy_sum(logits, labels)), 4)
        2.2539
    """
    return F.cross_entropy(outputs, targets, reduction="sum")


def mse_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of each example's mean squared error (so the mean over a data
    set equals ``F.mse_loss`` on the whole set).

    Example:
        >>> float(mse_sum(torch.tensor([[1.0, 3.0], [0.0, 0.0]]), torch.zeros(2, 2)))
        5.0
    """
    targets = targets.reshape(outputs.shape).to(outputs.dtype)
    per_example = outputs[0].numel() if outputs.dim() > 1 else 1
    return (outputs - targets).pow(2).sum() / per_example


def bce_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed binary cross-entropy of logits against 0/1 (or probability) targets.

    Example:
        >>> round(float(bce_sum(torch.zeros(2), torch.tensor([0.0, 1.0]))), 4)
        1.3863
    """
    targets = targets.reshape(outputs.shape).to(outputs.dtype)
    return F.binary_cross_entropy_with_logits(outputs, targets, reduction="sum")


def accuracy_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Number of correct predictions in a batch: argmax for several logits, sign for one.

    Example:
        >>> int(accuracy_sum(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])))
        1
    """
    if outputs.dim() > 1 and outputs.shape[-1] > 1:
        predicted = outputs.argmax(dim=-1)
    else:
        predicted = (outputs.reshape(targets.shape) > 0).to(targets.dtype)
    return (predicted == targets).sum()


LOSSES: dict[str, MetricFn] = {
    "cross_entropy": cross_entropy_sum,
    "mse": mse_sum,
    "bce": bce_sum,
}


def resolve_loss(loss: str | MetricFn) -> tuple[str, MetricFn]:
    """``(name, fn)`` of a loss given by name, as an ``nn.Module`` loss (switched to
    ``reduction="sum"`` on a copy) or as a callable returning a batch sum.

    Raises:
        ValueError: an unknown name.
        TypeError: neither a name nor a callable.

    Example:
        >>> resolve_loss("mse")[0], resolve_loss(nn.CrossEntropyLoss())[1].reduction
        ('mse', 'sum')
    """
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
        return loss, LOSSES[loss]
    if isinstance(loss, nn.Module) and hasattr(loss, "reduction"):
        summing = copy.copy(loss)
        summing.reduction = "sum"
        return type(loss).__name__, summing
    if callable(loss):
        return getattr(loss, "__name__", type(loss).__name__), loss
    raise TypeError(f"loss must be a name or a callable, got {type(loss).__name__}")


def is_classification(loss: str | MetricFn) -> bool:
    """Whether a loss is a classification loss, for which accuracy is reported by default.

    Example:
        >>> is_classification("bce"), is_classification("mse")
        (True, False)
    """
    if isinstance(loss, str):
        return loss in ("cross_entropy", "bce")
    return isinstance(loss, (nn.CrossEntropyLoss, nn.BCEWithLogitsLoss))
