"""Activation matching (Ainsworth et al. 2023; Li et al. 2015): the permutation of each
group that pairs every unit of ``a`` with the unit of ``b`` whose activations correlate
most with it over the data.

For each group, the Pearson correlations ``corr[i, j]`` between unit ``i`` of ``a`` and
unit ``j`` of ``b`` are averaged over every activation of the group (a layer's output and
what elementwise functions make of it; every position of a conv map or a sequence counts as
a sample), accumulated in float64 over the batches, and
``scipy.optimize.linear_sum_assignment`` maximizes their sum; the groups of one attention
are paired by whole heads (:func:`~landscape.alignment.attention.match_heads`). Groups
whose activations the graph does not show (the query/key and value dimensions inside
``nn.MultiheadAttention``) keep the identity: align those by weights.

Hugging Face GPT-2 and Llama, which ``torch.fx`` cannot trace, are recorded with forward
hooks (:mod:`~.probes`) where their hand-written specs' groups show: the MLP units at the
input of ``c_proj`` / ``down_proj``; the value dimensions (and heads) at the input of
``attn.c_proj`` / ``o_proj`` (under grouped-query attention each query head's copy one
more sample); the query/key dimensions in the outputs of the query and key projections
(Llama's key/value heads as wholes: two heads correlate by the mean correlation of their
like dimensions, which rotary embeddings keep in place); the residual stream
(``residual=True``) at the embeddings and every block's output. Every group is matched
from activations; none falls back to weights.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import fx, nn

from ..data import as_batches, split_batch, to_device
from .attention import match_heads
from .gpt2 import gpt2_probes
from .llama import llama_probes
from .probes import Probe, per_unit, record
from .residual import RESIDUAL
from .spec import PermutationSpec

__all__ = ["activation_correlations", "activation_matching"]


class _Recorder(fx.Interpreter):
    """Runs a traced model and keeps the outputs of the wanted nodes."""

    def __init__(self, module: fx.GraphModule, wanted: Iterable[str]):
        super().__init__(module)
        self.wanted = set(wanted)
        self.kept: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.wanted:
            self.kept[n.name] = out
        return out


def _args(graph: fx.Graph, inputs: Any) -> list[Any]:
    places = [n for n in graph.nodes if n.op == "placeholder"]
    if not isinstance(inputs, Mapping):
        return [inputs] + [p.args[0] if p.args else None for p in places[1:]]
    return [inputs[p.target] if p.target in inputs else (p.args or (None,))[0] for p in places]


def _units(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x.detach().to(torch.float64).movedim(dim, -1).reshape(-1, x.shape[dim])


def _traced(spec: PermutationSpec, models: list[nn.Module]) -> tuple[dict[Any, Any], Any]:
    """``({key: (group, width)}, run)`` of a model ``torch.fx`` traces: the graph nodes
    of ``spec.nodes``; ``run(i, inputs)``: ``{key: (samples, units)}`` of model ``i``."""
    try:
        graphs = [fx.symbolic_trace(copy.deepcopy(m).eval()) for m in models]
    except Exception as exc:  # fx raises many types
        raise ValueError(
            f"expected a model torch.fx can trace for activation matching (use "
            f"method='weights'), got {type(models[0]).__name__}, which it cannot trace"
        ) from exc
    recorders = [_Recorder(g, spec.nodes) for g in graphs]

    def run(i: int, inputs: Any) -> dict[str, torch.Tensor]:
        recorders[i].kept = {}
        recorders[i].run(*_args(graphs[i].graph, inputs))
        return {n: _units(recorders[i].kept[n], dim) for n, (_, dim) in spec.nodes.items()}

    return {n: (group, 1) for n, (group, _) in spec.nodes.items()}, run


def _hooked(probes: list[Probe], models: list[nn.Module]) -> tuple[dict[Any, Any], Any]:
    """As :func:`_traced`, for a hand-written spec: its probes, recorded with hooks on the
    models themselves (no copy of a large model), in eval mode, their modes restored."""

    def run(i: int, inputs: Any) -> dict[int, torch.Tensor]:
        modes = [(m, m.training) for m in models[i].modules()]
        models[i].eval()
        try:
            return dict(enumerate(record(models[i], probes, inputs)))
        finally:
            for m, mode in modes:
                m.training = mode

    return {k: (p.group, p.width) for k, p in enumerate(probes)}, run


@torch.no_grad()
def activation_correlations(
    spec: PermutationSpec, model_a: nn.Module, model_b: nn.Module, data: Any
) -> dict[str, np.ndarray]:
    """``{group: corr}``: ``corr[i, j]``, the correlation between unit ``i`` of ``a`` and
    unit ``j`` of ``b``, averaged over the group's activations (a unit that never varies
    correlates 0). Hugging Face GPT-2 and Llama are recorded with forward hooks at the
    probes of their hand-written specs (:func:`~.gpt2.gpt2_probes`,
    :func:`~.llama.llama_probes`), other models at the graph nodes of ``spec.nodes``."""
    residual = RESIDUAL in spec.sizes
    probes = gpt2_probes(model_a, residual=residual) or llama_probes(model_a, residual=residual)
    models = [model_a, model_b]
    if probes is None:
        keys, run = _traced(spec, models)
    else:
        keys, run = _hooked([p for p in probes if p.group in spec.sizes], models)
    sums: dict[Any, list] = {}
    device = next((p.device for p in model_a.parameters()), torch.device("cpu"))
    for batch in as_batches(data):
        inputs = to_device(split_batch(batch)[0], device)
        found_a, found_b = run(0, inputs), run(1, inputs)
        for key in keys:
            xa, xb = found_a[key], found_b[key]
            acc = sums.setdefault(key, [0, 0.0, 0.0, 0.0, 0.0, 0.0])
            acc[0] += len(xa)
            acc[1] = acc[1] + xa.sum(0)
            acc[2] = acc[2] + xb.sum(0)
            acc[3] = acc[3] + (xa * xa).sum(0)
            acc[4] = acc[4] + (xb * xb).sum(0)
            acc[5] = acc[5] + xa.T @ xb
    if not sums:
        raise ValueError("expected data with at least one batch for activation matching, got none")
    out: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for key, (group, width) in keys.items():
        count, sa, sb, saa, sbb, sab = sums[key]
        ma, mb = sa / count, sb / count
        cov = sab / count - torch.outer(ma, mb)
        sd_a = (saa / count - ma**2).clamp_min(0).sqrt()
        sd_b = (sbb / count - mb**2).clamp_min(0).sqrt()
        scale = torch.outer(sd_a, sd_b)
        corr = torch.where(scale > 1e-12, cov / scale.clamp_min(1e-300), torch.zeros_like(cov))
        out[group] = out.get(group, 0) + per_unit(corr, width).cpu().numpy()
        counts[group] = counts.get(group, 0) + 1
    return {group: c / counts[group] for group, c in out.items()}


def activation_matching(
    spec: PermutationSpec, model_a: nn.Module, model_b: nn.Module, data: Any
) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """The permutations of ``b``'s units that maximize their correlation with ``a``'s.

    Args:
        spec: the permutation groups (with the activations of each).
        model_a, model_b: two models of the architecture of ``spec`` (copies are run in
            eval mode; neither is changed).
        data: batches the library accepts (:func:`landscape.data.as_batches`).

    Returns:
        ``({group: permutation}, {group: correlations})``.
    """
    corr = activation_correlations(spec, model_a, model_b, data)
    perms = {g: torch.arange(n) for g, n in spec.sizes.items()}
    in_heads: set[str] = set()
    for num, groups in spec.heads.values():  # whole heads, one head order for the groups
        in_heads.update(groups)
        if any(g in corr for g in groups):
            costs = [corr.get(g, np.zeros((spec.sizes[g],) * 2)) for g in groups]
            for g, p in zip(groups, match_heads(costs, num), strict=True):
                perms[g] = torch.as_tensor(p, dtype=torch.int64)
    for group, c in corr.items():
        if group not in in_heads:
            _, col = linear_sum_assignment(c, maximize=True)
            perms[group] = torch.as_tensor(col, dtype=torch.int64)
    return perms, corr
