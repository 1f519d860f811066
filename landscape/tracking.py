"""Curvature during training: a :class:`Tracker` logs measures from the user's own loop.

A few lines in any training loop::

    tracker = Tracker(data, path="run.h5", every=50, measures=["lambda_max", "trace"])
    for step in range(num_steps):
        ...                                  # the user's own update
        tracker.log(model, step)             # the values recorded, or None if skipped
    run = load_tracking("run.h5")            # run.steps, run.values["lambda_max"], run.stderr

Measures (:data:`TRACKED`): ``loss`` and ``accuracy`` (exact means over ``data``);
``lambda_max`` and ``lambda_min`` (Lanczos, each warm-started from the previous log's
eigenvector, so a log costs a few Hessian-vector products when the weights moved little);
``trace`` (Hutch++ with the same probes at every log, with its standard error); ``slice``,
the loss along one random direction: the same Gaussian draw (``seed``) at every log,
filter-normalized to the weights of that log, so that its coordinates are in units of the
current filters' norms (Li et al. 2018) as the weights grow or shrink; and any sharpness
measure of :data:`landscape.sharpness.MEASURES` by name (settings as keywords).

The data go to the model's device once: one :class:`~landscape.objective.Objective` is
built at the first log and re-pointed at each log's weights with
:meth:`~landscape.objective.Objective.at`. The model is only read: its parameters,
buffers, gradients and train/eval flags are the same after :meth:`Tracker.log`.

With ``path``, each log is appended to ``/tracking`` (:mod:`landscape.storage.tracking`)
and flushed. A run restarted with a new Tracker on the same file continues it: steps up to
the last one recorded are skipped, and a Tracker whose settings differ from the file's
(measures, every, loss, data, lr, seeds, ...) is refused, naming each differing setting.
A restarted run's first eigenvalues start Lanczos cold, so they agree with an unbroken
run's to the Lanczos tolerance rather than bit for bit.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .directions import random_direction
from .hessian import HessianOperator
from .linalg import estimate_trace, lanczos_eigenpairs
from .objective import BatchLoss, Objective
from .results import Result
from .sharpness import MEASURES, check_settings, sharpness
from .storage.tracking import append_tracking, prepare_tracking, read_tracking

#: The tracker's own measures; any other name of ``landscape.sharpness.MEASURES`` works too.
TRACKED = ("loss", "accuracy", "lambda_max", "lambda_min", "trace", "slice")
_EIGEN = {"lambda_max": "LA", "lambda_min": "SA"}

__all__ = ["TRACKED", "Tracker", "TrackingRun", "load_tracking"]


@dataclass(frozen=True, eq=False)
class TrackingRun(Result):
    """Measures logged during training; compared by value.

    Attributes:
        steps: int array ``(n,)`` of the logged steps, increasing.
        values: ``{measure: array}``, ``(n,)`` per measure, ``(n, len(slice_x))`` for the
            slice (coordinates in ``settings["slice_x"]``).
        stderr: ``{measure: array (n,)}`` standard errors, 0 for exact values (no slice).
        settings: every setting of the Tracker (``lr`` among them when it was given).
    """

    steps: np.ndarray
    values: dict[str, np.ndarray]
    stderr: dict[str, np.ndarray]
    settings: dict[str, Any] = field(default_factory=dict)


def load_tracking(path: str | os.PathLike) -> TrackingRun:
    """The run logged into a landscape file by a :class:`Tracker`.

    Raises:
        KeyError: the file has no ``/tracking``.
    """
    found = read_tracking(path)
    return TrackingRun(found["steps"], found["values"], found["stderr"], found["settings"])


class Tracker:
    """Logs loss, curvature and sharpness measures of a model during training.

    Args:
        data: the data the measures are computed on (any form an
            :class:`~landscape.objective.Objective` takes); moved to the device once.
        path: landscape HDF5 file to append to (see the module docstring); ``None`` keeps
            the logs in memory only.
        every: log steps that are multiples of ``every``.
        measures: names from :data:`TRACKED` or sharpness measure names.
        loss, loss_reduction, batch_loss, batch_size: as for
            :class:`~landscape.objective.Objective` (``batch_loss`` for models with unusual
            inputs or outputs; Hugging Face dict batches and outputs need none).
        lr: the learning rate, stored as a setting (plots draw ``2 / lr`` beside
            ``lambda_max``).
        seed: seeds the trace probes, the slice direction, cold Lanczos starts and the
            sharpness measures; the same at every log.
        num_probes: Hutch++ products for ``trace``.
        tol, max_hvps: Lanczos tolerance (relative to ``||H||``; default 1e-8 for float64
            models, 1e-4 otherwise) and product budget for each eigenvalue.
        warm_start: start Lanczos from the previous log's eigenvector.
        slice_x: coordinates of the slice.
        **measure_settings: settings of the sharpness measures (``rho``, ``num_samples``, ...).

    Raises:
        ValueError: an unknown measure, a setting no chosen measure takes, ``every < 1``.

    Example:
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
        data: Any,
        *,
        path: str | os.PathLike | None = None,
        every: int = 1,
        measures: Sequence[str] = ("loss", "lambda_max"),
        loss: Any = "cross_entropy",
        loss_reduction: str = "auto",
        batch_loss: BatchLoss | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        seed: int = 0,
        num_probes: int = 30,
        tol: float | None = None,
        max_hvps: int = 300,
        warm_start: bool = True,
        slice_x: Sequence[float] = tuple(np.linspace(-1, 1, 21)),
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
        self._sharpness = [m for m in measures if m not in TRACKED]
        if measure_settings:
            if not self._sharpness:
                raise ValueError(
                    f"settings {sorted(measure_settings)} are for sharpness measures; "
                    "none is among the measures"
                )
            check_settings(self._sharpness, {**measure_settings, "seed": seed})
        self.data, self.path, self.every, self.measures = data, path, every, measures
        self._options = {"loss": loss, "loss_reduction": loss_reduction,
                         "batch_loss": batch_loss, "batch_size": batch_size}  # fmt: skip
        self._settings: dict[str, Any] = {
            "measures": measures, "every": every, "lr": lr, "seed": seed,
            "num_probes": num_probes, "tol": tol, "max_hvps": max_hvps,
            "warm_start": warm_start, "slice_x": [float(v) for v in slice_x],
            **measure_settings,
        }  # fmt: skip
        self._measure_settings = measure_settings
        self._objective: Objective | None = None
        self._checked = False  # whether the loss was found deterministic
        self._vectors: dict[str, torch.Tensor] = {}
        self._last: int | None = None
        self._rows: list[tuple[int, dict[str, Any], dict[str, float]]] = []

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting, with the loss, data fingerprint and model size after the first log."""
        return dict(self._settings)

    def _start(self, model: nn.Module) -> None:
        """The Objective and, with a path, the file (checked, and its last step read)."""
        objective = Objective(model, self.data, **self._options)
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
        if self.path is not None:
            n = len(self._settings["slice_x"])
            shapes = {m: (n,) if m == "slice" else () for m in self.measures}
            steps = prepare_tracking(self.path, self._settings, shapes)
            self._last = int(steps[-1]) if len(steps) else None
        self._objective = objective

    def log(self, model: nn.Module, step: int) -> dict[str, Any] | None:
        """Compute and record the measures at the model's current weights.

        Args:
            model: the model being trained (the same one, or one of the same architecture,
                at every call); it is not changed.
            step: the training step; logged when a multiple of ``every`` and later than
                the last step recorded.

        Returns:
            ``{measure: value}`` (floats; an array for the slice), or ``None`` if skipped.

        Raises:
            ValueError: at the first log, a file made with other settings, or
                ``accuracy`` without a classification loss.
        """
        if self._objective is None:
            self._start(model)
        if step % self.every or (self._last is not None and step <= self._last):
            return None
        here = self._objective.at(model.state_dict())
        values, stderr = self._measure(here)
        if self.path is not None:
            append_tracking(self.path, step, values, stderr)
        else:
            self._rows.append((step, values, stderr))
        self._last = step
        return values

    def _measure(self, here: Objective) -> tuple[dict[str, Any], dict[str, float]]:
        values: dict[str, Any] = {}
        stderr: dict[str, float] = {}
        means = here() if {"loss", "accuracy"} & set(self.measures) else {}
        op = None
        if {"lambda_max", "lambda_min", "trace"} & set(self.measures):
            op = HessianOperator(here, check_deterministic=not self._checked)
            self._checked = True
        found = {}
        if self._sharpness:
            found = sharpness(
                here, self._sharpness, seed=self._settings["seed"], **self._measure_settings
            )
        for name in self.measures:
            if name in means:
                values[name], stderr[name] = means[name], 0.0
            elif name in _EIGEN:
                values[name], stderr[name] = self._eigenvalue(op, name), 0.0
            elif name == "trace":
                trace = estimate_trace(
                    op, num_probes=self._settings["num_probes"], seed=self._settings["seed"]
                )
                values[name], stderr[name] = trace.value, trace.stderr
            elif name == "slice":
                values[name] = self._slice(here)
            else:
                values[name], stderr[name] = found[name].value, found[name].stderr
        return values, stderr

    def _eigenvalue(self, op: HessianOperator, name: str) -> float:
        start = self._vectors.get(name) if self._settings["warm_start"] else None
        pairs = lanczos_eigenpairs(
            op, 1, which=_EIGEN[name], tol=self._settings["tol"],
            max_matvecs=self._settings["max_hvps"], seed=self._settings["seed"], start=start,
        )  # fmt: skip
        if not pairs.converged and np.isfinite(pairs.values).all():
            warnings.warn(
                f"{name}: Lanczos stopped after {pairs.num_matvecs} HVPs above its tolerance; "
                "raise max_hvps or tol",
                RuntimeWarning,
                stacklevel=4,
            )
        if np.isfinite(pairs.values).all():
            self._vectors[name] = pairs.vectors[0]
        return float(pairs.values[0])

    def _slice(self, here: Objective) -> np.ndarray:
        weights = {n: here.base_state[n] for n, _ in here.model.named_parameters()}
        direction = random_direction(weights, norm="filter", seed=self._settings["seed"])
        x = np.asarray(self._settings["slice_x"])
        return here.evaluate_points(here.base_state, [direction], x[:, None])["loss"]

    @property
    def run(self) -> TrackingRun:
        """Everything recorded so far: the file's rows (all runs), or this tracker's."""
        if self.path is not None and os.path.exists(self.path):
            return load_tracking(self.path)
        steps = np.array([r[0] for r in self._rows], dtype=np.int64)
        values = {m: np.array([r[1][m] for r in self._rows], dtype=np.float64)
                  for m in self.measures}  # fmt: skip
        stderr = {m: np.array([r[2][m] for r in self._rows], dtype=np.float64)
                  for m in self.measures if m != "slice"}  # fmt: skip
        return TrackingRun(steps, values, stderr, self.settings)
