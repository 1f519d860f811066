"""Token losses of language-model logits ``(N, T, V)``: sums over tokens, in float64, and the
number of tokens they count, so that a mean is over every token of a data set.

``causal_lm`` is next-token cross-entropy (``logits[:, :-1]`` against ``labels[:, 1:]``, as
Hugging Face models shift them), ``token_ce`` the same with labels already aligned. Labels of
-100 are ignored; a batch without labels takes them from ``input_ids``, with padding
(``attention_mask == 0``) ignored. Each token's loss comes from torch's fused
``F.cross_entropy`` in float32 (float64 for float64 logits), over pieces of the tokens (see
:func:`~landscape.losses.per_example.chunked_cross_entropy`), and the losses are summed in
float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .per_example import chunked_cross_entropy

__all__ = [
    "IGNORE_INDEX",
    "causal_lm_accuracy_sum",
    "causal_lm_count",
    "causal_lm_sum",
    "token_accuracy_sum",
    "token_ce_sum",
    "token_count",
    "token_labels",
]

IGNORE_INDEX = -100


def token_labels(targets: Any) -> torch.Tensor:
    """The token labels of a batch: ``targets`` itself when it is a tensor; for the inputs
    of a batch without labels (a mapping), its ``input_ids`` with padding
    (``attention_mask == 0``) set to -100.

    Raises:
        TypeError: a mapping without ``input_ids``.

    Example:
        >>> ids, mask = torch.tensor([[5, 6, 0]]), torch.tensor([[1, 1, 0]])
        >>> token_labels({"input_ids": ids, "attention_mask": mask}).tolist()
        [[5, 6, -100]]
    """
    if not isinstance(targets, Mapping):
        return targets
    if "input_ids" not in targets:
        raise TypeError(
            "a token loss needs labels: a batch with a 'labels' key, or 'input_ids' to take "
            f"them from; got keys {sorted(targets)}"
        )
    labels = targets["input_ids"]
    mask = targets.get("attention_mask")
    return labels if mask is None else labels.masked_fill(mask == 0, IGNORE_INDEX)


def _aligned(outputs: torch.Tensor, targets: Any, shift: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(M, V)`` and labels ``(M,)`` of every position (next tokens if ``shift``)."""
    labels = token_labels(targets)
    if shift:  # each position's label is the next token; the last position's is ignored
        # (shifting the labels, not slicing the logits, which would copy them)
        ignored = labels.new_full((*labels.shape[:-1], 1), IGNORE_INDEX)
        labels = torch.cat([labels[..., 1:], ignored], dim=-1)
    if tuple(outputs.shape[:-1]) != tuple(labels.shape):
        raise ValueError(
            f"token logits of shape {tuple(outputs.shape)} do not match labels of shape "
            f"{tuple(labels.shape)}: expected logits (batch, tokens, vocabulary) and labels "
            "(batch, tokens)"
        )
    return outputs.reshape(-1, outputs.shape[-1]), labels.reshape(-1)


def _token_sum(outputs: torch.Tensor, targets: Any, shift: bool) -> torch.Tensor:
    logits, labels = _aligned(outputs, targets, shift)
    return chunked_cross_entropy(logits, labels, torch.promote_types(logits.dtype, torch.float32))


def causal_lm_sum(outputs: torch.Tensor, targets: Any) -> torch.Tensor:
    """Summed next-token cross-entropy, in float64: ``logits[:, :-1]`` against
    ``labels[:, 1:]`` (labels from :func:`token_labels`), -100 ignored.

    Example:
        >>> logits, labels = torch.zeros(1, 3, 4), torch.tensor([[1, 2, -100]])
        >>> round(float(causal_lm_sum(logits, labels)), 4)  # one token counts: log 4
        1.3863
    """
    return _token_sum(outputs, targets, True)


def token_ce_sum(outputs: torch.Tensor, targets: Any) -> torch.Tensor:
    """Summed cross-entropy of every token against labels already aligned with the logits,
    in float64; -100 ignored.

    Example:
        >>> logits, labels = torch.zeros(1, 3, 4), torch.tensor([[1, 2, -100]])
        >>> round(float(token_ce_sum(logits, labels)), 4)
        2.7726
    """
    return _token_sum(outputs, targets, False)


def causal_lm_accuracy_sum(outputs: torch.Tensor, targets: Any) -> torch.Tensor:
    """Number of next tokens predicted right (argmax), over the tokens ``causal_lm`` counts.

    Example:
        >>> logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]])
        >>> int(causal_lm_accuracy_sum(logits, torch.tensor([[0, 0, 0]])))
        1
    """
    logits, labels = _aligned(outputs, targets, True)
    return (logits.argmax(dim=-1) == labels).sum()  # a label of -100 never matches


def token_accuracy_sum(outputs: torch.Tensor, targets: Any) -> torch.Tensor:
    """Number of tokens predicted right (argmax), over the tokens ``token_ce`` counts.

    Example:
        >>> logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]])
        >>> int(token_accuracy_sum(logits, torch.tensor([[1, 0, -100]])))
        2
    """
    logits, labels = _aligned(outputs, targets, False)
    return (logits.argmax(dim=-1) == labels).sum()


def causal_lm_count(targets: Any) -> torch.Tensor:
    """The tokens ``causal_lm`` counts (a 0-dim tensor: counting needs no sync).

    Example:
        >>> int(causal_lm_count(torch.tensor([[1, 2, -100]])))
        1
    """
    return (token_labels(targets)[..., 1:] != IGNORE_INDEX).sum()


def token_count(targets: Any) -> torch.Tensor:
    """The tokens ``token_ce`` counts (a 0-dim tensor).

    Example:
        >>> int(token_count(torch.tensor([[1, 2, -100]])))
        2
    """
    return (token_labels(targets) != IGNORE_INDEX).sum()
