"""The :class:`Tracker`: logs measures from the user's own training loop (see
:mod:`landscape.tracking`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checks import check_count
from ..directions import random_direction
from ..distributed import alone, broadcast_object, rank
from ..hessian import HessianOperator
from ..hessian.sharded import ShardedHessianOperator
from ..objective import BatchLoss, Objective
from ..objective.sharded import sharded_layout
from ..optim import StabilityGuard, optimizer_threshold
from ..sharpness import MEASURES, SharpnessResult, WarmStart, check_settings, sharpness
from ..storage.tracking import append_tracking_rows, prepare_tracking
from .eigenvalues import EIGENVALUES, VERIFY_EVERY, log_eigenvalue, log_operator
from .run import TrackingRun, load_tracking

#: The tracker's own measures (``lambda_max`` and ``trace`` are the sharpness measures of
#: those names); any other name of ``landscape.sharpness.MEASURES`` works too.
TRACKED = ("loss", "accuracy", "lambda_max", "lambda_min", "trace", "slice")

#: Default cadence of the trace, in logs: ``trace_every = TRACE_EVERY * every``.
TRACE_EVERY = 10

#: Default Hutch++ products of the trace at each of its logs.
NUM_PROBES = 30

__all__ = ["TRACKED", "Tracker"]


def _taker(name: str) -> str:
    """The registry measure whose settings ``name`` takes."""
    return "lambda_max" if name == "lambda_min" else name


class Tracker:
    """Logs loss, curvature and sharpness measures of a model during training.

    Args:
        data: the data the measures are computed on (any form an
            :class:`~landscape.objective.Objective` takes); moved to the device once.
        objective: instead of ``data`` and the loss options, an
            :class:`~landscape.objective.Objective` of the same architecture (its data,
            loss and options are used; each log re-points it at the model's weights).
        path: landscape HDF5 file to append to (see the module docstring; rank 0 only,
            other ranks keep theirs in memory); ``None`` keeps the logs in memory only.
        write_every: with ``path``, append the logs to the file this many at a time (one
            rewrite of the file for all; a killed run loses at most ``write_every - 1``
            logs); :meth:`flush` and :attr:`run` write those held now.
        every: log steps that are multiples of ``every``.
        measures: names from :data:`TRACKED` or sharpness measure names.
        loss, loss_reduction, batch_loss, batch_size: as for
            :class:`~landscape.objective.Objective` (``batch_loss`` for models with unusual
            inputs or outputs; Hugging Face dict batches and outputs need none); ``None``
            is the Objective's default.
        lr: the learning rate, stored as a setting (plots draw ``2 / lr`` beside
            ``lambda_max``).
        seed: seeds the trace probes, the slice direction, cold Lanczos starts and the
            sharpness measures; the same at every log.
        num_probes: Hutch++ products of ``trace`` at each of its logs.
        trace_every: compute ``trace`` at the steps that are multiples of this (a
            multiple of ``every``; default ``10 * every``); NaN at the other logs.
        tol, max_hvps: Lanczos tolerance (relative to ``||H||``; default
            :data:`~landscape.tracking.eigenvalues.TOL`, 1e-2, for ``lambda_max`` of
            float32 and lower models, else 1e-4, and 1e-8 for
            float64 ones) and product budget for each eigenvalue; each eigenvalue is
            logged with its residual ``||H v - lambda v||`` as ``<measure>_residual``.
        verify_every: compute that residual with a float64 product at the steps that are
            multiples of this (a multiple of ``every``; default ``10 * every``), and with
            one in float32 at the others (its round-off: ``1e-7 ||H||`` on the digits
            MLP; no float64 copy of the model and data). Float64 and lower-precision
            models are checked in float64 at every log.
        warm_start: start Lanczos from the previous log's eigenvector.
        slice_x: coordinates of the slice.
        progress: show progress bars inside :meth:`log` (off: a training loop's own
            output stays readable).
        optimizer: the training loop's optimizer (read, never changed): the preconditioner
            of ``preconditioned_sharpness`` and the thresholds; recorded by class name.
        guard: a :class:`~landscape.optim.StabilityGuard` given each measure and its
            threshold after every log.
        **measure_settings: settings of the sharpness measures (``rho``, ``num_samples``,
            ``params``, ...).

    Raises:
        ValueError: an unknown measure, a setting no chosen measure takes, ``every < 1``,
            a ``trace_every`` that is not a multiple of ``every``, both or neither of
            ``data`` and ``objective``, or loss options beside an ``objective``.

    Example:
        >>> import torch
        >>> data = (torch.randn(32, 3, dtype=torch.float64), torch.randint(0, 2, (32,)))
        >>> model = nn.Linear(3, 2).double()
        >>> tracker = Tracker(data, every=2, measures=["loss", "lambda_max"])
        >>> [tracker.log(model, step) is None for step in range(3)]
        [False, True, False]
        >>> tracker.run.steps.tolist()
        [0, 2]
    """

    def __init__(
        self,
        data: Any = None,
        *,
        objective: Objective | None = None,
        path: str | os.PathLike | None = None,
        write_every: int = 1,
        every: int = 1,
        measures: Sequence[str] = ("loss", "lambda_max"),
        loss: Any = None,
        loss_reduction: str | None = None,
        batch_loss: BatchLoss | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        seed: int = 0,
        num_probes: int = NUM_PROBES,
        trace_every: int | None = None,
        verify_every: int | None = None,
        tol: float | None = None,
        max_hvps: int = 300,
        warm_start: bool = True,
        slice_x: Sequence[float] = tuple(np.linspace(-1, 1, 21)),
        progress: bool = False,
        optimizer: torch.optim.Optimizer | None = None,
        guard: StabilityGuard | None = None,
        **measure_settings: Any,
    ):
        measures = [measures] if isinstance(measures, str) else list(measures)
        if not measures or len(set(measures)) != len(measures):
            raise ValueError(f"measures must be distinct names, got {measures}")
        unknown = [m for m in measures if m not in TRACKED and m not in MEASURES]
        if unknown:
            raise ValueError(
                f"unknown measures {unknown}; expected names from {list(TRACKED)} or "
                f"landscape.sharpness.MEASURES"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        trace_every = TRACE_EVERY * every if trace_every is None else trace_every
        verify_every = VERIFY_EVERY * every if verify_every is None else verify_every
        for name, cadence in (("trace_every", trace_every), ("verify_every", verify_every)):
            if check_count(cadence, name) % every:
                raise ValueError(f"expected {name} a multiple of every ({every}), got "
                                 f"{cadence}")  # fmt: skip
        options = {"loss": loss, "loss_reduction": loss_reduction,
                   "batch_loss": batch_loss, "batch_size": batch_size}  # fmt: skip
        self._options = {k: v for k, v in options.items() if v is not None}
        if (data is None) == (objective is None):
            raise ValueError("expected data or an objective, got "
                             f"{'both' if objective is not None else 'neither'}")  # fmt: skip
        if objective is not None:
            if not isinstance(objective, Objective):
                raise TypeError(f"expected a landscape Objective for objective, got "
                                f"{type(objective).__name__}")  # fmt: skip
            if self._options:
                raise ValueError(f"expected the loss options of the objective, got "
                                 f"{sorted(self._options)} beside it; set them on the "
                                 "Objective")  # fmt: skip
        if "preconditioned_sharpness" in measures and optimizer is None:
            raise ValueError("expected optimizer= for preconditioned_sharpness, got none")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"expected a torch optimizer, got {type(optimizer).__name__}")
        if guard is not None and not isinstance(guard, StabilityGuard):
            raise TypeError(f"expected a StabilityGuard for guard, got {type(guard).__name__}")
        # the registry's measures (lambda_min: lambda_max's Lanczos), each given the
        # settings it takes
        curvature = [m for m in measures if m in MEASURES or m == "lambda_min"]
        takers = list(dict.fromkeys(_taker(m) for m in curvature))
        if measure_settings and not takers:
            raise ValueError(f"settings {sorted(measure_settings)} are for sharpness measures; "
                             "none is among the measures")  # fmt: skip
        own = {"seed": seed, "tol": tol, "max_hvps": max_hvps, "num_probes": num_probes}
        check_settings(["lambda_max", "trace"], own)
        check_settings(takers, {"seed": seed, **measure_settings})
        self._routed = {
            name: {k: v for k, v in {**own, **measure_settings}.items()
                   if v is not None and k in MEASURES[_taker(name)].defaults}
            for name in curvature
        }  # fmt: skip
        if "preconditioned_sharpness" in self._routed:
            self._routed["preconditioned_sharpness"]["optimizer"] = optimizer
        if "batch_sharpness" in self._routed and lr is not None:
            self._routed["batch_sharpness"].setdefault("lr", lr)
        self.optimizer, self.guard = optimizer, guard
        self._warm = {m: WarmStart() for m in ("lambda_max", "lambda_min") if warm_start}
        self.data = data if objective is None else objective.data
        self.path, self.every, self.measures, self.progress = path, every, measures, bool(progress)
        self.trace_every, self.verify_every = trace_every, verify_every
        self._settings: dict[str, Any] = {
            "measures": measures, "every": every, "lr": lr, "seed": seed,
            "num_probes": num_probes, "tol": tol, "max_hvps": max_hvps,
            "warm_start": warm_start, "slice_x": [float(v) for v in slice_x],
            **({"optimizer": type(optimizer).__name__} if optimizer is not None else {}),
            # recorded where it differs from version 0.2's trace at every log, so that
            # 0.2 files continue with trace_every=every
            **({"trace_every": trace_every} if trace_every != every else {}),
            # recorded where it is not the default (0.2 files continue with it)
            **({"verify_every": verify_every} if verify_every != VERIFY_EVERY * every else {}),
            **measure_settings,
        }  # fmt: skip
        self._given = objective
        self._objective: Objective | None = None
        self._last: int | None = None
        self._checked = False  # whether the loss was found deterministic (first log)
        self.write_every = check_count(write_every, "write_every")
        self._pending: list[tuple[int, dict[str, Any], dict[str, float]]] = []  # to write
        self._rows: list[tuple[int, dict[str, Any], dict[str, float]]] = []

    _writes = property(lambda self: self.path is not None and rank() == 0)  # rank 0 writes

    @property
    def shards_data(self) -> bool:
        """Whether its objective keeps a share of the data on each rank (then :meth:`log`
        is collective; see :meth:`collective`)."""
        return self._given is not None and self._given.shard_data

    def collective(self, model: nn.Module) -> bool:
        """Whether :meth:`log` of ``model`` is collective under torchrun: every rank must
        call it at the same steps when the objective shards the data or the model is
        sharded (FSDP2, tensor parallel): its measures are sums over the ranks. Else each
        rank that calls it computes every measure alone, with no collective, so one rank
        may log by itself (rank 0 alone writes the file).

        Example:
            >>> Tracker((torch.randn(4, 2), torch.randn(4, 1))).collective(nn.Linear(2, 1))
            False
        """
        return self.shards_data or sharded_layout(model) is not None

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting, with the loss, data fingerprint and model size after the first log."""
        return dict(self._settings)

    def _start(self, model: nn.Module) -> Objective:
        """The Objective and, with a path, the file (checked, and its last step read)."""
        objective = self._given or Objective(model, self.data, **self._options)
        if "accuracy" in self.measures and "accuracy" not in objective.names:
            raise ValueError(
                f"accuracy needs a classification loss (cross_entropy or bce), got "
                f"{objective.loss_name!r}"
            )
        self._settings.update(
            loss=objective.loss_name, data_sha256=objective.data_sha256(),
            num_examples=objective.num_examples,
            num_params=sum(p.numel() for p in model.parameters()),
        )  # fmt: skip
        if self._writes and self.path is not None:
            n = len(self._settings["slice_x"])
            shapes = {m: (n,) if m == "slice" else () for m in self.measures}
            shapes.update({f"{m}_threshold": () for m in self._thresholded()})
            shapes.update({f"{m}_residual": () for m in self._eigenvalues()})
            steps = prepare_tracking(self.path, self._settings, shapes)
            self._last = int(steps[-1]) if len(steps) else None
        if objective.shard_data or objective.sharded:  # every rank logs: all skip the
            self._last = broadcast_object(self._last)  # steps the file holds
        self._objective = objective
        return objective

    def log(self, model: nn.Module, step: int) -> dict[str, Any] | None:
        """Compute and record the measures at the model's current weights.

        Args:
            model: the model being trained (the same one, or one of the same architecture,
                at every call; DDP: its ``.module``); it is not changed.
            step: the training step; logged when a multiple of ``every`` and later than
                the last step recorded.

        Returns:
            ``{measure: value}`` (floats; an array for the slice; NaN for a trace between
            its logs), or ``None`` if skipped.

        Raises:
            ValueError: at the first log, a file made with other settings, or
                ``accuracy`` without a classification loss.
        """
        objective = self._start(model) if self._objective is None else self._objective
        if step % self.every or (self._last is not None and step <= self._last):
            return None
        here = objective.at(model.state_dict())
        if objective.shard_data or objective.sharded:
            values, stderr = self._measure(here, step)
        else:  # no collective (such as dealing the trace's probes): rank 0 may log alone
            with alone():
                values, stderr = self._measure(here, step)
        if self.guard is not None:
            for name in self._thresholded():
                threshold = values[f"{name}_threshold"]
                self.guard.update(name, values[name], threshold=threshold, step=step)
        if self._writes and self.path is not None:
            self._pending.append((step, values, stderr))
            if len(self._pending) >= self.write_every:
                self.flush()
        else:
            self._rows.append((step, values, stderr))
        self._last = step
        return values

    def _measure(self, here: Objective, step: int) -> tuple[dict[str, Any], dict[str, float]]:
        values: dict[str, Any] = {}
        stderr: dict[str, float] = {}
        op = self._operator(here) if self._eigenvalues() else None
        wanted = {"loss", "accuracy"} & set(self.measures)
        if op is not None and wanted == {"loss"}:
            means = {"loss": op.loss}  # its pass over the data at this point is the loss's
        else:
            means = here() if wanted else {}
        for name in self.measures:
            if name in means:
                values[name], stderr[name] = means[name], 0.0
            elif name == "slice":
                values[name] = self._slice(here)
            elif name == "trace" and step % self.trace_every:
                values[name] = stderr[name] = math.nan  # not computed at this log
            elif name in EIGENVALUES and op is not None:
                found = self._eigenvalue(op, name, step % self.verify_every == 0)
                values[name], stderr[name] = found.value, 0.0
                values[f"{name}_residual"] = found.extra["residual"]
                stderr[f"{name}_residual"] = 0.0
            else:
                found = self._result(here, name)
                values[name], stderr[name] = found.value, found.stderr
                if "threshold" in found.extra:
                    values[f"{name}_threshold"] = found.extra["threshold"]
        if "lambda_max" in self._thresholded() and self.optimizer is not None:
            values["lambda_max_threshold"] = optimizer_threshold(self.optimizer)
        for name in self._thresholded():
            stderr[f"{name}_threshold"] = 0.0
            values.setdefault(f"{name}_threshold", math.nan)
        return values, stderr

    def _eigenvalues(self) -> list[str]:
        """The eigenvalue measures, logged with a ``<measure>_residual`` column."""
        return [m for m in self.measures if m in EIGENVALUES]

    def _operator(self, here: Objective) -> HessianOperator | ShardedHessianOperator:
        """The Hessian at this log for its eigenvalues (see :func:`.eigenvalues.log_operator`)."""
        op = log_operator(here, self._routed[self._eigenvalues()[0]], not self._checked)
        self._checked = True
        return op

    def _eigenvalue(
        self, op: HessianOperator | ShardedHessianOperator, name: str, float64: bool
    ) -> SharpnessResult:
        return log_eigenvalue(op, name, self._routed[name], self._warm.get(name), self.progress,
                              float64)  # fmt: skip

    def _thresholded(self) -> list[str]:
        """The measures logged with a ``<measure>_threshold`` column."""
        sgd = isinstance(self.optimizer, torch.optim.SGD)
        return [
            m for m in self.measures
            if m in ("preconditioned_sharpness", "batch_sharpness") or (m == "lambda_max" and sgd)
        ]  # fmt: skip

    def _result(self, here: Objective, name: str) -> SharpnessResult:
        """The registry's measure ``name`` with this tracker's settings."""
        return sharpness(here, [name], progress=self.progress, **self._routed[name])[name]

    def _slice(self, here: Objective) -> np.ndarray:
        weights = {n: here.base_state[n] for n, _ in here.model.named_parameters()}
        direction = random_direction(weights, norm="filter", seed=self._settings["seed"])
        x = np.asarray(self._settings["slice_x"])
        return here.evaluate_points(here.base_state, [direction], x[:, None])["loss"]

    def flush(self) -> None:
        """Append the logs held for ``write_every`` to the file now (nothing without
        ``path``, or on ranks other than 0)."""
        if self._pending and self._writes and self.path is not None:
            append_tracking_rows(self.path, self._pending)
        self._pending = []

    @property
    def run(self) -> TrackingRun:
        """Everything recorded so far: the file's rows (all runs; those held are written
        first), or this tracker's."""
        if self._writes and self.path is not None and os.path.exists(self.path):
            self.flush()
            return load_tracking(self.path)
        steps = np.array([r[0] for r in self._rows], dtype=np.int64)
        columns = [*self.measures, *(f"{m}_threshold" for m in self._thresholded()),
                   *(f"{m}_residual" for m in self._eigenvalues())]  # fmt: skip
        values = {m: np.array([r[1][m] for r in self._rows], dtype=np.float64)
                  for m in columns}  # fmt: skip
        stderr = {m: np.array([r[2][m] for r in self._rows], dtype=np.float64)
                  for m in columns if m != "slice"}  # fmt: skip
        return TrackingRun(steps, values, stderr, self.settings)
