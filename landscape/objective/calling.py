"""Calling the model: at a state through :func:`torch.func.functional_call`, with its
train/eval flags, precision, seeded random draws and attention kernel set for the call and
restored afterwards; a batch's sums from the outputs (:meth:`Objective.output_sums`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import torch
from torch import nn
from torch.func import functional_call

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # torch < 2.3: the fused kernels are left as they are
    sdpa_kernel = None

from .. import options
from ..checks import check_choice
from ..data import call_model, split_batch
from ..options import PrecisionName, values
from ..params import merge_tied
from .sharded import call_at_base, not_differentiable

BatchLoss = Callable[[nn.Module, Any], tuple[torch.Tensor, int]]
State = Mapping[str, torch.Tensor]
Precision = PrecisionName  # the Literal alias of landscape.options.Precision
PRECISIONS = values(options.Precision)
T = TypeVar("T")


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Run a block in the requested precision, restoring every global flag afterwards.

    - ``fp32``: nothing changes.
    - ``tf32``: on CUDA, float32 matrix products and convolutions may use TensorFloat-32
      (``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32``
      set for the block and restored); elsewhere the same as ``fp32``.
    - ``bf16``: :func:`torch.autocast` to bfloat16 on the device.
    """
    if precision == "fp32":
        yield
    elif precision == "tf32":
        if device.type != "cuda":
            yield
            return
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    elif precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        check_choice(precision, options.Precision, "precision")


def upcast(outputs: object, dtype: torch.dtype) -> object:
    """Reduced-precision floating outputs back to ``dtype`` so losses are computed in it."""
    if isinstance(outputs, torch.Tensor) and outputs.dtype in (torch.bfloat16, torch.float16):
        return outputs.to(dtype)
    return outputs


def prediction(outputs: Any) -> Any:
    """What the loss and metrics take from a model's outputs: ``.logits`` of a Hugging Face
    ``ModelOutput`` or a dict (its first value without ``logits``), the first element of a
    tuple or list, the outputs themselves otherwise.

    Example:
        >>> prediction({"logits": torch.ones(1), "loss": None}), prediction((torch.zeros(1),))
        (tensor([1.]), tensor([0.]))
    """
    if isinstance(outputs, torch.Tensor):  # the usual case, tested first: once per batch
        return outputs
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


def _generator_states(device: torch.device) -> list[torch.Tensor]:
    """The states of the global generators :func:`_seeded` forks: the CPU's and a CUDA
    ``device``'s (read on the host: no sync)."""
    states = [torch.default_generator.get_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


def _set_generator_states(states: list[torch.Tensor], device: torch.device) -> None:
    torch.default_generator.set_state(states[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states[1], device)


_FIRST_ORDER = contextvars.ContextVar("landscape_first_order", default=False)


@contextlib.contextmanager
def first_order_only() -> Iterator[None]:
    """A block whose gradients are never differentiated again (finite-difference
    Hessian-vector products): the model's attention keeps the kernel the caller selected."""
    token = _FIRST_ORDER.set(True)
    try:
        yield
    finally:
        _FIRST_ORDER.reset(token)


def _attention_for_gradients() -> contextlib.AbstractContextManager:
    """``scaled_dot_product_attention`` through its math kernel while gradients are being
    recorded: the fused kernels (flash, memory-efficient) have no second derivative, and
    Hessian-vector products need one. Without gradients, or inside
    :func:`first_order_only`, nothing changes."""
    if sdpa_kernel is None or not torch.is_grad_enabled() or _FIRST_ORDER.get():
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


class Calling:
    """The Objective's ways of calling the model (a mixin of :class:`Objective`)."""

    # -- one batch
    def output_sums(
        self, outputs: Any, targets: Any, *, with_metrics: bool = True
    ) -> list[torch.Tensor]:
        """A batch's sums from the model's outputs: ``[loss, *metrics]`` in the order of
        :attr:`names` (only the loss without metrics), in the outputs' dtype.

        The one place where losses and metrics are applied: every evaluation path (the
        private copy, ``functional_call``, K points through ``vmap``) goes through it.
        Metrics are computed without gradients. ``outputs`` may be a ``ModelOutput``, a
        dict or a tuple (see :func:`prediction`). The first outputs an Objective sees
        have their targets checked (class labels in range, see ``Checks``).
        """
        outputs = upcast(prediction(outputs), self.dtype)
        if self._work.check_targets:
            self._check_outputs(outputs, targets)
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

    def check_differentiable(self) -> None:
        """Refuse, before any work, a model that ``functional_call`` cannot evaluate at
        another state: a sharded one (FSDP2, tensor parallel; see
        :mod:`landscape.objective.sharded`). Called by :meth:`batch_sums`, the Hessian and
        the sharpness measures."""
        if self.sharded:
            raise ValueError(not_differentiable(self.sharded))

    def _call(self, state: State, batch: Any) -> Any:
        if self.sharded:  # the model itself, at its own state, without gradients
            return call_at_base(self, state, batch)
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
        without a sync; read it once at the end). A sharded model is refused (see
        :meth:`check_differentiable`).
        """
        self.check_differentiable()
        if self.batch_loss is not None:
            loss_sum, count = self._call(state, batch)
            return {"loss": loss_sum}, int(count)
        targets = split_batch(batch, self.label_keys)[1]
        sums = self.output_sums(self._call(state, batch), targets, with_metrics=with_metrics)
        return dict(zip(self.names, sums, strict=False)), self._count_fn(targets)

    def batch_outputs(self, state: State, batch: Any) -> tuple[torch.Tensor, Any]:
        """A batch's predictions (what the loss takes, see :func:`prediction`, in the
        model's dtype) and targets, by calling the model at ``state`` as
        :meth:`batch_sums` does (Gauss-Newton products differentiate the two apart).

        Raises:
            ValueError: the objective has a ``batch_loss`` closure (no outputs to take).
        """
        if self.batch_loss is not None:
            raise ValueError("expected an objective with a loss, got a batch_loss closure")
        targets = split_batch(batch, self.label_keys)[1]
        outputs: torch.Tensor = upcast(prediction(self._call(state, batch)), self.dtype)
        return outputs, targets

    # -- values through the private copy
    def _seeded_if_drawing(self, run: Callable[[bool], T]) -> T:
        """``run(seeded)``: passes of the private copy whose random draws come from the seed,
        without a fork of the generators per batch for a model that draws nothing.

        A model in train mode (Dropout) or seen drawing runs ``run(True)``: every batch
        under :func:`_seeded`. Any other runs ``run(False)``, unforked, between two reads
        of the generators' states (on the host, once per call, not per point or batch);
        if they moved, the model drew after all: the caller's states are put back, the
        model is marked as drawing, and ``run(True)`` gives the seeded values. So the
        values are those of seeded passes either way, and the caller's streams never
        move. ``run`` must be repeatable (it writes its points again).
        """
        work = self._work
        if work.draws:
            return run(True)
        before = _generator_states(self.device)
        result = run(False)
        after = _generator_states(self.device)
        if all(torch.equal(a, b) for a, b in zip(before, after, strict=True)):
            return result
        _set_generator_states(before, self.device)
        work.draws = True
        return run(True)

    def _copy_pass(
        self, batches: Iterable[Any], parts: list[torch.Tensor], seeded: bool
    ) -> int | torch.Tensor:
        """One pass of the private copy over ``batches`` at the state written into it: the
        batch sums are appended to ``parts`` (converted to float64 later, all at once);
        returns this rank's example count (a tensor for token counts). ``seeded``: each
        batch's draws from the seed (see :meth:`_seeded_if_drawing`)."""
        module, count = self._work.module, 0
        # fp32 changes no flag: no context entered per pass and point
        plain = self.precision == "fp32"
        with contextlib.nullcontext() if plain else precision_context(self.precision, self.device):
            for batch in batches:
                if self.batch_loss is not None:
                    with _seeded(self.seed, self.device) if seeded else contextlib.nullcontext():
                        loss_sum, n = self.batch_loss(module, batch)
                    parts.append(torch.as_tensor(loss_sum).detach().reshape(()))
                    n = int(n)
                else:
                    inputs, targets = split_batch(batch, self.label_keys)
                    if seeded:
                        with _seeded(self.seed, self.device):
                            outputs = call_model(module, inputs)
                    else:
                        outputs = call_model(module, inputs)
                    parts += self.output_sums(outputs, targets)
                    n = self._count_fn(targets)
                count = count + n
        return count
