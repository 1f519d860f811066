"""REPAIR (Jordan et al. 2023): the interpolated network's units rescaled to the
interpolated endpoints' statistics.

Averaging two aligned networks shrinks the variance of their hidden units (the
"variance collapse"), which is most of the barrier left after alignment. At a point
``t`` of a path from ``a`` to ``b``, each linear or conv layer whose outputs are
permutable units is corrected, layer after layer in graph order (each measured with the
layers before it already corrected): its output channel ``c`` has mean ``mu_t`` and
standard deviation ``sd_t`` over the data; the target is
``mu = (1 - t) mu_a + t mu_b`` and ``sd = (1 - t) sd_a + t sd_b`` (the endpoints' own
statistics, each measured once), and the layer's weight row becomes
``W_c * sd / sd_t`` and its bias ``(b_c - mu_t) * sd / sd_t + mu``. A layer without bias
is only rescaled; a unit that never varies is left as it is. Statistics are accumulated in
float64 over the whole data set, every position of a conv map (or token of a sequence)
counting as one sample. Hugging Face GPT-2 and Llama: the MLPs' input layers
(:func:`unit_layers`; attention heads and the residual stream are not rescaled).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..data import call_model, split_batch
from ..params import expand_tied, tied_names
from .residual import RESIDUAL
from .spec import PermutationSpec, permutation_spec

if TYPE_CHECKING:
    from ..objective import Objective

__all__ = ["Repairer", "unit_layers"]

Stats = dict[str, tuple[torch.Tensor, torch.Tensor]]


class _Stop(Exception):
    """Ends a forward pass once the layer measured has run."""


def _is_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2's linear layers): weight ``(in, out)``."""
    return type(module).__name__ == "Conv1D"


def unit_layers(model: nn.Module, spec: PermutationSpec) -> tuple[tuple[str, str, int], ...]:
    """For a hand-written spec (Hugging Face GPT-2 and Llama, whose specs list no layers):
    the linear layers whose outputs are the units of one group that is neither attention
    heads nor the residual stream, as ``(module, group, -1)``: the MLPs' ``c_fc``, and
    ``gate_proj`` and ``up_proj``.

    Example:
        >>> import transformers
        >>> net = transformers.GPT2Model(transformers.GPT2Config(n_layer=1, n_embd=8,
        ...                                                      n_head=2, vocab_size=10))
        >>> unit_layers(net, permutation_spec(net))
        (('h.0.mlp.c_fc', 'h.0.mlp.c_fc', -1),)
    """
    heads = {g for _, groups in spec.heads.values() for g in groups}
    found = []
    for name, module in model.named_modules():
        axes = spec.axes.get(f"{name}.weight")
        if axes is None or not (isinstance(module, nn.Linear) or _is_conv1d(module)):
            continue
        group = axes[1 if _is_conv1d(module) else 0]
        if isinstance(group, str) and group not in heads and group != RESIDUAL:
            found.append((name, group, -1))
    return tuple(found)


class Repairer:
    """REPAIR at the points of a path between ``start`` and ``end`` (a private copy of the
    objective's model does the passes; the caller's is not touched).

    Args:
        objective: the model and the data the statistics are measured on.
        start, end: the path's ends (states of the objective's model).
        spec: the permutation groups (default: derived from the model).

    Raises:
        ValueError: the model has no layer whose outputs are permutable units.

    Example:
        >>> from landscape import Objective
        >>> net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)).double()
        >>> objective = Objective(net, (torch.randn(16, 2).double(), torch.zeros(16, 1).double()),
        ...                       loss="mse")
        >>> repair = Repairer(objective, net.state_dict(), net.state_dict())
        >>> fixed = repair(net.state_dict(), 0.5)  # a point equal to both ends: unchanged
        >>> torch.allclose(fixed["0.weight"], net.state_dict()["0.weight"])
        True
    """

    def __init__(
        self,
        objective: Objective,
        start: Mapping[str, torch.Tensor],
        end: Mapping[str, torch.Tensor],
        spec: PermutationSpec | None = None,
    ):
        self.objective = objective
        self.model = copy.deepcopy(objective.model).requires_grad_(False)
        self.tied = tied_names(self.model)
        spec = spec if spec is not None else permutation_spec(self.model)
        modules = dict(self.model.named_modules())
        self.layers = [
            (name, dim)
            for name, _, dim in spec.layers or unit_layers(self.model, spec)
            if f"{name}.weight" not in self.tied and f"{name}.weight" not in self.tied.values()
            and (isinstance(modules[name], (nn.Linear, nn.modules.conv._ConvNd))
                 or _is_conv1d(modules[name]))
        ]  # fmt: skip
        if not self.layers:
            raise ValueError(
                "repair='repair' needs linear or conv layers whose outputs are permutable "
                "units; this model has none"
            )
        self.modules = modules
        self.ends = self._stats(start), self._stats(end)

    def _stats(self, state: Mapping[str, torch.Tensor], only: str | None = None) -> Stats:
        """Mean and standard deviation per output channel of every layer (or of ``only``,
        stopping each forward pass there)."""
        model, objective = self.model, self.objective
        model.load_state_dict(expand_tied(objective.full_state(state), self.tied))
        model.eval()
        sums: dict[str, list[Any]] = {}
        hooks = []
        for name, dim in self.layers:
            if only is None or name == only:
                sums[name] = [0, 0.0, 0.0]
                hooks.append(
                    self.modules[name].register_forward_hook(self._hook(sums[name], dim, only))
                )
        try:
            with torch.no_grad():
                for batch in objective.batches():
                    try:
                        if objective.batch_loss is not None:
                            objective.batch_loss(model, batch)
                        else:
                            call_model(model, split_batch(batch, objective.label_keys)[0])
                    except _Stop:
                        pass
        finally:
            for hook in hooks:
                hook.remove()
        out = {}
        for name, (count, s, ss) in sums.items():
            if count < 2:
                raise ValueError(
                    f"REPAIR at {name!r} needs at least 2 values per channel, got {count}"
                )
            mean = s / count
            out[name] = mean, (ss / count - mean**2).clamp_min(0).sqrt()
        return out

    @staticmethod
    def _hook(acc: list[Any], dim: int, stop: str | None):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = output.detach().double().movedim(dim, -1)
            x = x.reshape(-1, x.shape[-1])
            acc[0] += len(x)
            acc[1] = acc[1] + x.sum(0)
            acc[2] = acc[2] + (x * x).sum(0)
            if stop is not None:
                raise _Stop

        return hook

    def __call__(self, state: Mapping[str, torch.Tensor], t: float) -> dict[str, torch.Tensor]:
        """``state`` (the path's point at ``t``) with each layer's units rescaled; the ends
        (``t`` 0 or 1) are returned as they are."""
        t = float(t)
        out = dict(state)
        if t in (0.0, 1.0):
            return out
        full = self.objective.full_state(out)
        for name, _ in self.layers:
            mean_t, sd_t = self._stats(full, only=name)[name]
            (mean_a, sd_a), (mean_b, sd_b) = self.ends[0][name], self.ends[1][name]
            mean, sd = (1 - t) * mean_a + t * mean_b, (1 - t) * sd_a + t * sd_b
            scale = torch.where(sd_t > 1e-12, sd / sd_t.clamp_min(1e-300), torch.ones_like(sd_t))
            w = full[f"{name}.weight"]
            shape = (1, -1) if _is_conv1d(self.modules[name]) else (-1,) + (1,) * (w.dim() - 1)
            full[f"{name}.weight"] = (w.double() * scale.view(shape).to(w.device)).to(w.dtype)
            bias = full.get(f"{name}.bias")
            if bias is not None:
                fixed = (bias.double() - mean_t.to(bias.device)) * scale.to(bias.device)
                full[f"{name}.bias"] = (fixed + mean.to(bias.device)).to(bias.dtype)
            for key in (f"{name}.weight", f"{name}.bias"):
                if key in full:
                    out[key] = full[key]
        return out
