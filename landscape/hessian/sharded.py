"""The Hessian of an FSDP2 model (``fully_shard``) from its local shards: finite-difference
Hessian-vector products by the model's own forward and backward, on vectors that are this
rank's pieces of the parameters, with every dot product and norm all-reduced.

A product ``(g(w + e v) - g(w - e v)) / (2 e)`` writes ``w +- e v`` into each parameter's
local shard in place (this rank's piece, the storage FSDP2 all-gathers from), runs the
loss forward and backward over the objective's batches (FSDP2 reduce-scatters the
gradients: each rank gets its piece, averaged over the ranks, which all evaluate the same
data), and writes the shards and the parameters' ``.grad`` back as they were, bit for bit,
even on an error. The step ``e`` is the ``fd`` backend's
(:func:`~landscape.hessian.products.step_scale` over the whole vector's norm). Nothing is
gathered whole: a vector holds the concatenated local shards of the selected weights, in
the order of ``names`` (one float64 vector of them a gradient, besides the solver's).

The solvers of :mod:`landscape.linalg` see the pieces through the operator's ``space``
(:class:`Pieces`): dot products and norms are summed over the ranks, and random vectors
are drawn parameter by parameter, each full-shape tensor from the seed's one stream, this
rank keeping its slice: the whole vector is the same on any number of ranks (not the one
an unsharded model's operator draws: that one is drawn in one piece).

Example (under ``torchrun``, with ``model`` sharded by ``fully_shard``)::

    top = hessian_eigenpairs(Objective(model, data), num_eigenpairs=3, hvp="fd")
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist

from .. import distributed
from .._provenance import provenance
from .._seeding import seeded_generator
from ..linalg.operators import _normal, _rademacher
from ..objective import Objective
from ..objective.calling import first_order_only
from ..objective.layouts import GATHER
from ..objective.sharded import fsdp2_modules, is_base, loss_in_place, not_at_base, reshard
from ..params import ParamSelection, select_params, selection_attr
from ..shards import is_dtensor, local, local_like, state_sha256
from .products import PROBE_SEED, step_scale

__all__ = ["ShardedHessianOperator", "Pieces"]


class Pieces:
    """The vectors of a :class:`ShardedHessianOperator`: this rank's pieces of the weights
    (the ``space`` the solvers of :mod:`landscape.linalg` consult; see
    ``landscape.linalg.operators.Whole``). Plain tensors are their own pieces
    (``group`` is then not used by the draws).

    Example:
        >>> pieces = Pieces([torch.zeros(2, 3), torch.zeros(4)], group=None)
        >>> signs = pieces.rademacher(torch.Generator(), torch.float64, "cpu")
        >>> pieces.size, pieces.dim, signs.abs().sum().item()
        (10, 10, 10.0)
    """

    def __init__(self, params: list[Any], group: Any):
        self.params, self.group = params, group
        self.sizes = [local(p).numel() for p in params]
        self.size = sum(self.sizes)  # entries held here
        self.dim = sum(p.numel() for p in params)  # entries of the whole vector

    def reduce(self, partial: torch.Tensor) -> torch.Tensor:
        """``partial`` summed over the ranks (in place)."""
        dist.all_reduce(partial, op=dist.ReduceOp.SUM, group=self.group)
        return partial

    def norm(self, x: torch.Tensor) -> float:
        """The whole vector's norm (squares summed in float64 over the ranks)."""
        square = torch.dot(x.double(), x.double()).reshape(1)
        return math.sqrt(float(self.reduce(square)))

    def _draw(self, fill, dtype: torch.dtype, device) -> torch.Tensor:
        pieces = [local_like(fill(p.shape), p).reshape(-1) for p in self.params]
        return torch.cat(pieces).to(device, dtype)

    def normal(self, rows: int | None, generator: torch.Generator, dtype: torch.dtype, device):
        """Standard normal pieces: each weight's full-shape draw, sliced like its shard."""
        if rows is not None:
            return torch.stack([self.normal(None, generator, dtype, device) for _ in range(rows)])
        return self._draw(lambda shape: _normal(tuple(shape), generator, dtype, device),
                          dtype, device)  # fmt: skip

    def rademacher(self, generator: torch.Generator, dtype: torch.dtype, device) -> torch.Tensor:
        """Random-sign pieces, drawn like :meth:`normal`."""
        return self._draw(
            lambda shape: _rademacher(math.prod(shape), generator, dtype, device).reshape(shape),
            dtype, device,
        )  # fmt: skip


def refusal(layout: str, hvp: str) -> str:
    """The one-line refusal of ``HessianOperator`` (double backward) on a sharded model."""
    if layout != "FSDP2":
        return (
            f"expected a model sharded by FSDP2 for Hessian-vector products, got one sharded "
            f"by {layout} (finite differences are supported on FSDP2's local shards only); "
            f"{GATHER}"
        )
    return (
        f"expected hvp='fd' with a model sharded by FSDP2 (double backward cannot run "
        f"through its hooks), got hvp={hvp!r}; pass hvp='fd' to hessian_eigenpairs or "
        f"hessian_trace (or use ShardedHessianOperator), or {GATHER}"
    )


class ShardedHessianOperator:
    """The Hessian of an objective's mean loss over an FSDP2 model, on local shards.

    Each rank holds the pieces of every vector (see :mod:`landscape.hessian.sharded`);
    products are collective: every rank must make the same calls. Products are ``fd``
    only; their relative error cannot be measured against an exact product (none runs on
    a sharded model), so :attr:`hvp_error` is estimated from the probe of
    :data:`~landscape.hessian.products.PROBE_SEED` as ``||H_e v - H_2e v|| / ||H_e v||``
    (the product at twice the step: three times the ``e**2`` truncation error, and the
    round-off of both), two products at construction not counted in :attr:`num_hvps`.

    Args:
        objective: an Objective over a model sharded by FSDP2 (``fully_shard`` on a 1-D
            mesh: every selected weight placed ``Shard(0)``); never changed.
        state: the model's own state only (None).
        params: as in :class:`~landscape.hessian.HessianOperator`; every selected weight
            must require gradients.
        dtype: None or the model's dtype (products run on the model itself).
        check_deterministic: refuse a loss whose two evaluations differ.

    Attributes:
        names: the weights; shapes: their local pieces' shapes (this rank's).
        num_params, size: the whole number of weights.
        space: the pieces (:class:`Pieces`).
        num_examples, loss, num_hvps, hvp_error, device, dtype, settings: as in
            :class:`~landscape.hessian.HessianOperator` (``settings["layout"]`` and
            ``settings["ranks"]`` added); ``hvp`` is ``"fd"``, ``operator`` is
            ``"hessian"`` and ``graph_bytes`` 0.

    Raises:
        ValueError: a model not sharded by FSDP2, another state or dtype, a selected
            weight that is not a ``Shard(0)`` DTensor or does not require gradients.
        RuntimeError: the loss is not deterministic.
    """

    hvp, operator, graph_bytes = "fd", "hessian", 0

    def __init__(
        self,
        objective: Objective,
        *,
        state: Any = None,
        params: ParamSelection = None,
        dtype: torch.dtype | None = None,
        check_deterministic: bool = True,
    ):
        layout = objective.sharded
        if layout != "FSDP2":
            raise ValueError(refusal(str(layout), "fd"))
        if not is_base(objective, state):
            raise ValueError(not_at_base(layout))
        if dtype is not None and dtype != objective.dtype:
            raise ValueError(f"expected dtype=None or the model's {objective.dtype} with an "
                             f"FSDP2 model (products run on it), got {dtype}")  # fmt: skip
        self.objective, self.device, self.dtype = objective, objective.device, objective.dtype
        self.names: tuple[str, ...] = tuple(select_params(objective.model, params))
        every = dict(objective.model.named_parameters())
        self._params = [every[n] for n in self.names]
        self._all = list(every.values())
        self.space = Pieces(self._params, self._check_placements())
        self.shapes = {n: tuple(local(every[n]).shape) for n in self.names}
        self.num_params = self.space.dim
        self.num_hvps = 0
        with torch.no_grad():
            squares = sum(local(p).detach().double().pow(2).sum() for p in self._params)
            self.weight_norm = math.sqrt(float(self.space.reduce(torch.as_tensor(squares))))
        total, self.num_examples = self._loss_sums()
        if check_deterministic and total != self._loss_sums()[0]:
            raise RuntimeError("the loss is not deterministic: two evaluations at the same point "
                               "differ, so its Hessian is undefined")  # fmt: skip
        self.loss = total / self.num_examples
        self.hvp_error: float | str = self._estimate_error()
        self.settings: dict[str, Any] = {
            **provenance(objective, state),
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "num_params": self.num_params,
            "num_examples": self.num_examples,
            "state_sha256": state_sha256(dict(zip(self.names, self._params, strict=True))),
            "layout": layout,
            "ranks": distributed.world_size(),
        }
        if params is not None:
            self.settings["params"] = selection_attr(self.names, every)

    @property
    def size(self) -> int:
        """The whole number of differentiated weights (:attr:`num_params`)."""
        return self.num_params

    def _check_placements(self) -> Any:
        """The process group of the mesh every selected weight is sharded over (FSDP2's
        gradients averaged over it: the default divide factor)."""
        from torch.distributed.tensor import Shard

        meshes = set()
        for name, p in zip(self.names, self._params, strict=True):
            p = cast(Any, p)  # a DTensor, checked here
            if not is_dtensor(p) or tuple(p.placements) != (Shard(0),):
                placed = tuple(p.placements) if is_dtensor(p) else "a plain tensor"
                raise ValueError(f"expected every selected weight sharded by fully_shard on a "
                                 f"1-D mesh (Shard(0)), got {name!r} placed {placed}")  # fmt: skip
            if not p.requires_grad:
                raise ValueError(f"expected selected weights that require gradients, got "
                                 f"{name!r} frozen; pass params='trainable'")  # fmt: skip
            meshes.add(p.device_mesh)
        if len(meshes) != 1:
            raise ValueError(f"expected the weights on one device mesh, got {len(meshes)}")
        mesh = meshes.pop()
        for module in fsdp2_modules(self.objective.model):  # FSDP2's private state: a guard
            state = cast(Any, module)._get_fsdp_state()
            for group in getattr(state, "_fsdp_param_groups", []):
                factor = getattr(group, "gradient_divide_factor", None)
                if factor is not None and factor != mesh.size():
                    raise ValueError(
                        f"expected FSDP2's gradients averaged over the {mesh.size()} ranks, "
                        f"got a gradient divide factor of {factor}"
                    )
        return mesh.get_group()

    @torch.no_grad()
    def _loss_sums(self) -> tuple[float, int]:
        """The loss summed over the data (every rank evaluates all of it) and the count."""
        total, count = torch.zeros((), dtype=torch.float64), 0
        for batch in self.objective.batches():
            loss, n = loss_in_place(self.objective, batch)
            total += loss.double().cpu()
            count += int(n)
        if count == 0:
            raise ValueError("data is empty: expected at least one example")
        return float(total), count

    def _gradient(self) -> torch.Tensor:
        """This rank's pieces of the mean loss's gradient at the model's current shards,
        summed over the batches in float64."""
        total = torch.zeros(self.space.size, dtype=torch.float64, device=self.device)
        for batch in self.objective.batches():
            for p in self._all:
                p.grad = None
            with torch.enable_grad(), first_order_only():
                loss, _ = loss_in_place(self.objective, batch)
                if loss.requires_grad:
                    (loss / self.num_examples).backward()
            with torch.no_grad():
                for piece, p in zip(total.split(self.space.sizes), self._params, strict=True):
                    if p.grad is not None:
                        piece += local(p.grad).reshape(-1)
        return total

    def _difference(self, vector: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
        """``(g(w + e v) - g(w - e v)) / (2 e)`` with ``factor`` times the ``fd`` step;
        float64 pieces out. The shards and every ``.grad`` are written back as they were."""
        model = self.objective.model
        scale = step_scale(self.dtype, self.weight_norm) * factor
        step = torch.tensor(scale / self.space.norm(vector), dtype=self.dtype, device=self.device)
        pieces = [local(p) for p in self._params]
        saved = [t.detach().clone() for t in pieces]
        grads = [p.grad for p in self._all]
        split = vector.split(self.space.sizes)
        parts = [v.reshape(t.shape) for v, t in zip(split, pieces, strict=True)]
        found = []
        try:
            for sign in (1, -1):
                reshard(model)
                with torch.no_grad():
                    for t, s, d in zip(pieces, saved, parts, strict=True):
                        t.copy_(s + step * d if sign > 0 else s - step * d)
                found.append(self._gradient())
        finally:
            reshard(model)
            with torch.no_grad():
                for t, s in zip(pieces, saved, strict=True):
                    t.copy_(s)
            for p, g in zip(self._all, grads, strict=True):
                p.grad = g
        return (found[0] - found[1]) / (2 * step.double())

    def _estimate_error(self) -> float | str:
        """``||H_e v - H_2e v|| / ||H_e v||`` on the probe (see the class docstring)."""
        probe = self.space.normal(None, seeded_generator(PROBE_SEED, self.device),
                                  self.dtype, self.device)  # fmt: skip
        near, far = self._difference(probe), self._difference(probe, 2.0)
        scale = self.space.norm(near)
        if not scale > 0:
            return "not measured: the product is zero on the probe"
        return self.space.norm(near - far) / scale

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H @ v`` for this rank's pieces ``v`` (length ``space.size``); the same kind out.

        Raises:
            ValueError: ``v`` has another length.
            TypeError: ``v`` is not a tensor.
        """
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"expected this rank's pieces as a tensor, got {type(v).__name__}")
        if v.numel() != self.space.size:
            raise ValueError(f"expected this rank's {self.space.size} entries, got {v.numel()}")
        out = self._difference(v.reshape(-1).to(self.device, self.dtype))
        self.num_hvps += 1
        return out.to(v.device, v.dtype).reshape(v.shape)

    __matmul__ = matvec

    def float64(self) -> ShardedHessianOperator:
        """Itself: products run on the model in its own dtype (no float64 twin)."""
        return self

    def signs(self, vectors: np.ndarray) -> np.ndarray:
        """For rows of pieces, the sign of each whole row's largest-magnitude entry (the
        first rank's on ties), the same on every rank."""
        rows = np.arange(len(vectors))
        at = np.abs(vectors).argmax(axis=1) if vectors.shape[1] else np.zeros(len(rows), int)
        mine = [(0.0, 1.0) if not vectors.shape[1] else (abs(v), np.sign(v))
                for v in vectors[rows, at]]  # fmt: skip
        every = distributed.all_gather_objects(mine)
        best = [max(range(len(every)), key=lambda r: (every[r][i][0], -r)) for i in rows]
        return np.array([every[r][i][1] for i, r in enumerate(best)])
