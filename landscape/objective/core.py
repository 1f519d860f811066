"""The :class:`Objective` class: options, data, re-pointing, values at one state."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import distributed, options
from ..checks import check_choice
from ..data import LABEL_KEYS, EvaluationData, split_batch
from ..losses import (
    LossReduction,
    MetricFn,
    as_batch_sum,
    is_classification,
    resolve_accuracy,
    resolve_count,
    resolve_loss,
)
from ..params import model_device_dtype, model_state, tied_names
from .calling import BatchLoss, Calling, Precision, State
from .checks import Checks
from .layouts import check_layout, tensors_problem, unprefixed, unwrap
from .points import Points
from .sharded import check_options, is_base, not_at_base, points_in_place, reshard, sharded_layout
from .workspace import Workspace


class Objective(Calling, Checks, Points):
    """Exact mean loss (and metrics) of ``model`` on ``data``, at any state.

    Args:
        model: the network; it is never modified. Its device and dtype are used. Its
            tensors are the :attr:`base_state` as they are (not copied): change the model
            and the objective's values follow. A ``DistributedDataParallel`` wrapper is
            unwrapped; sharded layouts (FSDP, DTensor parameters, DeepSpeed ZeRO-3, a
            ``device_map`` over several devices) are refused (see
            ``landscape.objective.layouts``).
        data: a DataLoader, Dataset, ``(inputs, targets)`` tuple, iterable of batches
            (pairs, or mappings such as ``{"input_ids", "attention_mask", "labels"}``), or
            an :class:`~landscape.data.EvaluationData` already prepared (then used as it
            is: not moved or fingerprinted again; ``batch_size``, ``cache_data`` and
            ``shard_data`` come from it).
        loss: ``"cross_entropy"``, ``"mse"``, ``"bce"`` (binary, logits), ``"causal_lm"``
            (next-token cross-entropy, labels shifted inside), ``"token_ce"`` (labels
            aligned with the logits), or a callable ``fn(outputs, targets) -> batch sum``
            (an ``nn.Module`` loss with a ``reduction`` attribute is switched to ``"sum"``
            for you). The token losses are means over every non-ignored token of the data
            (see :mod:`landscape.losses`).
        loss_reduction: whether a callable ``loss`` of your own returns the batch
            ``"sum"`` or the batch ``"mean"`` (multiplied by the batch's example count).
            ``"auto"`` (default) tells them apart on the first batch (from its value on
            the batch and on its two halves), warns when it finds a mean, and refuses
            when it cannot tell. Built-in names and ``nn.Module`` losses are sums.
        metrics: extra ``{name: fn(outputs, targets) -> batch sum}``, divided by the same
            count as the loss (tokens for the token losses); ``accuracy`` is added for
            ``cross_entropy``, ``bce`` and the token losses (next-token accuracy) unless
            ``accuracy=False``.
        label_keys: the keys of a mapping batch that hold labels: they go to the loss, and
            the other keys to the model.
        batch_loss: instead of ``loss``, a closure ``batch_loss(model, batch) ->
            (loss_sum, count)`` for models with unusual inputs or outputs.
        train_mode: evaluate in train mode (BatchNorm batch statistics); default eval.
        cache_data: move the batches to the device once and keep them (default); turn
            off for data that does not fit, and they are re-read every evaluation (then
            a ``DataLoader(..., pin_memory=True)`` lets each copy to a GPU run without
            holding up the host).
        batch_size: batch size used when ``data`` is a Dataset or a tensor tuple.
        precision: ``"fp32"`` (default), ``"tf32"`` (TensorFloat-32 matrix products on
            CUDA, global flags restored after each call; same as fp32 elsewhere) or
            ``"bf16"`` (autocast to bfloat16 on the device). Outputs are cast back to
            the model's dtype before the loss, and sums are accumulated in float64.
        points_per_pass: K, the number of points :meth:`evaluate_points` evaluates per
            pass over a batch. ``None`` chooses without timing anything, so the same model
            and machine always get the same K (and the same values): 1 on a CPU (batching
            points was never faster there for any model measured); on CUDA from the size
            of the perturbed parameters, the activations of one batch and the free
            memory. Models that ``vmap`` cannot map (train-mode BatchNorm, dropout in
            train mode, data-dependent control flow, ``batch_loss`` closures) fall back to
            one point at a time with a warning.
        shard_data: under an initialized ``torch.distributed`` group, each rank keeps
            every ``world_size``-th batch and the sums are all-reduced, so every rank
            gets the value over the whole data. All ranks must then make the same calls.
            Without a group (or with one rank) it changes nothing.
        seed: the model's random draws (Dropout in train mode) come from it: the global
            generator is reseeded with it before each batch and restored after, so equal
            calls give equal values and the caller's random stream does not move.
        allow_nonfinite: go on when the model's tensors or the first batch hold NaN or
            inf (a buffer may hold inf); by default they are refused at construction,
            naming the tensor (one read of the device; see :mod:`landscape._finite`).

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
        loss_reduction: LossReduction = "auto",
        metrics: Mapping[str, MetricFn] | None = None,
        accuracy: bool | None = None,
        label_keys: Sequence[str] = LABEL_KEYS,
        batch_loss: BatchLoss | None = None,
        train_mode: bool = False,
        cache_data: bool = True,
        batch_size: int | None = None,
        precision: Precision = "fp32",
        points_per_pass: int | None = None,
        shard_data: bool = False,
        seed: int = 0,
        allow_nonfinite: bool = False,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        model = unwrap(model)  # DDP: the module inside, not DDP's hooks
        check_layout(model)  # sharded layouts: refused before any work
        self.sharded = sharded_layout(model)  # "FSDP2", "tensor parallel" or None
        if self.sharded:
            reshard(model)  # its own parameters (FSDP2's root keeps gathered ones)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be in 0 .. 2**63 - 1, got {seed}")
        self.seed = int(seed)
        self.model = model
        self.device, self.dtype = model_device_dtype(model)
        self.train_mode = bool(train_mode)
        self.batch_loss = batch_loss
        self.label_keys = (label_keys,) if isinstance(label_keys, str) else tuple(label_keys)
        self._count_fn = resolve_count(loss)
        if batch_loss is not None:
            if metrics:
                raise ValueError(
                    "metrics need outputs and targets; give either batch_loss or metrics"
                )
            self.loss_name, self._loss_fn = getattr(batch_loss, "__name__", "batch_loss"), None
            self._metrics: dict[str, MetricFn] = {}
        else:
            self.loss_name, self._loss_fn = resolve_loss(loss)
            self._metrics = dict(metrics or {})
            if accuracy is None:
                accuracy = is_classification(loss)
            if accuracy:
                self._metrics.setdefault("accuracy", resolve_accuracy(loss))
        if "loss" in self._metrics:
            raise ValueError("'loss' is reserved for the loss; give the metric another name")
        self.names: tuple[str, ...] = ("loss", *self._metrics)
        self.precision: Precision = check_choice(precision, options.Precision, "precision")
        if points_per_pass is not None:
            if isinstance(points_per_pass, bool) or not isinstance(points_per_pass, int):
                raise TypeError(
                    f"points_per_pass must be an int or None, got {type(points_per_pass).__name__}"
                )
            if points_per_pass < 1:
                raise ValueError(f"points_per_pass must be >= 1 or None, got {points_per_pass}")
        self.points_per_pass = points_per_pass
        if isinstance(data, EvaluationData):
            if data.device != self.device:
                raise ValueError(
                    f"the EvaluationData is on {data.device}, the model on {self.device}; "
                    "prepare the data for the model's device"
                )
            if batch_size is not None or not cache_data or shard_data:
                raise ValueError(
                    "batch_size, cache_data and shard_data come from the EvaluationData; "
                    "set them when preparing it"
                )
            self.data = data
        else:
            self.data = EvaluationData(
                data, device=self.device, batch_size=batch_size, cache=cache_data,
                shard=shard_data,
            )  # fmt: skip
        self.cache_data = self.data.cached
        self.shard_data = self.data.sharded
        if self.sharded:
            check_options(self)
        self.base_state: dict[str, torch.Tensor] = model_state(model, "states", copy=False)
        self._tied = tied_names(model)
        self._buffer_names = [n for n, _ in model.named_buffers() if n in self.base_state]
        # non-persistent buffers (not in state_dict): copied for each train-mode call
        self._extra_buffers = {n: b for n, b in model.named_buffers() if n not in self.base_state}
        self._num_examples: int | None = None
        self._work = Workspace(model, self.train_mode)
        self._work.vmap_ok = batch_loss is None and not self.sharded
        if self.sharded:
            self._work.module = model  # evaluated in place, never copied
        self.allow_nonfinite = bool(allow_nonfinite)
        if not self.allow_nonfinite:
            self._check_finite()
        self.loss_reduction = self._resolve_reduction(loss, loss_reduction)
        if self._loss_fn is not None:
            self._loss_fn = as_batch_sum(self._loss_fn, self.loss_reduction)
        if isinstance(loss, str) and loss in ("cross_entropy", "mse") and batch_loss is None:
            self._work.check_targets = True  # on the first outputs, at no extra pass
            if self.shard_data:
                self._check_targets()

    # -- re-pointing
    def at(self, state: State | nn.Module) -> Objective:
        """This objective (model, data, loss, options, private module) around another state.

        The new Objective's :attr:`base_state` is ``state`` (a checkpoint of the same
        architecture, as a state_dict or a model), cast to the model's devices and dtypes
        (tensors that need no cast are used as they are, not copied); names it lacks keep
        this objective's values. Nothing is deep-copied, moved or fingerprinted again, so
        one Objective serves many checkpoints. A sharded model's Objective takes only the
        model's own state (its ``state_dict()``, as a Tracker logs): it returns itself.

        Raises:
            ValueError: names the model lacks, or shapes that differ.

        Example:
            >>> model = nn.Linear(2, 1)
            >>> objective = Objective(model, (torch.ones(4, 2), torch.zeros(4, 1)), loss="mse")
            >>> zero = {"weight": torch.zeros(1, 2), "bias": torch.zeros(1)}
            >>> objective.at(zero)()["loss"], objective.at(zero).data is objective.data
            (0.0, True)
        """
        if self.sharded:  # only at the model's own state (a Tracker's model.state_dict())
            own = unwrap(state).state_dict() if isinstance(state, nn.Module) else state
            if not is_base(self, own):
                raise ValueError(not_at_base(self.sharded))
            return self
        if isinstance(state, nn.Module):
            state = unwrap(state)
            check_layout(state)
            state = state.state_dict()
        state = unprefixed(state, self.base_state)
        problem = tensors_problem(state.items())
        if problem:
            raise ValueError(problem)
        full = self.full_state(state)  # checks the names
        base = {}
        for name, ref in self.base_state.items():
            t = full[name]
            if tuple(t.shape) != tuple(ref.shape):
                raise ValueError(
                    f"state {name!r} has shape {tuple(t.shape)}, the model's has {tuple(ref.shape)}"
                )
            base[name] = t.detach().to(device=ref.device, dtype=ref.dtype)
        other = copy.copy(self)
        other.base_state = base
        return other

    # -- data
    def batches(self) -> Iterator[Any]:
        """The evaluation batches, on the model's device, in a fixed order.

        With ``shard_data`` under a process group: this rank's share only (batches
        ``rank, rank + world_size, ...``).
        """
        return iter(self.data)

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
        """Number of examples in the evaluation set (all shards together): what the means
        divide by, so the number of non-ignored tokens for the token losses."""
        if self._num_examples is None:
            local = sum(self._count(b) for b in self.batches())
            count = torch.tensor(float(local), dtype=torch.float64, device=self.device)
            self._num_examples = int(self.all_reduce(count).item())
        return self._num_examples

    def _count(self, batch: Any) -> int:
        if self.batch_loss is not None:
            with torch.no_grad():
                return int(self._call(self.full_state(None), batch)[1])
        return self._count_fn(split_batch(batch, self.label_keys)[1])

    def data_sha256(self) -> str:
        """A fingerprint of the evaluation data (every tensor's shape, dtype and bytes),
        computed once per :class:`~landscape.data.EvaluationData` and kept."""
        return self.data.sha256()

    def _to_totals(self, parts: list[torch.Tensor], num_points: int) -> torch.Tensor:
        """Float64 sums ``(num_points, len(names))`` from the batch sums of as many passes
        (``[loss, *metrics]`` per batch): each name's column is stacked in its own dtype
        and converted to float64 (exact; one stack of mixed dtypes would round integer
        counts through float32, and a stack into a float64 output is a slow path), and
        the batches added."""
        width = len(self.names)
        if not parts:
            return torch.zeros(num_points, width, dtype=torch.float64)
        if width == 1:  # the loss alone: one stack
            return torch.stack(parts).to(torch.float64).view(num_points, -1).sum(1, keepdim=True)
        columns = [torch.stack(parts[i::width]).to(torch.float64) for i in range(width)]
        return torch.stack(columns, dim=1).view(num_points, -1, width).sum(dim=1)

    @torch.no_grad()
    def __call__(
        self,
        state: State | None = None,
        *,
        batches: Iterable[Any] | None = None,
        on_device: bool = False,
    ) -> dict[str, Any]:
        """Exact means of the loss and metrics at ``state`` (default: the base state).

        Names the state lacks take the base state's values, so a state of weights alone
        works.

        Args:
            state: the point.
            batches: evaluate over these batches instead of the objective's data (on the
                device; with ``shard_data`` this rank's share): a chunk of
                :meth:`batches`, or another :class:`~landscape.data.EvaluationData`
                (held-out data, say).
            on_device: return float64 0-dim tensors on the device instead of floats: no
                read from the device (a sync on a GPU), for callers that evaluate many
                times and read once. Token counts are then not checked for zero.
        """
        if self.sharded:
            if not is_base(self, state):
                raise ValueError(not_at_base(self.sharded))
            at = points_in_place(self, None, [], np.zeros((1, 0)), batches=batches,
                                 on_device=on_device)  # fmt: skip
            return {n: v[0] if on_device else float(v[0]) for n, v in at.items()}
        work = self._work
        work.ensure()
        work.bind(self.full_state(state))
        if isinstance(batches, Iterator):
            batches = list(batches)  # passed over twice if the model turns out to draw

        def run(seeded: bool) -> tuple[list[torch.Tensor], int | torch.Tensor]:
            parts: list[torch.Tensor] = []
            count = self._copy_pass(self.data if batches is None else batches, parts, seeded)
            return parts, count

        parts, count = self._seeded_if_drawing(run)
        totals = self._to_totals(parts, 1)
        means = self._means(totals, [count], keep_count=batches is None, on_device=on_device)[0]
        return dict(zip(self.names, means if on_device else means.tolist(), strict=True))

    def _means(
        self,
        totals: torch.Tensor,
        counts: list[int | torch.Tensor],
        *,
        keep_count: bool = True,
        on_device: bool = False,
    ) -> torch.Tensor:
        """All-reduce ``(points, names)`` sums and the points' counts together; return means
        (one sync, to check the counts; none ``on_device``, where only counts known on the
        host are checked)."""
        host_counts = all(isinstance(c, int) for c in counts)
        if host_counts:
            counts_t = torch.tensor(counts, dtype=torch.float64, device=totals.device)
        else:
            counts_t = torch.stack(
                [torch.as_tensor(c, dtype=torch.float64, device=totals.device) for c in counts]
            )
        if self.shard_data:
            packed = self.all_reduce(torch.cat([totals.reshape(-1), counts_t]))
            totals, counts_t = packed[: totals.numel()].view_as(totals), packed[totals.numel() :]
        if on_device:
            host = counts if host_counts and not self.shard_data else []
        else:
            host = counts_t.tolist()
        if any(c == 0 for c in host):
            raise ValueError("data is empty: expected at least one example")
        if keep_count and not on_device:
            self._num_examples = int(host[0])
        return totals / counts_t.view(-1, 1)
