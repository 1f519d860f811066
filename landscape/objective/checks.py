"""First-batch checks of an :class:`~landscape.objective.Objective`, made once: no NaN or
inf in the model or the first batch and whether a loss of the user's returns the batch sum
or mean (at construction), class labels a built-in loss can read (on the first outputs).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from .. import distributed
from .._finite import nonfinite_problem
from ..data import split_batch
from ..losses import LossReduction, MetricFn, declared_reduction, detect_reduction
from ..shards import local
from .calling import prediction, upcast
from .vmap_errors import vmap_unsupported


class Checks:
    """The Objective's construction checks (a mixin of :class:`Objective`)."""

    def _check_finite(self) -> None:
        """Refuse NaN or inf in the base state or this rank's first batch (all ranks)."""
        batch = next(iter(self.data), None)
        state = {n: local(t) for n, t in self.base_state.items()}  # a sharded model's pieces
        problem = nonfinite_problem(state, buffers=self._buffer_names, batch=batch)
        if self.shard_data or self.sharded:
            problem = next((p for p in distributed.all_gather_objects(problem) if p), None)
        if problem:
            raise ValueError(problem)

    def _check_targets(self) -> None:
        """Refuse integer targets a built-in loss would misread, on the first batch at
        construction (a forward pass): used under ``shard_data``, where every rank checks
        its own first batch and all raise together. Otherwise the first outputs of the
        first evaluation are checked (:meth:`_check_outputs`), at no extra pass."""
        problem = None
        batch = next(iter(self.data), None)
        if batch is not None:
            with torch.no_grad():
                outputs = prediction(self._call(self.full_state(None), batch))
            problem = self._target_problem(outputs, split_batch(batch, self.label_keys)[1])
        if self.shard_data:
            problem = next((p for p in distributed.all_gather_objects(problem) if p), None)
        if problem:
            raise ValueError(problem)
        self._work.check_targets = False

    def _check_outputs(self, outputs: Any, targets: Any) -> None:
        """Refuse the first batch's targets if a built-in loss would misread them (see
        :meth:`_target_problem`), from the outputs of the first evaluation (one read of
        the labels' range, once per model and data; only their shape is read from the
        outputs, so it works inside the ``vmap`` over points). Targets that a caller's
        ``vmap`` maps (per-example losses) cannot be read: the check waits for the next
        evaluation."""
        try:
            problem = self._target_problem(outputs, targets)
        except RuntimeError as err:
            if not vmap_unsupported(err):
                raise
            return  # targets mapped by a caller's vmap (per-example losses): checked later
        if problem:
            raise ValueError(problem)
        self._work.check_targets = False

    def _target_problem(self, outputs: Any, targets: Any) -> str | None:
        """Class labels out of the outputs' range for ``cross_entropy``, class labels for
        ``mse``, or None."""
        if not isinstance(targets, torch.Tensor) or targets.is_floating_point():
            return None
        if targets.dtype == torch.bool or not isinstance(outputs, torch.Tensor):
            return None
        if self.loss_name == "mse":
            if targets.numel() == outputs.numel():
                return None
            return (
                f"loss 'mse' needs targets shaped like the outputs {tuple(outputs.shape)}, "
                f"got integer targets of shape {tuple(targets.shape)} (class labels?); use "
                "loss 'cross_entropy' (CLI: --loss cross_entropy) for class labels"
            )
        if outputs.dim() < 2 or targets.is_complex():
            return None
        labels = targets[targets != -100]  # F.cross_entropy's ignore_index
        if labels.numel() == 0:
            return None
        num_classes = outputs.shape[1]
        low, high = (int(v) for v in labels.aminmax())
        if 0 <= low and high < num_classes:
            return None
        return (
            f"class labels must lie in 0 .. {num_classes - 1} for a model with {num_classes} "
            f"outputs; the first batch has labels {low} .. {high} (max label {high}). Check "
            "the model's number of classes and the labels (or -100 to ignore an example)"
        )

    def _resolve_reduction(self, loss: str | MetricFn, reduction: LossReduction) -> str:
        """``"sum"`` or ``"mean"``: as declared, known, or detected on the first batch
        (on every rank sharing the data, which must agree)."""
        if self.batch_loss is not None:
            if reduction != "auto":
                raise ValueError(
                    "loss_reduction applies to loss; a batch_loss closure returns (loss_sum, count)"
                )
            return "sum"
        known = declared_reduction(loss, reduction)
        if known is not None:
            return known
        outcome = self._detect_reduction()
        if self.shard_data:
            found = {str(o): o for o in distributed.all_gather_objects(outcome) if o is not None}
            outcome = next(iter(found.values()), None)
            if len(found) > 1:
                outcome = ValueError(
                    f"the ranks disagree on whether loss {self.loss_name!r} returns the batch "
                    f"sum or mean ({sorted(found)}); declare it with loss_reduction"
                )
        if outcome is None:
            raise ValueError("data is empty: expected at least one batch")
        if isinstance(outcome, ValueError):
            raise outcome
        if outcome == "mean":
            warnings.warn(
                f"loss {self.loss_name!r} returns the batch mean (found on the first batch); "
                "it is multiplied by each batch's example count. Declare loss_reduction='mean' "
                "(CLI: --loss-reduction mean) to skip this check",
                UserWarning,
                stacklevel=3,
            )
        return outcome

    def _detect_reduction(self) -> str | ValueError | None:
        """:func:`~landscape.losses.detect_reduction` on this rank's first batch, at the
        base state (its error, to be raised on every rank; None without a batch)."""
        batch = next(iter(self.data), None)
        if batch is None:
            return None
        with torch.no_grad():
            outputs = upcast(prediction(self._call(self.full_state(None), batch)), self.dtype)
        targets = split_batch(batch, self.label_keys)[1]
        try:
            return detect_reduction(self._loss_fn, outputs, targets, name=self.loss_name)
        except ValueError as err:
            return err
