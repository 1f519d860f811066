"""The Objective: exact mean loss and metrics of a model over a data set, at any point.

Values are exact means over examples: every batch contributes its *sum* and its example
count, and the sums are accumulated in float64, so ragged batches weigh what they should.
For the token losses (``causal_lm``, ``token_ce``) the count is the batch's number of
non-ignored tokens, kept on the device until the end of a pass: the mean is over every
token of the data. A batch's sums (the loss and every metric) are computed by one method,
:meth:`Objective.output_sums`, whichever way the model was called.

Batches are ``(inputs, targets)`` pairs or mappings (Hugging Face style), split by
:func:`~landscape.data.split_batch`: the model is called as ``model(**inputs)`` without
the label keys, and the labels go to the loss. From an output that is not a tensor the
loss takes ``.logits`` (a ``ModelOutput`` or dict) or the first element (a tuple).

How the model is called. The caller's model is never written to, and its train/eval flags
are the same afterwards:

- values at a point (``objective(state)`` and :meth:`Objective.evaluate_points` one point
  per pass) run a *private module* (``landscape._workspace``): the model's module
  tree, made once and shared by every Objective made from this one with
  :meth:`Objective.at`, whose tensors point at the state evaluated (nothing is copied).
  A point is written into a perturbed copy of the tensors its directions move, and
  nothing else: the extra memory of a surface is the directions and that copy, so a
  landscape along a few LoRA tensors of a large model costs little beyond the model;
- differentiable sums (:meth:`Objective.batch_sums`, used by the Hessian and the sharpness
  measures) and K points per pass call the caller's model through
  :func:`torch.func.functional_call` with the state passed in (stacked states through
  ``vmap`` for K points, see :mod:`landscape._batched`), with its train/eval flags set for
  the call and restored afterwards.

Data are prepared once by :class:`~landscape.data.EvaluationData` (device cache,
fingerprint, sharding over ``torch.distributed`` ranks with the sums all-reduced).
``precision`` runs the model in TF32 or bfloat16 while sums stay float64.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # torch < 2.3: the fused kernels are left as they are
    sdpa_kernel = None

from . import distributed, options
from ._batched import (
    Precision,
    auto_points_per_pass,
    move_directions,
    precision_context,
    stack_points,
    state_bytes,
    upcast,
)
from ._finite import nonfinite_problem
from ._workspace import PointPlan, Workspace
from .checks import check_choice
from .data import LABEL_KEYS, EvaluationData, call_model, split_batch
from .losses import (
    LossReduction,
    MetricFn,
    as_batch_sum,
    declared_reduction,
    detect_reduction,
    is_classification,
    resolve_accuracy,
    resolve_count,
    resolve_loss,
)
from .params import (
    end_index,
    merge_tied,
    model_device_dtype,
    model_state,
    tied_names,
)

BatchLoss = Callable[[nn.Module, Any], tuple[torch.Tensor, int]]
State = Mapping[str, torch.Tensor]

__all__ = ["BatchLoss", "Objective", "prediction"]


def prediction(outputs: Any) -> Any:
    """What the loss and metrics take from a model's outputs: ``.logits`` of a Hugging Face
    ``ModelOutput`` or a dict (its first value without ``logits``), the first element of a
    tuple or list, the outputs themselves otherwise.

    Example:
        >>> prediction({"logits": torch.ones(1), "loss": None}), prediction((torch.zeros(1),))
        (tensor([1.]), tensor([0.]))
    """
    if isinstance(outputs, Mapping):  # a ModelOutput is an OrderedDict of its set fields
        return outputs["logits"] if "logits" in outputs else next(iter(outputs.values()))
    if isinstance(outputs, (tuple, list)):
        return outputs[0]
    return outputs


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


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The model's random draws (Dropout) from ``seed``: the global generators of the CPU
    and of a CUDA ``device`` are forked for the block, so the caller's stream never moves."""
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _attention_for_gradients() -> contextlib.AbstractContextManager:
    """``scaled_dot_product_attention`` through its math kernel while gradients are being
    recorded: the fused kernels (flash, memory-efficient) have no second derivative, and
    Hessian-vector products need one. Without gradients nothing changes."""
    if sdpa_kernel is None or not torch.is_grad_enabled():
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def _functional_call(model: nn.Module, state: dict[str, torch.Tensor], inputs: Any) -> Any:
    """``model`` called at ``state`` on ``inputs`` (keyword inputs for a mapping)."""
    if isinstance(inputs, Mapping):
        return functional_call(model, state, (), dict(inputs))
    return functional_call(model, state, (inputs,))


class _ClosureModule(nn.Module):
    """Lets ``functional_call`` reach a user's ``batch_loss(model, batch)`` closure."""

    def __init__(self, model: nn.Module, batch_loss: BatchLoss):
        super().__init__()
        self.model = model
        self._batch_loss = batch_loss

    def forward(self, batch: Any) -> tuple[torch.Tensor, int]:
        return self._batch_loss(self.model, batch)


class Objective:
    """Exact mean loss (and metrics) of ``model`` on ``data``, at any state.

    Args:
        model: the network; it is never modified. Its device and dtype are used. Its
            tensors are the :attr:`base_state` as they are (not copied): change the model
            and the objective's values follow.
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
        self.base_state: dict[str, torch.Tensor] = model_state(model, "states", copy=False)
        self._tied = tied_names(model)
        self._buffer_names = [n for n, _ in model.named_buffers() if n in self.base_state]
        # non-persistent buffers (not in state_dict): copied for each train-mode call
        self._extra_buffers = {n: b for n, b in model.named_buffers() if n not in self.base_state}
        self._num_examples: int | None = None
        self._work = Workspace(model, self.train_mode)
        self._work.vmap_ok = batch_loss is None
        self.allow_nonfinite = bool(allow_nonfinite)
        if not self.allow_nonfinite:
            self._check_finite()
        self.loss_reduction = self._resolve_reduction(loss, loss_reduction)
        if self._loss_fn is not None:
            self._loss_fn = as_batch_sum(self._loss_fn, self.loss_reduction)
        if isinstance(loss, str) and loss in ("cross_entropy", "mse") and batch_loss is None:
            self._check_targets()

    def _check_finite(self) -> None:
        """Refuse NaN or inf in the base state or this rank's first batch (all ranks)."""
        batch = next(iter(self.data), None)
        problem = nonfinite_problem(self.base_state, buffers=self._buffer_names, batch=batch)
        if self.shard_data:
            problem = next((p for p in distributed.all_gather_objects(problem) if p), None)
        if problem:
            raise ValueError(problem)

    def _check_targets(self) -> None:
        """Refuse integer targets a built-in loss would misread, seen on the first batch
        (one sync, at construction): class labels out of the outputs' range for
        ``cross_entropy``, class labels for ``mse``. Every rank sharing the data checks
        its own first batch and all raise together."""
        problem = self._target_problem()
        if self.shard_data:
            problem = next((p for p in distributed.all_gather_objects(problem) if p), None)
        if problem:
            raise ValueError(problem)

    def _target_problem(self) -> str | None:
        batch = next(iter(self.data), None)
        if batch is None:
            return None
        targets = split_batch(batch, self.label_keys)[1]
        if not isinstance(targets, torch.Tensor) or targets.is_floating_point():
            return None
        if targets.dtype == torch.bool:
            return None
        with torch.no_grad():
            outputs = prediction(self._call(self.full_state(None), batch))
        if not isinstance(outputs, torch.Tensor):
            return None
        if self.loss_name == "mse":
            if targets.numel() == outputs.numel():
                return None
            return (
                f"loss 'mse' needs targets shaped like the outputs {tuple(outputs.shape)}, "
                f"got integer targets of shape {tuple(targets.shape)} (class labels?); use "
                "loss 'cross_entropy' (CLI: --loss cross_entropy) for class labels"
            )
        labels = targets[targets != -100]  # F.cross_entropy's ignore_index
        if outputs.dim() < 2 or targets.is_complex() or labels.numel() == 0:
            return None
        num_classes = outputs.shape[1]
        low, high = labels.aminmax()
        low, high = int(low), int(high)
        if 0 <= low and high < num_classes:
            return None
        return (
            f"class labels must lie in 0 .. {num_classes - 1} for a model with {num_classes} "
            f"outputs; the first batch has labels {low} .. {high} (max label {high}). Check "
            "the model's number of classes and the labels (or -100 to ignore an example)"
        )

    def _resolve_reduction(self, loss: str | MetricFn, reduction: LossReduction) -> str:
        """``"sum"`` or ``"mean"``: as declared, known, or detected on the first batch
        (on every rank sharing the data, which must agree)."""
        if self.batch_loss is not None:
            if reduction != "auto":
                raise ValueError(
                    "loss_reduction applies to loss; a batch_loss closure returns (loss_sum, count)"
                )
            return "sum"
        known = declared_reduction(loss, reduction)
        if known is not None:
            return known
        outcome = self._detect_reduction()
        if self.shard_data:
            found = {str(o): o for o in distributed.all_gather_objects(outcome) if o is not None}
            outcome = next(iter(found.values()), None)
            if len(found) > 1:
                outcome = ValueError(
                    f"the ranks disagree on whether loss {self.loss_name!r} returns the batch "
                    f"sum or mean ({sorted(found)}); declare it with loss_reduction"
                )
        if outcome is None:
            raise ValueError("data is empty: expected at least one batch")
        if isinstance(outcome, ValueError):
            raise outcome
        if outcome == "mean":
            warnings.warn(
                f"loss {self.loss_name!r} returns the batch mean (found on the first batch); "
                "it is multiplied by each batch's example count. Declare loss_reduction='mean' "
                "(CLI: --loss-reduction mean) to skip this check",
                UserWarning,
                stacklevel=3,
            )
        return outcome

    def _detect_reduction(self) -> str | ValueError | None:
        """:func:`~landscape.losses.detect_reduction` on this rank's first batch, at the
        base state (its error, to be raised on every rank; None without a batch)."""
        batch = next(iter(self.data), None)
        if batch is None:
            return None
        with torch.no_grad():
            outputs = upcast(prediction(self._call(self.full_state(None), batch)), self.dtype)
        targets = split_batch(batch, self.label_keys)[1]
        try:
            return detect_reduction(self._loss_fn, outputs, targets, name=self.loss_name)
        except ValueError as err:
            return err

    # -- re-pointing
    def at(self, state: State | nn.Module) -> Objective:
        """This objective (model, data, loss, options, private module) around another state.

        The new Objective's :attr:`base_state` is ``state`` (a checkpoint of the same
        architecture, as a state_dict or a model), cast to the model's devices and dtypes
        (tensors that need no cast are used as they are, not copied); names it lacks keep
        this objective's values. Nothing is deep-copied, moved or fingerprinted again, so
        one Objective serves many checkpoints.

        Raises:
            ValueError: names the model lacks, or shapes that differ.

        Example:
            >>> model = nn.Linear(2, 1)
            >>> objective = Objective(model, (torch.ones(4, 2), torch.zeros(4, 1)), loss="mse")
            >>> zero = {"weight": torch.zeros(1, 2), "bias": torch.zeros(1)}
            >>> objective.at(zero)()["loss"], objective.at(zero).data is objective.data
            (0.0, True)
        """
        if isinstance(state, nn.Module):
            state = state.state_dict()
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

    # -- one batch
    def output_sums(
        self, outputs: Any, targets: Any, *, with_metrics: bool = True
    ) -> list[torch.Tensor]:
        """A batch's sums from the model's outputs: ``[loss, *metrics]`` in the order of
        :attr:`names` (only the loss without metrics), in the outputs' dtype.

        The one place where losses and metrics are applied: every evaluation path (the
        private copy, ``functional_call``, K points through ``vmap``) goes through it.
        Metrics are computed without gradients. ``outputs`` may be a ``ModelOutput``, a
        dict or a tuple (see :func:`prediction`).
        """
        outputs = upcast(prediction(outputs), self.dtype)
        sums = [self._loss_fn(outputs, targets)]
        if with_metrics and self._metrics:
            with torch.no_grad():
                sums += [torch.as_tensor(fn(outputs, targets)) for fn in self._metrics.values()]
        return [s if s.dim() == 0 else s.reshape(()) for s in sums]

    def full_state(self, state: State | None) -> dict[str, torch.Tensor]:
        """``state`` completed with the base state's entries for names it lacks.

        A tied tensor is one entry, under its first name (as in :attr:`base_state`);
        ``state`` may hold it under any of its names (see
        :func:`landscape.params.merge_tied`).

        Raises:
            ValueError: names the model's ``state_dict`` lacks, or different values for
                the names of one tied tensor.
        """
        if state is None:
            merged = dict(self.base_state)
        else:
            state = merge_tied(state, self._tied)
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
        work = self._work
        if work.entered:
            yield
            return
        with _mode(self.model, self.train_mode), precision_context(self.precision, self.device):
            work.entered = True
            try:
                yield
            finally:
                work.entered = False

    def _call(self, state: State, batch: Any) -> Any:
        if self.train_mode and self._extra_buffers:  # the model may write them: give it copies
            state = {**{n: b.clone() for n, b in self._extra_buffers.items()}, **state}
        with self._evaluating(), _attention_for_gradients(), _seeded(self.seed, self.device):
            if self.batch_loss is not None:
                wrapper = _ClosureModule(self.model, self.batch_loss)
                prefixed = {f"model.{n}": t for n, t in state.items()}
                return functional_call(wrapper, prefixed, (batch,))
            inputs, _ = split_batch(batch, self.label_keys)
            return _functional_call(self.model, dict(state), inputs)

    def batch_sums(
        self, state: State, batch: Any, *, with_metrics: bool = True
    ) -> tuple[dict[str, torch.Tensor], int | torch.Tensor]:
        """Per-batch sums of the loss (differentiable) and metrics, and the example count,
        by calling the model through ``functional_call`` at ``state``.

        ``state`` must be complete (see :meth:`full_state`); its tensors may require
        gradients (the Hessian and the sharpness measures differentiate these sums). The
        count is an int, or for the token losses a 0-dim tensor on the device (added up
        without a sync; read it once at the end).
        """
        if self.batch_loss is not None:
            loss_sum, count = self._call(state, batch)
            return {"loss": loss_sum}, int(count)
        targets = split_batch(batch, self.label_keys)[1]
        sums = self.output_sums(self._call(state, batch), targets, with_metrics=with_metrics)
        return dict(zip(self.names, sums, strict=False)), self._count_fn(targets)

    # -- values through the private copy
    def _copy_pass(self, batches: Iterable[Any], parts: list[torch.Tensor]) -> int | torch.Tensor:
        """One pass of the private copy over ``batches`` at the state written into it: the
        batch sums are appended to ``parts`` (converted to float64 later, all at once);
        returns this rank's example count (a tensor for token counts)."""
        module, count = self._work.module, 0
        with precision_context(self.precision, self.device):
            for batch in batches:
                if self.batch_loss is not None:
                    with _seeded(self.seed, self.device):
                        loss_sum, n = self.batch_loss(module, batch)
                    parts.append(torch.as_tensor(loss_sum).detach().reshape(()))
                    n = int(n)
                else:
                    inputs, targets = split_batch(batch, self.label_keys)
                    with _seeded(self.seed, self.device):
                        outputs = call_model(module, inputs)
                    parts += self.output_sums(outputs, targets)
                    n = self._count_fn(targets)
                count = count + n
        return count

    def _to_totals(self, parts: list[torch.Tensor], num_points: int) -> torch.Tensor:
        """Float64 sums ``(num_points, len(names))`` from the batch sums of as many passes:
        every part is converted to float64 (one operation) and the batches added."""
        if not parts:
            return torch.zeros(num_points, len(self.names), dtype=torch.float64)
        packed = torch.empty(len(parts), dtype=torch.float64, device=parts[0].device)
        torch.stack(parts, out=packed)
        return packed.view(num_points, -1, len(self.names)).sum(dim=1)

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
        work = self._work
        work.ensure()
        work.bind(self.full_state(state))
        parts: list[torch.Tensor] = []
        count = self._copy_pass(self.data if batches is None else batches, parts)
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

    # -- many points
    def resolve_points_per_pass(self) -> int:
        """K, as given or as chosen for this model, data and device (see the class doc):
        the same for the same model and machine, never found by timing.

        The automatic choice on CUDA runs one forward pass on the first batch to measure
        its activation memory (it resets the device's peak-memory statistics).
        """
        if self.points_per_pass is not None:
            return self.points_per_pass
        work = self._work
        if work.auto_points is None:
            if not work.vmap_ok or self.device.type != "cuda":
                work.auto_points = 1
            else:
                work.auto_points = auto_points_per_pass(
                    self.device, self._perturbable_bytes(), self._activation_bytes()
                )
        return work.auto_points

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
        base: State,
        directions: list[dict[str, torch.Tensor]],
        coords: np.ndarray,
        ends: list[dict[str, torch.Tensor] | None] | None,
    ) -> tuple[torch.Tensor, int | torch.Tensor]:
        """This rank's float64 sums ``(K, len(names))`` and example count for K points at
        once: stacked states through ``vmap(functional_call)``."""
        stacked = stack_points(base, directions, torch.from_numpy(coords), ends=ends)
        fixed = {n: t for n, t in base.items() if n not in stacked}
        model = self.model

        def point_sums(perturbed: dict[str, torch.Tensor], inputs: Any, targets: Any):
            outputs = _functional_call(model, {**fixed, **perturbed}, inputs)
            return torch.stack([s.to(torch.float64) for s in self.output_sums(outputs, targets)])

        mapped = vmap(point_sums, in_dims=(0, None, None), randomness="error")
        totals = torch.zeros(len(coords), len(self.names), dtype=torch.float64, device=self.device)
        count: int | torch.Tensor = 0
        with self._evaluating():
            for batch in self.batches():
                inputs, targets = split_batch(batch, self.label_keys)
                totals += mapped(stacked, inputs, targets)
                count = count + self._count_fn(targets)
        return totals, count

    def _one_point_plan(
        self,
        base: State,
        directions: list[dict[str, torch.Tensor]],
        ends: list[dict[str, torch.Tensor] | None] | None,
    ) -> PointPlan:
        """Where the one-point path writes points, for these tensors.

        Kept for the next call with the same tensors (same objects, not modified in place
        since: their version counters are part of the key), as when a surface evaluates
        chunk after chunk along the same directions.
        """
        work = self._work
        work.ensure()
        states = (base, *directions, *(e for e in ends or () if e is not None))
        tensors = [t for state in states for t in state.values()]
        key = tuple((name, id(t), t._version) for state in states for name, t in state.items()) + (
            len(directions),
            end_index(ends, len(directions)),
        )
        if work.plan is not None and work.plan[0] == key:
            return work.plan[2]
        work.plan = None  # free the old buffers before making new ones
        plan = PointPlan(base, directions, ends, work)
        # The tensors are held with the key: an id is unique only while its object lives,
        # and a freed direction's id is often given to the next one made.
        work.plan = (key, tensors, plan)
        return plan

    def _one_point_totals(
        self, plan: PointPlan, coords: np.ndarray, parts: list[torch.Tensor]
    ) -> list[int | torch.Tensor]:
        """One point at a time through the private module; batch sums are appended to
        ``parts``; returns the counts."""
        work = self._work
        work.bind(plan.bindings)
        counts = []
        for point in coords.tolist():
            plan.write(point)
            counts.append(self._copy_pass(self.data, parts))
        return counts

    @torch.no_grad()
    def evaluate_points(
        self,
        base: State,
        directions: Sequence[State],
        coords: np.ndarray,
        *,
        ends: Sequence[State | None] | None = None,
        on_device: bool = False,
    ) -> dict[str, Any]:
        """Exact means at the points ``base + sum_j coords[k, j] * directions[j]``.

        Points are formed as :func:`landscape.params.point_state` forms them, and
        evaluated K at a time (see ``points_per_pass``). A point with all coordinates 0
        always goes the one-point way, so it gives exactly the value at ``base`` whatever
        K. With K > 1 the stacked states equal the one-point states bit for bit, and the
        values agree with the one-point path to float32 rounding (batched kernels sum in
        another order).

        Args:
            base: the centre state (names it lacks take the base state's values).
            directions: one state per coordinate column.
            coords: array ``(num_points, len(directions))``.
            ends: for an interpolation, the end state of its direction (and None for the
                others; at most one is set): then ``directions[j]`` must be ``ends[j] -
                base`` and the point at coordinate 1 is ``ends[j]`` bit for bit (at 0,
                ``base``), where ``base + 1 * (end - base)`` is not ``end`` in floating
                point.
            on_device: return float64 tensors on the device instead of arrays, read
                nothing back (see :meth:`__call__`).

        Returns:
            ``{name: array (num_points,)}`` for the loss and every metric.

        Raises:
            ValueError: unknown names, more than one end, or a direction that is not
                its end minus the base.
        """
        coords = np.asarray(coords, dtype=np.float64).reshape(len(coords), len(directions))
        if len(coords) == 0:
            empty = torch.empty(0, dtype=torch.float64, device=self.device)
            return {name: empty if on_device else np.empty(0) for name in self.names}
        full = self.full_state(base)
        moved = move_directions([merge_tied(d, self._tied) for d in directions], full)
        j_end = end_index(ends, len(directions))
        moved_ends = None
        if j_end is not None:
            end = merge_tied(ends[j_end], self._tied)  # type: ignore[index]
            missing = set(moved[j_end]) - set(end)
            if missing:
                raise ValueError(
                    f"the end state lacks names its direction moves: {sorted(missing)[:5]}"
                )
            moved_ends = [None] * len(directions)
            moved_ends[j_end] = {n: end[n].to(full[n]) for n in moved[j_end]}
            names = list(moved[j_end])
            agree = torch.stack(
                [((moved_ends[j_end][n] - full[n]) == moved[j_end][n]).all() for n in names]
            ).tolist()  # one read for all tensors
            for name, ok in zip(names, agree, strict=True):
                if not ok:
                    raise ValueError(
                        f"direction {j_end} must be its end state minus the base state (an "
                        f"interpolation from the base to the end); {name!r} is not"
                    )
        rows: list[torch.Tensor | None] = [None] * len(coords)
        counts: list[int | torch.Tensor] = [0] * len(coords)
        k = self.resolve_points_per_pass()
        # the centre goes the one-point way, so it is the checkpoint's value to the last bit
        centre = ~coords.any(axis=1)
        order = np.concatenate([np.flatnonzero(centre), np.flatnonzero(~centre)])
        plan = None
        start = 0
        while start < len(order):
            work = self._work
            one_at_a_time = k == 1 or not work.vmap_ok or centre[order[start]]
            stop = start + 1 if centre[order[start]] else len(order)
            stop = stop if one_at_a_time else min(stop, start + k)
            part = order[start:stop]
            points = coords[part]
            if not one_at_a_time:
                # always K points per pass (the last one repeated), so that a point's value
                # does not depend on how many others share its pass: a resumed run equals one
                # never interrupted
                padded = np.concatenate([points, points[-1:].repeat(k - len(points), axis=0)])
                try:
                    sums, num = self._batched_totals(full, moved, padded, moved_ends)
                except torch.cuda.OutOfMemoryError:
                    k = max(1, k // 2)
                    work.auto_points = k
                    warnings.warn(
                        f"out of memory with {stop - start} points per pass; trying {k}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
                except (RuntimeError, ValueError, TypeError, NotImplementedError) as err:
                    work.vmap_ok = False
                    warnings.warn(
                        "evaluating one point at a time: this model cannot be evaluated at "
                        f"several points per pass with torch.func.vmap ({str(err)[:200]})",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
                for i, flat in enumerate(part):
                    rows[flat], counts[flat] = sums[i], num
            else:
                if plan is None:
                    plan = self._one_point_plan(full, moved, moved_ends)
                parts: list[torch.Tensor] = []
                nums = self._one_point_totals(plan, points, parts)
                sums = self._to_totals(parts, len(points))
                for i, flat in enumerate(part):
                    rows[flat], counts[flat] = sums[i], nums[i]
            start = stop
        totals = torch.stack(rows).to(self.device)  # type: ignore[arg-type]
        means = self._means(totals, counts, on_device=on_device)
        if not on_device:
            means = means.cpu().numpy()
        return {name: means[:, i] for i, name in enumerate(self.names)}
