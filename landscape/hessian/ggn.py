"""Generalized Gauss-Newton products ``G v = J^T H_out J v`` (``J`` the Jacobian of the
model's outputs with respect to the weights, ``H_out`` the Hessian of the loss with respect
to the outputs), for the cross-entropy losses and MSE.

``J v`` comes from forward-mode AD (one forward pass with dual weights), ``H_out`` is
applied in closed form (:func:`output_hessian_product`; for cross-entropy
``p * u - p (p^T u)`` with ``p`` the softmax over the classes), and ``J^T u`` from one
backward pass: no double backward, and no logits-sized graph of a second derivative kept.
``G`` is positive semi-definite, and equals the Hessian where the residuals vanish (least
squares fitted exactly).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.autograd.forward_ad as fwAD

from ..losses.tokens import IGNORE_INDEX, token_labels
from .products import _add

if TYPE_CHECKING:
    from .operator import HessianOperator

__all__ = ["GGN_LOSSES", "GaussNewtonProducts", "output_hessian_product"]

#: The losses whose output Hessian :func:`output_hessian_product` applies.
GGN_LOSSES = ("cross_entropy", "mse", "causal_lm", "token_ce")


def _softmax_product(
    logits: torch.Tensor, u: torch.Tensor, weight: torch.Tensor, dim: int
) -> torch.Tensor:
    """``weight * (p * u - p (p^T u))``, ``p = softmax(logits, dim)``, in at least float32."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    p = torch.softmax(logits.to(dtype), dim=dim)
    pu = p * u.to(dtype)
    out = pu - p * pu.sum(dim=dim, keepdim=True)
    return (out * weight.unsqueeze(dim).to(dtype)).to(logits.dtype)


def output_hessian_product(
    loss: str, outputs: torch.Tensor, targets: Any, u: torch.Tensor
) -> torch.Tensor:
    """``H_out u``: the Hessian of a batch's loss *sum* with respect to the model's
    ``outputs``, applied to ``u`` (shaped like ``outputs``).

    - ``mse`` (:func:`~landscape.losses.mse_sum`): ``2 u / m``, ``m`` the outputs per
      example.
    - ``cross_entropy``: logits ``(N, C, ...)``, per example ``s (p * u - p (p^T u))`` with
      ``p`` the softmax over dim 1, ``s`` 0 for a label of -100, 1 for another label, and
      the sum of the target probabilities for soft targets.
    - ``causal_lm``, ``token_ce``: logits ``(N, T, V)``, the same over the vocabulary for
      every counted token (labels shifted for ``causal_lm``; -100 and padding ignored).

    Raises:
        ValueError: another loss.

    Example:
        >>> u = torch.tensor([[1.0, 0.0]])
        >>> output_hessian_product("cross_entropy", torch.zeros(1, 2), torch.tensor([0]), u)
        tensor([[ 0.2500, -0.2500]])
    """
    if loss == "mse":
        per_example = outputs[0].numel() if outputs.dim() > 1 else 1
        return 2 * u / per_example
    if loss == "cross_entropy":
        if outputs.dim() < 2:  # one example without a batch dimension
            return output_hessian_product(loss, outputs[None], targets[None], u[None])[0]
        if targets.is_floating_point():
            weight = targets.sum(dim=1)
        else:
            weight = (targets != IGNORE_INDEX).to(outputs.dtype)
        return _softmax_product(outputs, u, weight, 1)
    if loss in ("causal_lm", "token_ce"):
        labels = token_labels(targets)
        if loss == "causal_lm":  # position t predicts token t + 1; the last predicts none
            ignored = labels.new_full((*labels.shape[:-1], 1), IGNORE_INDEX)
            labels = torch.cat([labels[..., 1:], ignored], dim=-1)
        return _softmax_product(outputs, u, (labels != IGNORE_INDEX).to(outputs.dtype), -1)
    raise ValueError(f"expected a loss among {list(GGN_LOSSES)} for operator='ggn', got {loss!r}")


class GaussNewtonProducts:
    """``J^T H_out J v`` per batch, over the number of examples (see the module's text)."""

    name = "ggn"

    def __init__(self, op: HessianOperator):
        objective = op.objective
        if objective.batch_loss is not None or objective.loss_name not in GGN_LOSSES:
            raise ValueError(
                f"expected an objective with a loss among {list(GGN_LOSSES)} for "
                f"operator='ggn', got {objective.loss_name!r}"
            )
        self.op = op
        self.graph_bytes = 0

    def begin(self, vector: torch.Tensor) -> None:
        """Nothing to prepare for a product with ``vector``."""

    def add(self, index: int, batch: Any, parts: Sequence[torch.Tensor], total: torch.Tensor):
        """Adds one batch's product with ``parts`` to ``total``."""
        op = self.op
        with fwAD.dual_level():  # gradients on: the attention's math kernel, which has forward AD
            duals = [fwAD.make_dual(w.detach(), p) for w, p in zip(op._leaves, parts, strict=True)]
            outputs, targets = op.objective.batch_outputs(op._state(duals), batch)
            primal, tangent = fwAD.unpack_dual(outputs)
            primal = primal.detach()
        if tangent is None:  # the outputs do not depend on these weights
            return
        u = output_hessian_product(op.objective.loss_name, primal, targets, tangent)
        with torch.enable_grad():
            outputs, _ = op.objective.batch_outputs(op._state(), batch)
            if not outputs.requires_grad:
                return
            pieces = torch.autograd.grad(
                outputs,
                op._leaves,
                grad_outputs=u / op.num_examples,
                allow_unused=True,
                materialize_grads=True,
            )
        _add(total, pieces)
