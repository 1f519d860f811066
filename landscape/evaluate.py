"""The objective: exact mean loss and metrics of a model over a data set, at any parameters.

The model is only ever *called* through :func:`torch.func.functional_call` with a
state we pass in, in a mode we set for the duration of the call and then restore, so
the caller's parameters, buffers and train/eval flags are the same afterwards.

Values are exact means over examples: every batch contributes its *sum* and its
example count, accumulated in float64, so ragged batches weigh what they should.

Speed and scale: :meth:`Objective.evaluate_points` evaluates K points per pass over a
batch (stacked states through ``vmap``; see :mod:`landscape._batched`), ``precision``
runs the model in TF32 or bfloat16 while sums stay float64, and ``shard_data`` splits
the batches across ``torch.distributed`` ranks with the sums all-reduced.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from . import distributed
from ._batched import (
    PRECISIONS,
    Precision,
    auto_points_per_pass,
    move_directions,
    precision_context,
    stack_points,
    state_bytes,
    upcast,
)
from .params import model_device_dtype, model_state

LossName = Literal["cross_entropy", "mse", "bce"]
MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
BatchLoss = Callable[[nn.Module, Any], tuple[torch.Tensor, int]]

__all__ = ["Objective", "as_batches", "LossName", "MetricFn", "BatchLoss", "Precision"]

DEFAULT_BATCH_SIZE = 1024
CPU_PROBE_SECONDS = 0.02  # a CPU point slower than this is evaluated one at a time
CPU_PROBE_POINTS = 8  # K tried on a CPU when a point is quicker


# ---------------------------------------------------------------- losses and metrics
def _cross_entropy_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets, reduction="sum")


def _mse_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of each example's mean squared error (so the mean over a data
    set equals ``F.mse_loss`` on the whole set)."""
    targets = targets.reshape(outputs.shape).to(outputs.dtype)
    per_example = outputs[0].numel() if outputs.dim() > 1 else 1
    return (outputs - targets).pow(2).sum() / per_example


def _bce_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    targets = targets.reshape(outputs.shape).to(outputs.dtype)
    return F.binary_cross_entropy_with_logits(outputs, targets, reduction="sum")


def accuracy_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Number of correct predictions in a batch: argmax for several logits, sign for one."""
    if outputs.dim() > 1 and outputs.shape[-1] > 1:
        predicted = outputs.argmax(dim=-1)
    else:
        predicted = (outputs.reshape(targets.shape) > 0).to(targets.dtype)
    return (predicted == targets).sum()


_LOSSES: dict[str, MetricFn] = {
    "cross_entropy": _cross_entropy_sum,
    "mse": _mse_sum,
    "bce": _bce_sum,
}


def _resolve_loss(loss: str | MetricFn) -> tuple[str, MetricFn]:
    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a callable, got {loss!r}")
        return loss, _LOSSES[loss]
    if isinstance(loss, nn.Module) and hasattr(loss, "reduction"):
        summing = copy.copy(loss)
        summing.reduction = "sum"
        return type(loss).__name__, summing
    if callable(loss):
        return getattr(loss, "__name__", type(loss).__name__), loss
    raise TypeError(f"loss must be a name or a callable, got {type(loss).__name__}")


# ---------------------------------------------------------------- data
def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def as_batches(data: Any, *, batch_size: int | None = None) -> Iterable[Any]:
    """Turn the forms of data the library accepts into an iterable of batches.

    Accepted: a ``DataLoader`` or any iterable of batches (used as is), a ``Dataset``
    (batched in order), or a tuple ``(inputs, targets)`` of tensors (sliced in order).

    Example:
        >>> xs, ys = torch.zeros(5, 2), torch.zeros(5, dtype=torch.long)
        >>> [len(b[1]) for b in as_batches((xs, ys), batch_size=2)]
        [2, 2, 1]
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    size = batch_size or DEFAULT_BATCH_SIZE
    is_pair = isinstance(data, tuple) and len(data) == 2
    if is_pair and all(isinstance(t, torch.Tensor) for t in data):
        inputs, targets = data
        if len(inputs) != len(targets):
            raise ValueError(
                "inputs and targets must have the same length, "
                f"got {len(inputs)} and {len(targets)}"
            )
        return [(inputs[i : i + size], targets[i : i + size]) for i in range(0, len(inputs), size)]
    if isinstance(data, torch.utils.data.DataLoader):
        return data
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        return torch.utils.data.DataLoader(data, batch_size=size, shuffle=False)
    if isinstance(data, Iterable):
        return data
    raise TypeError(
        "data must be a DataLoader, a Dataset, a tuple (inputs, targets) of tensors or an "
        f"iterable of (inputs, targets) batches, got {type(data).__name__}"
    )


@contextlib.contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Set every submodule's train/eval flag for a block, then restore each one exactly."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.train(training)
        yield
    finally:
        for m, flag in saved:
            m.training = flag


class _ClosureModule(nn.Module):
    """Lets ``functional_call`` reach a user's ``batch_loss(model, batch)`` closure."""

    def __init__(self, model: nn.Module, batch_loss: BatchLoss):
        super().__init__()
        self.model = model
        self._batch_loss = batch_loss

    def forward(self, batch: Any) -> tuple[torch.Tensor, int]:
        return self._batch_loss(self.model, batch)


# ---------------------------------------------------------------- the objective
class Objective:
    """Exact mean loss (and metrics) of ``model`` on ``data``, at any state.

    Args:
        model: the network; it is never modified. Its device and dtype are used.
        data: a DataLoader, Dataset, ``(inputs, targets)`` tuple, or iterable of batches.
        loss: ``"cross_entropy"``, ``"mse"``, ``"bce"`` (binary, logits), or a callable
            ``fn(outputs, targets) -> batch sum`` (an ``nn.Module`` loss with a
            ``reduction`` attribute is switched to ``"sum"`` for you).
        metrics: extra ``{name: fn(outputs, targets) -> batch sum}``; ``accuracy`` is added
            for ``cross_entropy`` and ``bce`` unless ``accuracy=False``.
        batch_loss: instead of ``loss``, a closure ``batch_loss(model, batch) ->
            (loss_sum, count)`` for models with unusual inputs or outputs.
        train_mode: evaluate in train mode (BatchNorm batch statistics); default eval.
        cache_data: move the batches to the device once and keep them (default); turn
            off for data that does not fit, and they are re-read every evaluation.
        batch_size: batch size used when ``data`` is a Dataset or a tensor tuple.
        precision: ``"fp32"`` (default), ``"tf32"`` (TensorFloat-32 matrix products on
            CUDA, global flags restored after each call; same as fp32 elsewhere) or
            ``"bf16"`` (autocast to bfloat16 on the device). Outputs are cast back to
            the model's dtype before the loss, and sums are accumulated in float64.
        points_per_pass: K, the number of points :meth:`evaluate_points` evaluates per
            pass over a batch. ``None`` chooses: on a CPU 1 (one point already runs near
            the matrix-product peak there) unless a point is quick and 8 points per pass
            measure faster (small MLPs); on CUDA from the size of the perturbed
            parameters, the activations of one batch and the free memory. Models that
            ``vmap`` cannot map (train-mode BatchNorm, dropout in train mode,
            data-dependent control flow, ``batch_loss`` closures) fall back to one point
            at a time with a warning.
        shard_data: under an initialized ``torch.distributed`` group, each rank keeps
            every ``world_size``-th batch and the sums are all-reduced, so every rank
            gets the value over the whole data. All ranks must then make the same calls.
            Without a group (or with one rank) it changes nothing.

    Example:
        >>> torch.manual_seed(0) and None
        >>> model = nn.Linear(3, 2)
        >>> data = (torch.randn(10, 3), torch.randint(0, 2, (10,)))
        >>> objective = Objective(model, data)
        >>> sorted(objective(objective.base_state))
        ['accuracy', 'loss']
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        *,
        loss: str | MetricFn = "cross_entropy",
        metrics: Mapping[str, MetricFn] | None = None,
        accuracy: bool | None = None,
        batch_loss: BatchLoss | None = None,
        train_mode: bool = False,
        cache_data: bool = True,
        batch_size: int | None = None,
        precision: Precision = "fp32",
        points_per_pass: int | None = None,
        shard_data: bool = False,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.device, self.dtype = model_device_dtype(model)
        self.train_mode = bool(train_mode)
        self.batch_loss = batch_loss
        if batch_loss is not None:
            if metrics:
                raise ValueError(
                    "metrics need outputs and targets; give either batch_loss or metrics"
                )
            self.loss_name, self._loss_fn = getattr(batch_loss, "__name__", "batch_loss"), None
            self._metrics: dict[str, MetricFn] = {}
        else:
            self.loss_name, self._loss_fn = _resolve_loss(loss)
            self._metrics = dict(metrics or {})
            if accuracy is None:
                classifying = (nn.CrossEntropyLoss, nn.BCEWithLogitsLoss)
                accuracy = self.loss_name in ("cross_entropy", "bce") or isinstance(
                    loss, classifying
                )
            if accuracy:
                self._metrics.setdefault("accuracy", accuracy_sum)
        if "loss" in self._metrics:
            raise ValueError("'loss' is reserved for the loss; give the metric another name")
        self.names: tuple[str, ...] = ("loss", *self._metrics)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision: Precision = precision
        if points_per_pass is not None:
            if isinstance(points_per_pass, bool) or not isinstance(points_per_pass, int):
                raise TypeError(
                    f"points_per_pass must be an int or None, got {type(points_per_pass).__name__}"
                )
            if points_per_pass < 1:
                raise ValueError(f"points_per_pass must be >= 1 or None, got {points_per_pass}")
        self.points_per_pass = points_per_pass
        self._auto_points: int | None = None
        self._vmap_ok = batch_loss is None
        self._entered = False
        self.shard_data = bool(shard_data) and distributed.world_size() > 1
        self._rank, self._world = (
            (distributed.rank(), distributed.world_size()) if self.shard_data else (0, 1)
        )
        self.base_state: dict[str, torch.Tensor] = model_state(model, "states")
        self._buffer_names = [name for name, _ in model.named_buffers()]
        self._source = as_batches(data, batch_size=batch_size)
        self.cache_data = bool(cache_data)
        self._cached = list(self._own(self._source)) if cache_data else None
        if self._cached is not None and not self._cached and not self.shard_data:
            raise ValueError("data is empty: expected at least one batch")
        self._num_examples: int | None = None
        self._copy: nn.Module | None = None
        self._copy_tensors: dict[str, torch.Tensor] | None = None

    # -- data
    def _own(self, source: Iterable[Any]) -> Iterator[Any]:
        for i, batch in enumerate(source):
            if i % self._world == self._rank:
                yield _to_device(batch, self.device)

    def batches(self) -> Iterator[Any]:
        """The evaluation batches, on the model's device, in a fixed order.

        With ``shard_data`` under a process group: this rank's share only (batches
        ``rank, rank + world_size, ...``).
        """
        if self._cached is not None:
            yield from self._cached
            return
        yield from self._own(self._source)

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks sharing the data, in place; returns it.

        A no-op without ``shard_data``. Code that loops over :meth:`batches` and adds up
        :meth:`batch_sums` (or gradients of them) calls this on its totals to get the
        value over the whole data; every rank must call it.
        """
        if self.shard_data:
            distributed.all_reduce_sum(tensor)
        return tensor

    @property
    def num_examples(self) -> int:
        """Number of examples in the evaluation set (all shards together)."""
        if self._num_examples is None:
            local = sum(self._count(b) for b in self.batches())
            count = torch.tensor(float(local), dtype=torch.float64, device=self.device)
            self._num_examples = int(self.all_reduce(count).item())
        return self._num_examples

    def _count(self, batch: Any) -> int:
        if self.batch_loss is not None:
            return int(self._call(self.base_state, batch)[1])
        return len(batch[1])

    def data_sha256(self) -> str:
        """A fingerprint of the evaluation data (every tensor's shape, dtype and bytes)."""
        h = hashlib.sha256()

        def feed(obj: Any) -> None:
            if isinstance(obj, torch.Tensor):
                t = obj.detach().cpu().contiguous()
                h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            elif isinstance(obj, Mapping):
                for k in sorted(obj):
                    h.update(str(k).encode())
                    feed(obj[k])
            elif isinstance(obj, (list, tuple)):
                for v in obj:
                    feed(v)
            else:
                h.update(repr(obj).encode())

        for batch in self.batches():
            feed(batch)
        return h.hexdigest()

    # -- evaluation
    def full_state(self, state: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """``state`` completed with the base state's entries for names it lacks."""
        if state is None:
            return dict(self.base_state)
        unknown = set(state) - set(self.base_state)
        if unknown:
            raise ValueError(
                f"state has names the model does not: {sorted(unknown)[:5]}; "
                f"expected names from model.state_dict()"
            )
        merged = dict(self.base_state)
        merged.update(state)
        if self.train_mode:  # train-mode BatchNorm writes its running stats: give it copies
            for name in self._buffer_names:
                merged[name] = merged[name].clone()
        return merged

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """The model's mode and the precision for a block; entered once for a whole pass
        over the data (nested entries cost nothing), restored on exit."""
        if self._entered:
            yield
            return
        with _mode(self.model, self.train_mode), precision_context(self.precision, self.device):
            self._entered = True
            try:
                yield
            finally:
                self._entered = False

    def _call(self, state: Mapping[str, torch.Tensor], batch: Any) -> Any:
        with self._evaluating():
            if self.batch_loss is not None:
                wrapper = _ClosureModule(self.model, self.batch_loss)
                prefixed = {f"model.{n}": t for n, t in state.items()}
                return functional_call(wrapper, prefixed, (batch,))
            inputs, _ = batch
            return functional_call(self.model, dict(state), (inputs,))

    def batch_sums(
        self, state: Mapping[str, torch.Tensor], batch: Any, *, with_metrics: bool = True
    ) -> tuple[dict[str, torch.Tensor], int]:
        """Per-batch sums of the loss (differentiable) and metrics, and the example count.

        ``state`` must be complete (see :meth:`full_state`).
        """
        if self.batch_loss is not None:
            loss_sum, count = self._call(state, batch)
            return {"loss": loss_sum}, int(count)
        outputs = upcast(self._call(state, batch), self.dtype)
        targets = batch[1]
        sums = {"loss": self._loss_fn(outputs, targets)}
        if with_metrics:
            with torch.no_grad():
                for name, fn in self._metrics.items():
                    sums[name] = torch.as_tensor(fn(outputs, targets))
        return sums, len(targets)

    def _own_copy(self) -> dict[str, torch.Tensor]:
        """The tensors (state_dict) of a private copy of the model, made once.

        Values are computed by writing a point into this copy in place and calling it:
        cheaper per point than building a new state for ``functional_call``, and the
        caller's model is never touched.
        """
        if self._copy_tensors is None:
            own = copy.deepcopy(self.model).train(self.train_mode).requires_grad_(False)
            self._copy = own
            self._copy_tensors = dict(own.state_dict(keep_vars=True))
        return self._copy_tensors

    def _copy_totals(self) -> tuple[torch.Tensor, int]:
        """This rank's float64 sums ``(len(names),)`` and example count, at the state
        written into the private copy."""
        totals = torch.zeros(len(self.names), dtype=torch.float64, device=self.device)
        count = 0
        with precision_context(self.precision, self.device):
            for batch in self.batches():
                if self.batch_loss is not None:
                    loss_sum, n = self.batch_loss(self._copy, batch)
                    totals += torch.as_tensor(loss_sum).detach().to(torch.float64)
                else:
                    inputs, targets = batch
                    outputs = upcast(self._copy(inputs), self.dtype)
                    sums = [self._loss_fn(outputs, targets)]
                    sums += [torch.as_tensor(fn(outputs, targets)) for fn in self._metrics.values()]
                    totals += torch.stack([v.reshape(()).to(torch.float64) for v in sums])
                    n = len(targets)
                count += int(n)
        return totals, count

    def _write_copy(self, full: Mapping[str, torch.Tensor]) -> None:
        for name, tensor in self._own_copy().items():
            tensor.copy_(full[name])

    def _means(self, totals: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """All-reduce ``(..., names)`` sums and ``(...)`` counts together; return means."""
        packed = self.all_reduce(torch.cat([totals.reshape(-1), counts.reshape(-1)]))
        totals, counts = packed[: totals.numel()].view_as(totals), packed[totals.numel() :]
        if bool((counts == 0).any()):
            raise ValueError("data is empty: expected at least one example")
        self._num_examples = int(counts[0].item())
        return totals / counts.view(*counts.shape, *([1] * (totals.dim() - 1)))

    @torch.no_grad()
    def __call__(self, state: Mapping[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Exact means of the loss and metrics at ``state`` (default: the model's own).

        Names the state lacks take the model's values, so a state of weights alone works.
        """
        self._write_copy(self.full_state(state))
        totals, count = self._copy_totals()
        counts = torch.tensor([float(count)], dtype=torch.float64, device=self.device)
        means = self._means(totals.unsqueeze(0), counts)[0].tolist()
        return dict(zip(self.names, means, strict=True))

    # -- many points
    def resolve_points_per_pass(self) -> int:
        """K, as given or as chosen for this model, data and device (see the class doc).

        The automatic choice on CUDA runs one forward pass on the first batch to measure
        its activation memory (it resets the device's peak-memory statistics).
        """
        if self.points_per_pass is not None:
            return self.points_per_pass
        if self._auto_points is None:
            if not self._vmap_ok:
                self._auto_points = 1
            elif self.device.type != "cuda":
                self._auto_points = self._faster_on_cpu()
            else:
                self._auto_points = auto_points_per_pass(
                    self.device, self._perturbable_bytes(), self._activation_bytes()
                )
        return self._auto_points

    @torch.no_grad()
    def _faster_on_cpu(self) -> int:
        """K on a CPU: 1, unless one point is quick (under CPU_PROBE_SECONDS) and
        CPU_PROBE_POINTS points per pass measure faster per point, as for small MLPs whose
        passes are dominated by fixed costs (convolutions batched by vmap are slower)."""
        full = self.full_state(None)
        zero = [{n: torch.zeros_like(t) for n, t in full.items() if t.is_floating_point()}]
        start = time.perf_counter()
        self._one_point_totals(full, zero, np.zeros((1, 1)))
        one = time.perf_counter() - start
        if one > CPU_PROBE_SECONDS:
            return 1
        k = CPU_PROBE_POINTS
        try:
            self._batched_totals(full, zero, np.zeros((k, 1)))  # warm-up
            start = time.perf_counter()
            self._batched_totals(full, zero, np.zeros((k, 1)))
        except (RuntimeError, ValueError, TypeError, NotImplementedError):
            return 1
        return k if (time.perf_counter() - start) / k < 0.8 * one else 1

    def _perturbable_bytes(self) -> int:
        return state_bytes({n: t for n, t in self.base_state.items() if t.is_floating_point()})

    @torch.no_grad()
    def _activation_bytes(self) -> int:
        batch = next(iter(self.batches()), None)
        if batch is None:
            return 1
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        self.batch_sums(self.full_state(None), batch)
        torch.cuda.synchronize(self.device)
        return int(torch.cuda.max_memory_allocated(self.device) - before)

    def _batched_totals(
        self,
        base: Mapping[str, torch.Tensor],
        directions: list[dict[str, torch.Tensor]],
        coords: np.ndarray,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's float64 sums ``(K, len(names))`` and counts ``(K,)`` for K points
        at once: stacked states through ``vmap(functional_call)``."""
        stacked = stack_points(base, directions, torch.from_numpy(coords))
        fixed = {n: t for n, t in base.items() if n not in stacked}
        model, loss_fn, metrics = self.model, self._loss_fn, list(self._metrics.values())

        def point_sums(perturbed: dict[str, torch.Tensor], inputs: Any, targets: Any):
            outputs = functional_call(model, {**fixed, **perturbed}, (inputs,))
            outputs = upcast(outputs, self.dtype)
            sums = [loss_fn(outputs, targets)]
            sums += [torch.as_tensor(fn(outputs, targets)) for fn in metrics]
            return torch.stack([v.reshape(()).to(torch.float64) for v in sums])

        mapped = vmap(point_sums, in_dims=(0, None, None), randomness="error")
        totals = torch.zeros(len(coords), len(self.names), dtype=torch.float64, device=self.device)
        count = 0
        with self._evaluating():
            for batch in self.batches():
                inputs, targets = batch
                totals += mapped(stacked, inputs, targets)
                count += len(targets)
        counts = torch.full((len(coords),), float(count), dtype=torch.float64, device=self.device)
        return totals, counts

    def _one_point_totals(
        self,
        base: Mapping[str, torch.Tensor],
        directions: list[dict[str, torch.Tensor]],
        coords: np.ndarray,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One point at a time, written in place into the private copy: each perturbed
        tensor is reset to ``base`` and the nonzero ``c_j d_j`` added, so a point with all
        coordinates 0 is ``base`` exactly."""
        totals = torch.zeros(len(coords), len(self.names), dtype=torch.float64, device=self.device)
        counts = torch.zeros(len(coords), dtype=torch.float64, device=self.device)
        self._write_copy(base)
        tensors = self._copy_tensors
        directions = [{n: t for n, t in d.items() if bool(t.any())} for d in directions]
        moved = list(dict.fromkeys(n for d in directions for n in d))
        # train-mode BatchNorm updates its running stats in the copy: reset them per point
        reset = [n for n in self._buffer_names if n not in moved] if self.train_mode else []
        for k, point in enumerate(coords.tolist()):
            for name in moved + reset:
                tensors[name].copy_(base[name])
            for coef, direction in zip(point, directions, strict=True):
                if coef != 0:
                    for name, d in direction.items():
                        tensors[name].add_(d, alpha=coef)
            totals[k], count = self._copy_totals()
            counts[k] = float(count)
        return totals, counts

    @torch.no_grad()
    def evaluate_points(
        self,
        base: Mapping[str, torch.Tensor],
        directions: Sequence[Mapping[str, torch.Tensor]],
        coords: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Exact means at the points ``base + sum_j coords[k, j] * directions[j]``.

        Points are evaluated K at a time (see ``points_per_pass``). A point with all
        coordinates 0 always goes the one-point way, so it gives exactly the value at
        ``base`` whatever K. With K > 1 the stacked states equal the one-point states bit
        for bit, and the values agree with the one-point path to float32 rounding
        (batched kernels sum in another order).

        Args:
            base: the centre state (names it lacks take the model's values).
            directions: one state per coordinate column.
            coords: array ``(num_points, len(directions))``.

        Returns:
            ``{name: array (num_points,)}`` for the loss and every metric.
        """
        coords = np.asarray(coords, dtype=np.float64).reshape(len(coords), len(directions))
        if len(coords) == 0:
            return {name: np.empty(0) for name in self.names}
        full = self.full_state(base)
        moved = move_directions(directions, full)
        totals = torch.zeros(len(coords), len(self.names), dtype=torch.float64, device=self.device)
        counts = torch.zeros(len(coords), dtype=torch.float64, device=self.device)
        k = self.resolve_points_per_pass()
        # the centre goes the one-point way, so it is the checkpoint's value to the last bit
        centre = ~coords.any(axis=1)
        order = np.concatenate([np.flatnonzero(centre), np.flatnonzero(~centre)])
        start = 0
        while start < len(order):
            one_at_a_time = k == 1 or not self._vmap_ok or centre[order[start]]
            stop = start + 1 if centre[order[start]] else len(order)
            stop = stop if one_at_a_time else min(stop, start + k)
            part = torch.from_numpy(order[start:stop]).to(self.device)
            points = coords[order[start:stop]]
            if not one_at_a_time:
                # always K points per pass (the last one repeated), so that a point's value
                # does not depend on how many others share its pass: a resumed run equals one
                # never interrupted
                padded = np.concatenate([points, points[-1:].repeat(k - len(points), axis=0)])
                try:
                    sums, num = self._batched_totals(full, moved, padded)
                    totals[part], counts[part] = sums[: len(points)], num[: len(points)]
                except torch.cuda.OutOfMemoryError:
                    k = max(1, k // 2)
                    self._auto_points = k
                    warnings.warn(
                        f"out of memory with {stop - start} points per pass; trying {k}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
                except (RuntimeError, ValueError, TypeError, NotImplementedError) as err:
                    self._vmap_ok = False
                    warnings.warn(
                        "evaluating one point at a time: this model cannot be evaluated at "
                        f"several points per pass with torch.func.vmap ({str(err)[:200]})",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
            else:
                totals[part], counts[part] = self._one_point_totals(full, moved, points)
            start = stop
        means = self._means(totals, counts).cpu().numpy()
        return {name: means[:, i] for i, name in enumerate(self.names)}
