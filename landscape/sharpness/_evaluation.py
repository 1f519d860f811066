"""The measures' access to the loss: every value comes from the Objective's engine.

- :func:`mean_loss`: the exact mean loss (or a metric) at a state, over the data or a
  chunk of it, by ``objective(state)``;
- :func:`losses_at`: the same at many perturbed states, by
  ``objective.evaluate_points``, as many points per pass as the Objective chooses;
- :func:`loss_and_grad`: the mean loss and its gradient, from ``objective.batch_sums``
  (the one loop here that adds up batch sums, because gradients are needed), left on the
  device: an ascent loop reads nothing back per step;
- :func:`chunks`: the data regrouped into batches of ``batch_size`` examples.

With ``shard_data`` every sum is all-reduced, so every rank makes the same calls and gets
the value over the whole data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from .. import distributed
from ..objective import Objective
from ..params import ParamSelection, select_params, selection_attr

State = dict[str, torch.Tensor]
Chunk = list[Any]


def weights_of(objective: Objective, params: ParamSelection = None) -> State:
    """The weights at the objective's base state that ``params`` selects (default all), in
    ``named_parameters`` order: the only ones a measure perturbs."""
    return {n: objective.base_state[n] for n in select_params(objective.model, params)}


def selection_setting(
    objective: Objective, params: ParamSelection, weights: Mapping[str, torch.Tensor]
) -> dict[str, Any]:
    """``{"params": "all" or the names of weights}`` when a selection was given, else ``{}``
    (so that the settings of 0.1 files still match)."""
    if params is None:
        return {}
    return {"params": selection_attr(list(weights), dict(objective.model.named_parameters()))}


def shifted(weights: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor]) -> State:
    """``weights + delta``, tensor by tensor."""
    return {n: w + delta[n] for n, w in weights.items()}


def dot(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``<a, b>`` over every tensor, a float64 0-dim tensor on their device (not read)."""
    device = next((t.device for t in a.values()), None)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for n in a:
        total = total + (a[n].to(torch.float64) * b[n].to(torch.float64)).sum()
    return total


def mean_loss(
    objective: Objective,
    state: Mapping[str, torch.Tensor],
    chunk: Chunk | None = None,
    metric: str = "loss",
    *,
    on_device: bool = False,
) -> Any:
    """The exact mean of ``metric`` at ``state`` over the data, or over ``chunk`` (a list of
    batches; with ``shard_data`` this rank's slices of them); a float, or a float64 0-dim
    tensor left on the device."""
    value = objective(dict(state), batches=chunk, on_device=on_device)[metric]
    return value if on_device else float(value)


def losses_at(
    objective: Objective,
    weights: Mapping[str, torch.Tensor],
    deltas: Iterable[Mapping[str, torch.Tensor]],
    metric: str = "loss",
    callback: Callable[[int], Any] | None = None,
) -> np.ndarray:
    """The exact mean of ``metric`` over the data at ``weights + delta`` for each delta.

    The deltas are taken (and may be made lazily) as many at a time as the Objective
    evaluates per pass (``points_per_pass``; one on a CPU by default); ``callback`` is
    called with the number of points after each pass (a progress bar's ``update``). The
    values stay on the device until all are evaluated, then are read at once.
    """
    k = objective.resolve_points_per_pass()
    values: list[torch.Tensor] = []
    group: list[Mapping[str, torch.Tensor]] = []

    def flush() -> None:
        if group:
            eye = np.eye(len(group))
            out = objective.evaluate_points(dict(weights), list(group), eye, on_device=True)
            values.append(out[metric])
            if callback is not None:
                callback(len(group))
            group.clear()

    for delta in deltas:
        group.append(delta)
        if len(group) == k:
            flush()
    flush()
    return torch.cat(values).cpu().numpy() if values else np.empty(0)


def loss_and_grad(
    objective: Objective, weights: Mapping[str, torch.Tensor], chunk: Chunk
) -> tuple[torch.Tensor, State]:
    """The mean loss over ``chunk`` at ``weights`` (a float64 0-dim tensor on the device)
    and its gradient with respect to them, from the Objective's differentiable batch sums;
    one all-reduce for everything and nothing read by the host (a sync on CUDA), so callers
    read the loss when they need it. A chunk without examples gives NaN: callers evaluate
    it with :func:`mean_loss` first, which says so."""
    leaves = {n: w.detach().requires_grad_(True) for n, w in weights.items()}
    full = objective.full_state(leaves)
    total = torch.zeros((), dtype=torch.float64, device=objective.device)
    count: int | torch.Tensor = 0  # an int, or a tensor of tokens
    grads = {n: torch.zeros_like(w) for n, w in weights.items()}
    for batch in chunk:
        sums, n = objective.batch_sums(full, batch, with_metrics=False)
        if sums["loss"].requires_grad:  # else the loss does not depend on these weights
            parts = torch.autograd.grad(
                sums["loss"], list(leaves.values()), allow_unused=True, materialize_grads=True
            )
            for name, g in zip(leaves, parts, strict=True):
                grads[name] += g
        total += sums["loss"].detach().to(torch.float64)
        count += n
    head = torch.stack([total, torch.as_tensor(count, dtype=torch.float64, device=total.device)])
    pieces = [head, *(g.reshape(-1).to(torch.float64) for g in grads.values())]
    flat = objective.all_reduce(torch.cat([p.to(objective.device) for p in pieces]))
    total, count = flat[0], flat[1]
    pieces = flat[2:].split([g.numel() for g in grads.values()])
    mean_grads = {
        n: (piece / count).view_as(g).to(g)
        for (n, g), piece in zip(grads.items(), pieces, strict=True)
    }
    return total / count, mean_grads


def is_pair(batch: Any) -> bool:
    """Whether a batch is ``(inputs, targets)`` tensors, which can be sliced by example."""
    return (
        isinstance(batch, (tuple, list))
        and len(batch) == 2
        and all(isinstance(t, torch.Tensor) for t in batch)
    )


def chunks(objective: Objective, batch_size: int | None) -> list[Chunk]:
    """The data as groups of ``batch_size`` examples in order (the last may be smaller), each
    a list of slices of the objective's batches; ``None`` (or a size covering the data) gives
    one group: the objective's own batches.

    With ``shard_data`` the groups are those of the whole data, and each rank gets its own
    slices of every group (possibly none), so sums over a group are all-reduced like sums over
    the data, and every rank has the same number of groups.
    """
    if batch_size is None or batch_size >= objective.num_examples:
        return [list(objective.batches())]
    batches = list(objective.batches())
    if not all(is_pair(b) for b in batches):
        raise ValueError(
            "batch_size needs batches of (inputs, targets) tensors to regroup the examples; "
            "this objective has other batches (a batch_loss closure?): use batch_size=None"
        )
    mine = [len(b[1]) for b in batches]
    sizes = distributed.all_gather_objects(mine) if objective.shard_data else [mine]
    me = distributed.rank() if objective.shard_data else 0
    groups: list[Chunk] = [[] for _ in range(math.ceil(objective.num_examples / batch_size))]
    # Batch i of the data is batch i // world_size of rank i % world_size.
    order = [(r, j) for j in range(max(map(len, sizes))) for r, s in enumerate(sizes) if j < len(s)]
    start = 0  # position in the data of the first example of batch (r, j)
    for r, j in order:
        end = start + sizes[r][j]
        if r == me:
            inputs, targets = batches[j]
            for c in range(start // batch_size, math.ceil(end / batch_size)):
                lo = max(c * batch_size, start) - start
                hi = min((c + 1) * batch_size, end) - start
                groups[c].append((inputs[lo:hi], targets[lo:hi]))
        start = end
    return groups
