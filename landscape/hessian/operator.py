"""The Hessian of an objective's mean loss as a symmetric operator: Hessian-vector products
over the whole evaluation set (exact, or central differences of gradients), or Gauss-Newton
products."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import numpy as np
import scipy.sparse.linalg
import torch

from .. import options
from .._provenance import provenance
from ..checks import check_choice, check_state
from ..objective import Objective
from ..params import (
    ParamSelection,
    flatten,
    select_params,
    selection_attr,
    state_sha256,
    unflatten,
)
from .ggn import GaussNewtonProducts
from .products import DifferenceProducts, ExactProducts, exact_or_reason, measure_error
from .sharded import ShardedHessianOperator, refusal

#: Default budget for the autograd graphs kept between products (see HessianOperator).
GRAPH_BYTES = 2**30

__all__ = ["HessianOperator", "ParamSelection", "GRAPH_BYTES", "resolve_operator"]


def _cast(obj: Any, dtype: torch.dtype) -> Any:
    """``obj`` with every floating tensor (also inside dicts, lists, tuples) cast to ``dtype``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() else obj
    if isinstance(obj, Mapping):
        return {k: _cast(v, dtype) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cast(v, dtype) for v in obj)
    return obj


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors are equal, NaN where both are NaN (one read by the host)."""
    return bool(((a == b) | (a.isnan() & b.isnan())).all())


class HessianOperator:
    """The Hessian of an objective's exact mean loss with respect to the model's weights.

    ``H @ v`` is an exact Hessian-vector product (double backward) over the whole evaluation
    set: each batch contributes the HVP of its loss *sum*, and the total is divided by the
    number of examples, so ragged batches weigh what they should. It is a
    :class:`~landscape.linalg.SymmetricOperator` (``matvec``, ``size``, ``dtype``,
    ``device``), so every solver of :mod:`landscape.linalg` takes it. The model is only
    called through the objective (``functional_call`` on copies of the point), so its
    parameters, buffers and train/eval flags are unchanged, and buffers (BatchNorm running
    statistics) are held fixed. With an objective that shards its data over
    ``torch.distributed`` ranks, products and counts are all-reduced: every rank makes the
    same calls and gets the same results.

    Graphs: a product needs each batch's gradient graph (forward, gradient with
    ``create_graph``). The graphs of the first batches are kept between products while the
    tensors they save total at most ``max_graph_bytes`` (counted as they are built); the
    other batches are recomputed at every product. The first batch's graph is always kept
    (a product holds one graph at its peak anyway), so one batch costs one backward pass a
    product. ``max_graph_bytes=0`` keeps only that one. Graphs are kept only for cached
    data (``Objective(cache_data=True)``, the default). A product adds up the batches in
    one float64 vector of ``n`` (for cached data in one batch on one rank, the product in
    the operator's dtype is taken as it is); the host reads nothing during a product.

    Backends (``hvp``): ``"exact"`` (default) is double backward, exact to round-off, with
    ``scaled_dot_product_attention`` forced to its math kernel while gradients are recorded.
    ``"fd"`` is the central difference ``(g(w + e v) - g(w - e v)) / (2 e)`` of two
    first-order gradients (see :mod:`landscape.hessian.products`; ``e`` is about
    ``cbrt(eps)`` of the weights' norm, per dtype), which runs where double backward cannot:
    fused attention kernels (the one the caller selected is kept), ``torch.compile``d
    models; no graph is kept between products. Its relative error ``||H_fd v - H v|| /
    ||H v||`` is measured at construction against one exact product on the first batch
    (probe :data:`~landscape.hessian.products.PROBE_SEED`) and kept in :attr:`hvp_error`,
    or, where the exact product fails, a sentence saying why. Measured at the default step:
    at most 1.3e-4 in float32 and 2e-10 in float64 on an MLP and a tiny GPT-2. ``"auto"``
    tries that exact product: ``exact`` where it works, ``fd`` otherwise. Every result
    made with ``fd`` records ``hvp`` and ``hvp_error`` and widens its stated bounds by the
    error (see :func:`hessian_eigenpairs`, :func:`hessian_trace`,
    :func:`spectral_density`).

    Gauss-Newton (``operator="ggn"``): the operator applies ``G = J^T H_out J`` instead of
    the Hessian, for the losses ``cross_entropy``, ``causal_lm``, ``token_ce`` and ``mse``
    (see :mod:`landscape.hessian.ggn`): ``J v`` by forward-mode AD, the output Hessian in
    closed form, ``J^T u`` by one backward pass; no double backward, so ``hvp`` must be
    ``"exact"`` or ``"auto"`` (its products are exact). Every solver takes it as it takes
    the Hessian: ``hessian_eigenpairs(HessianOperator(objective, operator="ggn"))``.

    Args:
        objective: the loss and data; its model is never changed.
        state: the point, a (partial) state with names from ``model.state_dict()``; default
            the objective's base state (the model's own).
        params: which weights to differentiate: ``None`` (all of ``model.named_parameters()``),
            ``"trainable"``, names or glob patterns (``"transformer.h.3.*"``), or a
            predicate ``(name, tensor) -> bool`` of the model's own parameters such as
            ``lambda n, t: t.dim() > 1`` (Li et al.'s choice); see
            :func:`landscape.params.select_names`. The others are held fixed, so the
            operator is the diagonal block ``H_SS`` of the selection ``S``.
        dtype: compute in this floating dtype (e.g. ``torch.float64``) on copies of the state
            and data; default the model's dtype.
        check_deterministic: evaluate the loss twice at construction and refuse an objective
            whose two values differ (random augmentation in the data), as an HVP of a random
            function is meaningless. Dropout in train mode passes: its draws come from the
            objective's ``seed``, the same masks at every evaluation.
        max_graph_bytes: budget for the graphs kept between products (default 1 GiB).
        hvp: ``"exact"``, ``"fd"`` or ``"auto"`` (see above).
        operator: ``"hessian"`` (default) or ``"ggn"`` (see above).
        fingerprint: put the point's fingerprints (``checkpoint_sha256``, ``state_sha256``:
            a pass over the weights each) in :attr:`settings`; ``False`` for a caller that
            records the point otherwise (a Tracker, at every log).

    Attributes:
        names, shapes, num_params: the differentiated weights (flat vectors follow ``names``).
        size: ``num_params``, as solvers call it.
        num_examples, loss: size of the evaluation set, and the mean loss at the point.
        num_hvps: products computed so far.
        hvp, hvp_error: the backend used (``"auto"`` resolved; ``"exact"`` for ``ggn``) and
            its measured relative error (0.0 for ``exact``) or why it was not measured.
        operator: ``"hessian"`` or ``"ggn"``; ``settings["operator"]`` only for ``"ggn"``.
        graph_bytes: bytes of the gradient graphs kept between products.
        device, dtype, settings: where and how it computes; ``settings`` (dtype, the
            fingerprint ``state_sha256`` of the differentiated weights, and the provenance:
            ``model``, ``checkpoint_sha256`` of the whole point, ``data_sha256``,
            ``num_examples``, ``loss_name``, ...) is copied into every result.

    Raises:
        ValueError: a selected name is not a weight, no weight is selected, a negative
            ``max_graph_bytes``, an unknown ``hvp`` or ``operator``, ``hvp="fd"`` with
            ``operator="ggn"``, or ``operator="ggn"`` with another loss.
        RuntimeError: the loss is not deterministic.

    Example:
        >>> from torch import nn
        >>> from landscape.objective import Objective
        >>> data = (torch.randn(8, 3, dtype=torch.float64), torch.randn(8, dtype=torch.float64))
        >>> H = HessianOperator(Objective(nn.Linear(3, 1).double(), data, loss="mse"))
        >>> H.size, (H @ torch.ones(4, dtype=torch.float64)).shape
        (4, torch.Size([4]))
    """

    def __init__(
        self,
        objective: Objective,
        *,
        state: Mapping[str, torch.Tensor] | None = None,
        params: ParamSelection = None,
        dtype: torch.dtype | None = None,
        check_deterministic: bool = True,
        max_graph_bytes: int = GRAPH_BYTES,
        hvp: options.HvpBackendName = "exact",
        operator: options.CurvatureName = "hessian",
        fingerprint: bool = True,
    ):
        if not isinstance(objective, Objective):
            raise TypeError(
                f"objective must be a landscape Objective, got {type(objective).__name__}"
            )
        if objective.sharded:  # refused before any work: see ShardedHessianOperator
            raise ValueError(refusal(objective.sharded, hvp))
        if isinstance(max_graph_bytes, bool) or not isinstance(max_graph_bytes, int):
            raise TypeError(f"max_graph_bytes must be an int, got {max_graph_bytes!r}")
        if max_graph_bytes < 0:
            raise ValueError(f"max_graph_bytes must be >= 0, got {max_graph_bytes}")
        self.hvp = cast(options.HvpBackendName, check_choice(hvp, options.HvpBackend, "hvp"))
        self.operator = cast(
            options.CurvatureName, check_choice(operator, options.Curvature, "operator")
        )
        if self.operator == "ggn" and self.hvp == "fd":
            raise ValueError(
                "expected hvp='exact' or 'auto' with operator='ggn' (its products need no "
                "double backward), got hvp='fd'"
            )
        self.objective = objective
        self.device = objective.device
        self.dtype = objective.dtype if dtype is None else dtype
        if not (isinstance(self.dtype, torch.dtype) and self.dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating dtype, got {self.dtype}")
        self.max_graph_bytes, self._fingerprint = max_graph_bytes, bool(fingerprint)
        self._source = objective.full_state(state)  # references, for a float64 twin
        try:
            self.names: tuple[str, ...] = tuple(select_params(objective.model, params))
        except ValueError as err:
            raise ValueError(
                f"{err}; only weights (model.named_parameters()) can be selected"
            ) from None
        self._leaves = [
            self._source[n].detach().to(self.dtype, copy=True).requires_grad_(True)
            for n in self.names
        ]
        # the rest of the point (cast copies where the dtype differs); the leaves replace
        # the differentiated weights, so these are not copied twice
        self._point = {
            n: _cast(t, self.dtype) for n, t in self._source.items() if n not in self.names
        }
        self.shapes: dict[str, tuple[int, ...]] = {
            n: tuple(leaf.shape) for n, leaf in zip(self.names, self._leaves, strict=True)
        }
        self._weights = dict(zip(self.names, self._leaves, strict=True))
        self.num_params = sum(t.numel() for t in self._leaves)
        self.num_hvps = 0
        recast = self.dtype != objective.dtype
        self._data = None
        if objective.cache_data:
            self._data = [_cast(b, self.dtype) if recast else b for b in objective.batches()]
        self._twin: HessianOperator | None = None
        sums, self.num_examples = self._loss_sums()
        if check_deterministic and not _same(sums, self._loss_sums()[0]):
            raise RuntimeError(
                "the loss is not deterministic: two evaluations at the same point differ, so its "
                "Hessian is undefined; evaluate in eval mode (Objective(..., train_mode=False)) "
                "or remove the randomness (random augmentation of the data), or pass "
                "check_deterministic=False if the difference is harmless round-off"
            )
        self.loss = float(self.objective.all_reduce(sums.sum())) / self.num_examples
        self._choose_products()
        self.settings: dict[str, Any] = {
            **provenance(objective, state, checkpoint=self._fingerprint),
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "num_params": self.num_params,
            "num_examples": self.num_examples,
            **({"state_sha256": state_sha256(self._weights)} if self._fingerprint else {}),
        }
        if params is not None:  # only then, so that the settings of 0.1 files still match
            every = dict(objective.model.named_parameters())
            self.settings["params"] = selection_attr(self.names, every)
        if self.operator != "hessian":  # only then, as for params
            self.settings["operator"] = self.operator

    def _choose_products(self) -> None:
        """The products of :attr:`operator` and :attr:`hvp` (``auto`` resolved), and
        :attr:`hvp_error`."""
        self.hvp_error: float | str = 0.0
        exact = ExactProducts(self, self.max_graph_bytes)
        self._products: ExactProducts | DifferenceProducts | GaussNewtonProducts = exact
        if self.operator == "ggn":
            self.hvp = "exact"
            self._products = GaussNewtonProducts(self)
        elif self.hvp != "exact":
            found = exact_or_reason(self, exact)
            if self.hvp == "fd" or isinstance(found, str):
                self.hvp = "fd"
                self._products = DifferenceProducts(self)
                self.hvp_error = measure_error(self, self._products, found)
            else:
                self.hvp = "exact"

    @property
    def graph_bytes(self) -> int:
        """Bytes of the gradient graphs kept between products (0 for ``fd`` and ``ggn``)."""
        return self._products.graph_bytes

    @property
    def size(self) -> int:
        """The number of differentiated weights (:attr:`num_params`)."""
        return self.num_params

    # -- data and state
    def _batches(self) -> Iterator[Any]:
        if self._data is not None:
            yield from self._data
            return
        for batch in self.objective.batches():
            yield _cast(batch, self.dtype)

    def _state(self, weights: Sequence[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The point with ``weights`` (default the operator's leaves) for the differentiated
        ones (fresh buffer copies in train mode)."""
        given = self._weights if weights is None else dict(zip(self.names, weights, strict=True))
        return self.objective.full_state({**self._point, **given})

    @torch.no_grad()
    def _loss_sums(self) -> tuple[torch.Tensor, int]:
        """Per-batch loss sums at the point (this rank's batches when the objective shards its
        data), float64 on the device, and the number of examples (all ranks), read once."""
        sums, local = [], 0
        for batch in self._batches():
            loss, count = self.objective.batch_sums(self._state(), batch, with_metrics=False)
            sums.append(loss["loss"].to(torch.float64))
            local += count
        count = torch.as_tensor(local, dtype=torch.float64, device=self.device)
        total = int(self.objective.all_reduce(count).item())
        if total == 0:
            raise ValueError("data is empty: expected at least one example")
        return torch.stack(sums), total

    # -- products
    def _hvp(self, vector: torch.Tensor) -> torch.Tensor:
        """``H @ vector`` for a flat vector in the operator's dtype, on its device; float64 out
        (batches are accumulated in float64, like the objective's values), or the operator's
        dtype for cached data in one batch on one rank (no float64 copy of the product)."""
        parts = list(unflatten(vector, self._weights, self.names).values())
        one = self._data is not None and len(self._data) == 1 and not self.objective.shard_data
        dtype = self.dtype if one else torch.float64  # one batch: nothing to add up
        total = torch.zeros(self.num_params, dtype=dtype, device=self.device)
        self._products.begin(vector)
        for index, batch in enumerate(self._batches()):
            self._products.add(index, batch, parts, total)
        self.num_hvps += 1
        return self.objective.all_reduce(total.detach())

    def matvec(self, v: torch.Tensor | Mapping[str, torch.Tensor]):
        """``H @ v`` for a flat vector (length :attr:`num_params`, order :attr:`names`) or a
        mapping ``{name: tensor}`` with exactly the operator's names.

        Returns:
            the same kind as ``v``, with its dtype and device.

        Raises:
            ValueError: wrong length or names.
            TypeError: ``v`` is neither a tensor nor a mapping.
        """
        if isinstance(v, torch.Tensor):
            if v.numel() != self.num_params:
                raise ValueError(f"expected a vector of {self.num_params} entries, got {v.numel()}")
            out = self._hvp(v.reshape(-1).to(self.device, self.dtype))
            return out.to(v.device, v.dtype).reshape(v.shape)
        if isinstance(v, Mapping):
            check_state(v, self._weights, name="v", against="the operator's weights")
            flat = flatten({n: v[n].to(self.device, self.dtype) for n in self.names}, self.names)
            out = unflatten(self._hvp(flat), self._weights, self.names)
            return {n: out[n].to(v[n].device, v[n].dtype) for n in self.names}
        raise TypeError(f"v must be a tensor or a mapping of tensors, got {type(v).__name__}")

    __matmul__ = matvec

    def float64(self) -> HessianOperator:
        """The same Hessian computed in float64 (itself when :attr:`dtype` is float64).

        Built once, on first use, from the objective and the point as given (not rounded to
        :attr:`dtype`), with the same weights and graph budget, and kept with this operator.
        Solvers verify their results with it. Its cost: float64 copies of the whole point
        (every tensor of the state: the model in float64, not only the differentiated
        weights), of the cached batches' floating tensors, graphs of its own within
        ``max_graph_bytes``, and one pass over the data to build it.
        """
        if self.dtype == torch.float64:
            return self
        if self._twin is None:
            self._twin = HessianOperator(
                self.objective,
                state=self._source,
                params=self.names,
                dtype=torch.float64,
                check_deterministic=False,
                max_graph_bytes=self.max_graph_bytes,
                hvp=self.hvp,
                operator=self.operator,
                fingerprint=self._fingerprint,
            )
        return self._twin

    def to_scipy(self) -> scipy.sparse.linalg.LinearOperator:
        """The operator as a scipy ``LinearOperator`` (float64 numpy vectors in and out)."""

        def apply(x: np.ndarray) -> np.ndarray:
            vector = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1))
            return self.matvec(vector.to(self.device)).cpu().numpy()

        n = self.num_params
        return scipy.sparse.linalg.LinearOperator(
            (n, n), matvec=apply, rmatvec=apply, dtype=np.float64
        )


def resolve_operator(
    source: Objective | HessianOperator | ShardedHessianOperator,
    state: Mapping[str, torch.Tensor] | None,
    params: ParamSelection,
    dtype: torch.dtype | None,
    hvp: options.HvpBackendName | None = None,
) -> HessianOperator | ShardedHessianOperator:
    """``source`` itself (an operator) or the Hessian of an Objective at ``state``
    (``dtype=None``: the model's dtype; ``hvp=None``: ``"exact"``). An FSDP2 model's
    Objective with ``hvp="fd"`` or ``"auto"`` gets a :class:`ShardedHessianOperator`
    (``"auto"`` cannot pick ``exact`` there); with ``"exact"`` it is refused."""
    if isinstance(source, (HessianOperator, ShardedHessianOperator)):
        if state is not None or params is not None or dtype is not None or hvp is not None:
            raise ValueError(
                "state, params, dtype and hvp are fixed when a HessianOperator is built; give "
                "them to HessianOperator(...) or pass the Objective instead"
            )
        return source
    if isinstance(source, Objective):
        backend = check_choice("exact" if hvp is None else hvp, options.HvpBackend, "hvp")
        if source.sharded == "FSDP2" and backend != "exact":
            return ShardedHessianOperator(source, state=state, params=params, dtype=dtype)
        chosen = cast(options.HvpBackendName, backend)
        return HessianOperator(source, state=state, params=params, dtype=dtype, hvp=chosen)
    raise TypeError(f"expected an Objective or a HessianOperator, got {type(source).__name__}")
