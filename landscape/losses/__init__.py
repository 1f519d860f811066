"""Built-in losses and metrics, each the *sum* over a batch (means come from sums and counts).

A loss or metric is ``fn(outputs, targets) -> 0-dim tensor``, the sum over the batch's
examples, so that the mean over a whole data set is exact whatever the batch sizes.

- ``cross_entropy``: logits ``(N, C)`` (or ``(N, C, ...)``) against class indices or class
  probabilities, as ``F.cross_entropy(reduction="sum")``, in float64;
- ``mse``: the sum over the batch of each example's mean squared error, so the mean over a
  data set is ``F.mse_loss`` on the whole set;
- ``bce``: binary cross-entropy of logits, as ``F.binary_cross_entropy_with_logits``, in
  float64;
- ``causal_lm``: next-token cross-entropy of language-model logits ``(N, T, V)``, the
  labels shifted by one inside (``logits[:, :-1]`` against ``labels[:, 1:]``, as Hugging
  Face models shift them); ``token_ce``: the same with labels already aligned. Labels of
  -100 are ignored; a batch without labels takes them from ``input_ids``, with padding
  (``attention_mask == 0``) ignored. These sum over tokens, in float64, and count the
  non-ignored tokens (:func:`resolve_count`), so the mean is over every token of the data
  set: a batch with more tokens weighs more. Averaging each batch's mean, which is what
  ``model(**batch).loss`` gives, is wrong when batches hold different numbers of tokens;
- :func:`accuracy_sum`: the number of correct predictions (argmax of several logits, the
  sign of one); for the token losses, of correct next tokens over the same tokens.

A user's loss that returns the batch *mean* is turned into a sum by :func:`as_batch_sum`;
:func:`detect_reduction` tells the two conventions apart on a batch.

One job per module: :mod:`~landscape.losses.per_example` (losses over examples, and the
chunked cross-entropy), :mod:`~landscape.losses.tokens` (token losses and counts),
:mod:`~landscape.losses.registry` (the losses by name, and what goes with each),
:mod:`~landscape.losses.reduction` (a user's sum or mean).
"""

from __future__ import annotations

from .per_example import accuracy_sum, bce_sum, cross_entropy_sum, mse_sum, num_examples
from .reduction import (
    LOSS_REDUCTIONS,
    LossReduction,
    as_batch_sum,
    declared_reduction,
    detect_reduction,
)
from .registry import (
    LOSSES,
    CountFn,
    LossName,
    MetricFn,
    is_classification,
    resolve_accuracy,
    resolve_count,
    resolve_loss,
)
from .tokens import (
    IGNORE_INDEX,
    causal_lm_accuracy_sum,
    causal_lm_sum,
    token_accuracy_sum,
    token_ce_sum,
    token_labels,
)

__all__ = [
    "IGNORE_INDEX",
    "LOSSES",
    "LOSS_REDUCTIONS",
    "LossName",
    "CountFn",
    "LossReduction",
    "MetricFn",
    "accuracy_sum",
    "as_batch_sum",
    "bce_sum",
    "causal_lm_accuracy_sum",
    "causal_lm_sum",
    "cross_entropy_sum",
    "declared_reduction",
    "detect_reduction",
    "is_classification",
    "mse_sum",
    "num_examples",
    "resolve_accuracy",
    "resolve_count",
    "resolve_loss",
    "token_accuracy_sum",
    "token_ce_sum",
    "token_labels",
]
