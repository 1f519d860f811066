"""Sharded models (FSDP2 ``fully_shard``, tensor parallel): points written into the model's
own local shards, in place, and the paths that cannot run on them refused up front.

A point ``w + x d1 + y d2`` of a model whose parameters are DTensors is written into each
DTensor's local tensor (this rank's piece, the storage that FSDP2 all-gathers from and
that tensor-parallel kernels read), with the directions' pieces laid out like the
parameters (``landscape.shards.local_like``), and the model itself is called, in eval
mode, on every rank with the same data (its forward is collective). Each point is formed
with the roundings of the unsharded path (each product rounded, then added in order), so
the values equal the unsharded model's. The model's pieces are copied once (the perturbed
tensors' base values) and written back bit for bit afterwards, even on an error: nothing
is deep-copied, nothing gathered whole. FSDP2 modules are resharded before each point (the
root keeps its gathered parameters after a forward without gradients).

``functional_call`` cannot evaluate such a model at another state (FSDP2's pre-forward
unshard puts its own parameters back: the checkpoint's value at a moved point), so
:meth:`Objective.batch_sums` (the Hessian, the sharpness measures, paths) refuses them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import call_model, split_batch
from ..params import merge_tied
from ..shards import is_dtensor, local, local_like
from .layouts import GATHER


def fsdp2_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` that FSDP2's ``fully_shard`` wrapped."""
    fsdp = getattr(sys.modules.get("torch.distributed.fsdp"), "FSDPModule", None)
    return [] if fsdp is None else [m for m in model.modules() if isinstance(m, fsdp)]


def compute_dtypes(model: nn.Module) -> list[str]:
    """The dtypes FSDP2 casts the weights to for the forward (its ``MixedPrecisionPolicy``
    ``param_dtype``), where a ``fully_shard`` call set one: the model then computes in
    them, not in its parameters' dtype.

    Example:
        >>> compute_dtypes(nn.Linear(2, 1))
        []
    """
    found = set()
    for module in fsdp2_modules(model):
        group = getattr(module._get_fsdp_state(), "_fsdp_param_group", None)  # type: ignore[operator]
        dtype = getattr(getattr(group, "mp_policy", None), "param_dtype", None)
        if dtype is not None:
            found.add(str(dtype).removeprefix("torch."))
    return sorted(found)


def sharded_layout(model: nn.Module) -> str | None:
    """``"FSDP2"``, ``"tensor parallel"`` (DTensor parameters without FSDP2), or None.

    Example:
        >>> sharded_layout(nn.Linear(2, 1)) is None
        True
    """
    if fsdp2_modules(model):
        return "FSDP2"
    if any(is_dtensor(t) for t in [*model.parameters(), *model.buffers()]):
        return "tensor parallel"
    return None


def reshard(model: nn.Module) -> None:
    """Put every FSDP2 module's sharded parameters back in place of gathered ones."""
    for module in fsdp2_modules(model):
        module.reshard()  # type: ignore[operator]  # FSDPModule's, not nn.Module's


def not_differentiable(layout: str) -> str:
    """The one-line refusal of ``functional_call`` on a sharded model."""
    return (
        "expected a model that torch.func.functional_call can evaluate, got a model sharded "
        f"by {layout} (DTensor parameters, whose forward puts its own shards back): the Hessian, "
        "sharpness, paths and other differentiable evaluations are not supported on "
        f"sharded models yet (surfaces are, and with FSDP2 hessian_eigenpairs, "
        f"hessian_trace and the sharpness measures lambda_max and trace with hvp='fd', "
        f"rise, avg_l2 and pacbayes with stored=False); {GATHER}"
    )


def not_at_base(layout: str) -> str:
    return (
        f"expected the model's own state with a model sharded by {layout} (it is evaluated "
        f"in place), got another state; {GATHER} to evaluate other states"
    )


def check_options(objective: Any) -> None:
    """Refuse the Objective options a sharded model cannot take yet, in one line."""
    layout = objective.sharded
    if objective.train_mode:
        why = "its buffers would be written"
        raise ValueError(
            f"expected train_mode=False with a model sharded by {layout} ({why}), got True"
        )
    if objective.shard_data:
        why = "every rank evaluates all the data: its forward is collective"
        raise ValueError(
            f"expected shard_data=False with a model sharded by {layout} ({why}), got True"
        )


def is_base(objective: Any, state: Mapping[str, torch.Tensor] | None) -> bool:
    """Whether ``state`` is the objective's base state: None, its own tensors, or tensors
    sharing their pieces' memory (``model.state_dict()`` of the model itself)."""
    if state is None:
        return True
    base = objective.base_state

    def same(t: torch.Tensor, b: torch.Tensor | None) -> bool:
        if t is b:
            return True
        if b is None or is_dtensor(t) != is_dtensor(b) or t.shape != b.shape:
            return False
        p, q = local(t), local(b)
        return (p.data_ptr(), p.stride(), p.dtype) == (q.data_ptr(), q.stride(), q.dtype)

    return all(same(t, base.get(n)) for n, t in merge_tied(state, objective._tied).items())


def call_at_base(objective: Any, state: Mapping[str, torch.Tensor], batch: Any) -> Any:
    """The model's outputs on ``batch`` at its own state (what ``Objective._call`` does
    for a sharded model: construction checks and the model probe)."""
    if not is_base(objective, state):
        raise ValueError(not_at_base(objective.sharded))
    if torch.is_grad_enabled():
        raise ValueError(not_differentiable(objective.sharded))
    model = objective.model
    reshard(model)
    with objective._evaluating():  # eval mode (train_mode=False) and the precision
        if objective.batch_loss is not None:
            return objective.batch_loss(model, batch)
        return call_model(model, split_batch(batch, objective.label_keys)[0])


def loss_in_place(objective: Any, batch: Any) -> tuple[torch.Tensor, int | torch.Tensor]:
    """A batch's loss sum and example count from the model itself at its own state, with
    gradients where they are enabled (the finite-difference HVPs of
    :mod:`landscape.hessian.sharded` perturb the local shards in place and call this);
    the model's mode and the precision set for the call."""
    model = objective.model
    reshard(model)
    with objective._evaluating():
        if objective.batch_loss is not None:
            loss_sum, count = objective.batch_loss(model, batch)
            return torch.as_tensor(loss_sum).reshape(()), int(count)
        inputs, targets = split_batch(batch, objective.label_keys)
        sums = objective.output_sums(call_model(model, inputs), targets, with_metrics=False)
        return sums[0], objective._count_fn(targets)


@torch.no_grad()
def points_in_place(
    objective: Any,
    base: Mapping[str, torch.Tensor] | None,
    directions: list[Mapping[str, torch.Tensor]],
    coords: np.ndarray,
    *,
    ends: Any = None,
    batches: Iterable[Any] | None = None,
    on_device: bool = False,
) -> dict[str, Any]:
    """Means at ``base + sum_j coords[k, j] directions[j]`` (what
    :meth:`Objective.evaluate_points` returns), written into the model's local shards.

    ``base`` must be the objective's base state; the directions full-shape tensors or
    DTensors (pieces are taken as the parameters are laid out).
    """
    layout = objective.sharded
    if not is_base(objective, base):
        raise ValueError(not_at_base(layout))
    if ends is not None and any(e is not None for e in ends):
        raise ValueError(f"expected no interpolation end with a model sharded by {layout}, "
                         f"got one; {GATHER}")  # fmt: skip
    model = objective.model
    reshard(model)
    live = dict(model.named_parameters())
    live.update(model.named_buffers())
    moved = [merge_tied(d, objective._tied) for d in directions]
    names = [n for n in dict.fromkeys(n for d in moved for n in d) if live[n].is_floating_point()]
    pieces = {n: local(live[n]) for n in names}  # written in place
    saved = {n: t.clone() for n, t in pieces.items()}  # the base values: one copy of what moves
    steps = [{n: local_like(d[n], live[n]).to(pieces[n]) for n in names if n in d} for d in moved]
    scratch: dict[tuple, torch.Tensor] = {}
    for t in pieces.values():
        key = (t.device, t.dtype)
        if key not in scratch or scratch[key].numel() < t.numel():
            scratch[key] = torch.empty(t.numel(), device=t.device, dtype=t.dtype)
    data = objective.data if batches is None else batches
    if isinstance(data, Iterator):
        data = list(data)  # passed over again if the model turns out to draw
    points = np.asarray(coords, dtype=np.float64).reshape(len(coords), len(directions)).tolist()

    def write(point: list[float]) -> None:
        reshard(model)
        for name, out in pieces.items():
            terms = [(c, j) for j, c in enumerate(point) if c != 0 and name in steps[j]]
            buf = scratch[(out.device, out.dtype)][: out.numel()].view(out.shape)
            if not terms:
                out.copy_(saved[name])
            for i, (c, j) in enumerate(terms):  # the roundings of the unsharded path
                torch.mul(steps[j][name], c, out=buf)
                if i == 0:
                    torch.add(saved[name], buf, out=out)
                else:
                    out.add_(buf)

    def run(seeded: bool) -> tuple[list[torch.Tensor], list[Any]]:
        parts: list[torch.Tensor] = []
        counts = []
        for point in points:
            write(point)
            counts.append(objective._copy_pass(data, parts, seeded))
        return parts, counts

    try:
        with objective._evaluating():  # eval mode (train_mode=False) and the precision
            parts, counts = objective._seeded_if_drawing(run)
    finally:
        for name, out in pieces.items():
            out.copy_(saved[name])
        reshard(model)
    totals = objective._to_totals(parts, len(points)).to(objective.device)
    means = objective._means(totals, counts, keep_count=batches is None, on_device=on_device)
    if not on_device:
        means = means.cpu().numpy()
    return {name: means[:, i] for i, name in enumerate(objective.names)}
