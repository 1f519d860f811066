"""Losses and metrics summed over a batch's examples, and the cross-entropy they share with
the token losses (:func:`chunked_cross_entropy`).

Classification losses are computed from the logits in float64: they are examples x classes,
cheap, and a low loss is a small number that float32 loses. Version 0.2's float32
``logsumexp(z) - z[y]`` cancels two numbers near ``z[y]``: on an MLP at a mean loss of 2e-4
its relative error was 4.5e-4 and the change of the loss at 1e-3 along a direction was 2.4%
off; at 8e-8 that change came out 0 (``F.cross_entropy`` in float32: 1.1% off). Float64
cross-entropy of the same float32 logits is right to 3e-9 there (tests/losses/test_losses.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "CHUNK_BYTES",
    "accuracy_sum",
    "bce_sum",
    "chunked_cross_entropy",
    "cross_entropy_sum",
    "mse_sum",
    "num_examples",
]

CHUNK_BYTES = 2**26
"""The most bytes of logits :func:`chunked_cross_entropy` converts and normalizes at once
(64 MiB): a language model's logits are gigabytes, and ``F.cross_entropy`` makes a
normalized copy of what it is given."""


def chunked_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Summed ``F.cross_entropy`` of logits ``(N, C, ...)`` (or ``(C,)``) against class
    indices (-100 ignored) or probabilities, computed in ``dtype``, over pieces of
    ``logits`` along dim 0 of at most :data:`CHUNK_BYTES` in ``dtype``; each piece's
    per-example losses are summed in float64, and so are the pieces.

    Only shapes decide the pieces: nothing is read from the device.

    Example:
        >>> logits, labels = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, -100])
        >>> chunked_cross_entropy(logits, labels, torch.float64)
        tensor(0.1269, dtype=torch.float64)
    """
    if logits.dim() < 2:  # one example without a batch dimension
        logits, targets = logits.unsqueeze(0), targets.unsqueeze(0)
    if targets.is_floating_point():
        targets = targets.to(dtype)
    shape = logits.shape
    if shape.numel() * dtype.itemsize <= CHUNK_BYTES or shape[0] <= 1:
        return _piece_sum(logits, targets, dtype)  # one piece, not split (the split's
        # backward copies gradients)
    rows = max(1, CHUNK_BYTES // max(1, shape[1:].numel() * dtype.itemsize))
    sums = [
        _piece_sum(z, t, dtype)
        for z, t in zip(logits.split(rows), targets.split(rows), strict=True)
    ]
    total = sums[0]
    for piece in sums[1:]:
        total = total + piece
    return total


def _piece_sum(logits: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype != torch.float64:
        losses = F.cross_entropy(logits.to(dtype), targets, reduction="none")
        return losses.sum(dtype=torch.float64)
    if _few_classes_on_cpu(logits, targets):
        # the classes as a spatial dimension, (1, C, N): the log-softmax is vectorized over
        # the examples (1.4-1.7x faster than over rows of 10 classes)
        columns = logits.t().to(dtype, memory_format=torch.contiguous_format)
        return F.cross_entropy(columns.unsqueeze(0), targets.unsqueeze(0), reduction="sum")
    return F.cross_entropy(logits.to(dtype), targets, reduction="sum")  # summed in float64


def _few_classes_on_cpu(logits: torch.Tensor, targets: torch.Tensor) -> bool:
    """Logits ``(N, C)`` on a CPU with at most 16 classes and at least 512 examples,
    against class indices: where the columns were faster on one CPU thread (10 classes:
    1.2x for 512 examples, 1.4x for 773, 1.7x for 4096; slower for 32 classes or 256
    examples)."""
    shape = logits.shape  # the cheapest tests first: this runs for every batch
    return (
        len(shape) == 2
        and shape[1] <= 16
        and shape[0] >= 512
        and not targets.is_floating_point()
        and logits.device.type == "cpu"
    )


def cross_entropy_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of logits ``(N, C)`` (or ``(N, C, ...)``) against class indices
    (-100 ignored) or class probabilities, as ``F.cross_entropy(reduction="sum")``, in
    float64 whatever the logits' dtype (float32 logits are converted exactly).

    Example:
        >>> logits, labels = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])
        >>> cross_entropy_sum(logits, labels)
        tensor(2.2539, dtype=torch.float64)
    """
    return chunked_cross_entropy(outputs, targets, torch.float64)


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
    """Summed binary cross-entropy of logits against 0/1 (or probability) targets, as
    ``F.binary_cross_entropy_with_logits``, in float64 (see :func:`cross_entropy_sum`).

    Example:
        >>> bce_sum(torch.zeros(2), torch.tensor([0.0, 1.0]))
        tensor(1.3863, dtype=torch.float64)
    """
    outputs = outputs.to(torch.float64)
    targets = targets.reshape(outputs.shape).to(torch.float64)
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


def num_examples(targets: Any) -> int:
    """A batch's example count: the length of its targets (of the first tensor in a
    mapping of targets).

    Example:
        >>> num_examples(torch.zeros(3, 2)), num_examples({"labels": torch.zeros(4)})
        (3, 4)
    """
    if isinstance(targets, Mapping):
        targets = next(iter(targets.values()))
    return len(targets)
