"""BatchNorm running statistics re-estimated from the data at a point of a path."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..checks import check_state
from ..data import call_model, split_batch
from ..params import expand_tied, tied_names

if TYPE_CHECKING:
    from ..objective import Objective

__all__ = ["reestimate_bn"]


def _norm_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    ]


class _BatchNormEstimator:
    """A private copy of the objective's model that recomputes running statistics."""

    def __init__(self, objective: Objective):
        self.objective = objective
        self.model = copy.deepcopy(objective.model).requires_grad_(False)
        self.tied = tied_names(self.model)
        self.layers = _norm_layers(self.model)
        if not self.layers:
            raise ValueError(
                "bn_reestimate=True needs BatchNorm layers that track running statistics; "
                "this model has none"
            )

    @torch.no_grad()
    def __call__(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        model, objective = self.model, self.objective
        full = objective.full_state(state)  # refuses names the model lacks
        check_state(full, objective.base_state, name="the state")  # shapes, before loading
        model.load_state_dict(expand_tied(full, self.tied))
        model.eval()
        stats: dict[str, list] = {}
        hooks = []
        for name, layer in self.layers:
            layer.train()  # batch statistics, as in training; nothing else in train mode
            stats[name] = [0, None, None]  # count, mean, M2 (Chan et al.), in float64
            hooks.append(layer.register_forward_pre_hook(self._hook(stats[name])))
        try:
            for batch in objective.batches():
                if objective.batch_loss is not None:
                    objective.batch_loss(model, batch)
                else:
                    call_model(model, split_batch(batch, objective.label_keys)[0])
        finally:
            for hook in hooks:
                hook.remove()
        out = dict(state)
        for name, layer in self.layers:
            count, mean, m2 = stats[name]
            if count < 2:
                raise ValueError(
                    f"re-estimating {name or 'the BatchNorm layer'} needs at least 2 values per "
                    f"channel over the data, got {count}"
                )
            prefix = f"{name}." if name else ""
            ref_mean, ref_var = layer.running_mean, layer.running_var
            out[prefix + "running_mean"] = mean.to(ref_mean)
            out[prefix + "running_var"] = (m2 / (count - 1)).to(ref_var)
        return out

    @staticmethod
    def _hook(acc: list):
        def hook(module: nn.Module, inputs: tuple) -> None:
            x = inputs[0].detach().double()
            dims = [d for d in range(x.dim()) if d != 1]
            n = x.numel() // x.shape[1]
            mean = x.mean(dim=dims)
            m2 = ((x - mean.view(1, -1, *([1] * (x.dim() - 2)))) ** 2).sum(dim=dims)
            count, old_mean, old_m2 = acc
            if count == 0:
                acc[:] = [n, mean, m2]
                return
            total = count + n
            delta = mean - old_mean
            acc[:] = [
                total,
                old_mean + delta * (n / total),
                old_m2 + m2 + delta**2 * (count * n / total),
            ]

        return hook


def reestimate_bn(
    objective: Objective, state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``state`` with every BatchNorm layer's running statistics recomputed on the data.

    The model (a private copy; the caller's is not touched) runs over the objective's data
    with the weights of ``state``, in eval mode except for the BatchNorm layers, which
    normalize with batch statistics as in training. Each layer's ``running_mean`` becomes
    the mean of its inputs over the whole data set and ``running_var`` their unbiased
    variance, per channel, accumulated in float64 with every example weighing the same
    whatever the batch sizes (``torch.optim.swa_utils.update_bn`` weighs batches equally).

    Args:
        objective: the model and data.
        state: the weights (a complete state or a part; missing names: the base state).

    Returns:
        A new state: ``state`` with the running statistics replaced.

    Raises:
        ValueError: the model has no BatchNorm layer with running statistics, or ``state``
            has names or shapes the model's state lacks.
    """
    return _BatchNormEstimator(objective)(state)
