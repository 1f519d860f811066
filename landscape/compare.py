"""Compare many checkpoints of one architecture: measures, surfaces, one file, a table, figures.

Every checkpoint gets the same treatment with the same seeds: its loss and accuracy on the
training (and test) data, the chosen sharpness measures with their standard errors, 1D lines
along several filter-normalized random directions (mean and spread across direction seeds)
and one 2D plane. Everything goes into one HDF5 file, written checkpoint by checkpoint, so a
killed comparison started again with the same settings redoes only the unfinished ones.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from ._finite import check_finite_inputs
from ._progress import progress_bar
from .checkpoint import checkpoint_state
from .data import EvaluationData
from .directions import random_directions
from .limits import MAX_DRAWS, check_limit
from .objective import Objective
from .params import select_params, state_sha256
from .results import Result, format_estimate, rows_to_csv
from .sharpness import SharpnessResult, sharpness
from .sharpness.registry import check_settings
from .storage.compare import holding_compare_file, read_compare_label, write_compare_label
from .surface import Surface, compute_surface

DEFAULT_MEASURES = ("lambda_max", "trace", "adaptive_worst_l2", "avg_l2", "pacbayes", "rise")

__all__ = [
    "Comparison",
    "compare_checkpoints",
    "plot_comparison",
    "write_tables",
    "DEFAULT_MEASURES",
]


@dataclass(frozen=True, eq=False)
class Comparison(Result):
    """What :func:`compare_checkpoints` found, checkpoint by checkpoint (keys are labels).

    Comparisons compare by value (:class:`~landscape.results.Result`); ``path`` is left out.

    Attributes:
        evaluation: ``{label: {"train_loss", "train_accuracy", "test_loss", ...}}``.
        measures: ``{label: {measure: SharpnessResult}}`` on the training data.
        lines: ``{label: Surface}`` of 1D lines; each metric has shape
            ``(num_directions, nx)``, one row per direction seed.
        planes: ``{label: Surface}`` of 2D planes (empty if no plane was asked for).
        path: the HDF5 file, if one was written.
        settings: every setting of the comparison (as stored in the file's root).
    """

    evaluation: dict[str, dict[str, float]]
    measures: dict[str, dict[str, SharpnessResult]]
    lines: dict[str, Surface]
    planes: dict[str, Surface] = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return list(self.evaluation)

    def table_rows(self) -> list[dict[str, Any]]:
        """One row a checkpoint: evaluation, generalization gap, measures with stderr."""
        rows = []
        for label in self.labels:
            row: dict[str, Any] = {"checkpoint": label, **self.evaluation[label]}
            if "test_loss" in row:
                row["gap_loss"] = row["test_loss"] - row["train_loss"]
            if "test_accuracy" in row:
                row["gap_accuracy"] = row["train_accuracy"] - row["test_accuracy"]
            for name, result in self.measures[label].items():
                row[name] = result.value
                row[f"{name}_stderr"] = result.stderr
            rows.append(row)
        return rows

    def to_csv(self) -> str:
        """The table as CSV, full precision."""
        return rows_to_csv(self.table_rows())

    def to_markdown(self) -> str:
        """The table as Markdown: measures as ``value ± stderr`` (the value alone where the
        error is 0 or cannot be estimated)."""
        first = self.table_rows()[0]
        plain = [k for k in first if k != "checkpoint" and not k.endswith("_stderr")]
        header = ["checkpoint", *plain]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.table_rows():
            cells = [row["checkpoint"]]
            for key in plain:
                cells.append(format_estimate(row[key], row.get(f"{key}_stderr"), digits=4))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def differences(self, a: str, b: str, *, z: float = 2.0) -> list[dict[str, Any]]:
        """``b - a`` for every quantity of the table, with the standard error of the
        difference ``sqrt(se_a^2 + se_b^2)`` (independent estimates: each checkpoint's own
        draws) and whether ``|b - a| > z`` times it (``exceeds``). A measure computed
        exactly (``lambda_max``: stderr 0) exceeds whenever it differs; ``exceeds`` is
        ``None`` where no error is known: a NaN stderr, and the losses, accuracies and gaps,
        exact on the data given but with a sampling error over data sets that is not
        estimated here.

        Example:
            >>> from landscape.sharpness import SharpnessResult
            >>> found = Comparison({"sgd": {}, "sam": {}}, {
            ...     "sgd": {"avg_l2": SharpnessResult("avg_l2", 1.0, 0.1, {})},
            ...     "sam": {"avg_l2": SharpnessResult("avg_l2", 0.5, 0.1, {})}}, {})
            >>> row = found.differences("sgd", "sam")[0]
            >>> row["difference"], round(row["stderr"], 4), row["exceeds"]
            (-0.5, 0.1414, True)
        """
        rows = {row["checkpoint"]: row for row in self.table_rows()}
        found = []
        for key, value in rows[a].items():
            if key == "checkpoint" or key.endswith("_stderr") or key not in rows[b]:
                continue
            se = np.hypot(rows[a].get(f"{key}_stderr", 0.0), rows[b].get(f"{key}_stderr", 0.0))
            diff = rows[b][key] - value
            known = np.isfinite(se) and key in self.measures[a]
            exceeds = bool(abs(diff) > z * se) if known else None
            found.append({"quantity": key, a: value, b: rows[b][key], "difference": diff,
                          "stderr": float(se), "exceeds": exceeds})  # fmt: skip
        return found


def _state(model: nn.Module, checkpoint: Any) -> dict[str, Any]:
    """A checkpoint's state checked against the architecture, without copying the model."""
    if isinstance(checkpoint, nn.Module):
        checkpoint = checkpoint.state_dict()
    return checkpoint_state(model, checkpoint)


def _settings(**kwargs: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}


def compare_checkpoints(
    model: nn.Module | None = None,
    checkpoints: Mapping[str, Any] | None = None,
    data: Any = None,
    *,
    objective: Objective | None = None,
    test_data: Any = None,
    measures: Sequence[str] = DEFAULT_MEASURES,
    line: Sequence[float] = tuple(np.linspace(-1, 1, 21)),
    num_directions: int = 3,
    plane: tuple[Sequence[float], Sequence[float]] | None = None,
    seed: int = 0,
    loss: Any = None,
    loss_reduction: str | None = None,
    batch_size: int | None = None,
    path: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    allow_nonfinite: bool = False,
    **measure_settings: Any,
) -> Comparison:
    """Compare checkpoints of one architecture on every measure, with the same seeds.

    One :class:`~landscape.objective.Objective` serves the whole comparison (``objective=``,
    or one built from ``model``, ``data`` and the loss options): it is re-pointed at each
    checkpoint with :meth:`~landscape.objective.Objective.at`, so the model is copied once
    and each data set is moved to the device and fingerprinted once.

    Args:
        model: the architecture (its own weights are not used, and it is not changed);
            with ``objective``, leave it out (or give the objective's model).
        checkpoints: ``{label: checkpoint file, state_dict or model}``.
        data: the training data (measures and surfaces use it); with ``objective``,
            leave it out.
        objective: instead of ``model``, ``data``, ``loss``, ``loss_reduction`` and
            ``batch_size``, an :class:`~landscape.objective.Objective` (the training
            data, the loss and every option of its own).
        test_data: optional held-out data, for the generalization gap in the table.
        measures: sharpness measure names (see :data:`landscape.sharpness.MEASURES`).
        line: coordinates of the 1D lines; ``num_directions`` seeds ``seed, seed+1, ...``.
        plane: ``(x, y)`` coordinates of a 2D plane (directions from ``seed``), or None.
        seed, loss, batch_size: shared by every checkpoint (``None``: the Objective's
            default loss, ``"cross_entropy"``).
        loss_reduction: as for :class:`~landscape.objective.Objective` (``None``: its
            default).
        path: HDF5 file to write; an unfinished file with the same settings is resumed.
        overwrite: replace a file made with other settings.
        progress: show progress bars.
        allow_nonfinite: go on when a checkpoint or the first batch holds NaN or inf
            (refused by default, naming the checkpoint and the tensor).
        **measure_settings: ``rho``, ``eps``, ``num_samples``, ``target``, ``params`` (the
            weights the measures perturb and the lines and planes move, see
            :func:`landscape.params.select_names`; recorded as their names), ...

    Returns:
        A :class:`Comparison`.

    Raises:
        ValueError: no checkpoints, ``num_directions`` below 1, checkpoints of another
            architecture, an unknown measure, a file made with other settings, or an
            ``objective`` given with ``data``, loss options or another model.
    """
    if not checkpoints:
        raise ValueError("expected at least one checkpoint to compare, got none")
    options = {"loss": loss, "loss_reduction": loss_reduction, "batch_size": batch_size}
    options = {k: v for k, v in options.items() if v is not None}
    if objective is None:
        if model is None or data is None:
            raise ValueError("expected a model and data, or an objective; got "
                             f"{'no model' if model is None else 'no data'}")  # fmt: skip
    else:
        if not isinstance(objective, Objective):
            raise TypeError(f"expected a landscape Objective for objective, got "
                            f"{type(objective).__name__}")  # fmt: skip
        given = [k for k, v in {"data": data, **options}.items() if v is not None]
        if given or (model is not None and model is not objective.model):
            raise ValueError(f"expected the objective alone, got {given or ['another model']} "
                             "beside it; set the loss options on the Objective")  # fmt: skip
        model = objective.model
    if isinstance(num_directions, bool) or not isinstance(num_directions, (int, np.integer)):
        raise TypeError(f"num_directions must be an int, got {type(num_directions).__name__}")
    if num_directions < 1:
        raise ValueError(f"num_directions must be at least 1 (lines per checkpoint), got "
                         f"{num_directions}")  # fmt: skip
    check_limit("line directions", int(num_directions), MAX_DRAWS)
    states = {}
    buffers = [name for name, _ in model.named_buffers()]
    for label, checkpoint in checkpoints.items():
        try:
            states[label] = _state(model, checkpoint)
        except ValueError as err:
            raise ValueError(f"checkpoint {label!r} does not fit the architecture: {err}") from None
        if not allow_nonfinite:  # every checkpoint before any work, naming the tensor
            check_finite_inputs(states[label], buffers=buffers, what=f"checkpoint {label!r}")
    if objective is None:
        objective = Objective(model, data, allow_nonfinite=allow_nonfinite, **options)
    measure_settings["seed"] = seed
    if measure_settings.get("params") is not None:  # names, which the file can record
        measure_settings["params"] = select_params(model, measure_settings["params"])
    moved = measure_settings.get("params")
    check_settings(list(measures), measure_settings)  # bad names and settings fail before work
    test = None
    if test_data is not None:
        test = EvaluationData(test_data, device=objective.device, batch_size=batch_size)
    settings = _settings(
        measures=tuple(measures), line=tuple(float(v) for v in line),
        num_directions=num_directions, loss=objective.loss_name,
        # recorded for a mean only: files without it (all of 0.1's) hold batch sums
        **({"loss_reduction": "mean"} if objective.loss_reduction == "mean" else {}),
        plane=None if plane is None else [list(map(float, plane[0])), list(map(float, plane[1]))],
        data_sha256=objective.data_sha256(),
        test_data_sha256="none" if test is None else test.sha256(),
        # a WarmStart (lambda_max from the previous checkpoint's eigenvector) as a flag
        **{k: v is not None if k == "warm_start" else v for k, v in measure_settings.items()},
    )  # fmt: skip
    done: set[str] = set()
    with contextlib.ExitStack() as stack:  # the file is held (locked) for the whole run
        if path is not None:
            done = stack.enter_context(holding_compare_file(path, settings, overwrite=overwrite))

        weight_names = [n for n, _ in model.named_parameters()]
        result = Comparison({}, {}, {}, {}, None if path is None else os.fspath(path), settings)
        for label, state in progress_bar(progress, states.items(), desc="compare", unit="ckpt"):
            here = objective.at(state)
            sha = state_sha256(here.base_state)
            if path is not None and label in done:
                _read_label(path, label, sha, result)
                continue
            evaluation = {f"train_{k}": v for k, v in here().items()}
            if test is not None:
                evaluation.update({f"test_{k}": v for k, v in here(batches=test).items()})
            result.evaluation[label] = evaluation
            result.measures[label] = sharpness(
                here, list(measures), progress=progress, **measure_settings
            )
            weights = {n: here.base_state[n] for n in weight_names}
            rows = []
            for k in range(num_directions):
                dirs = random_directions(weights, num_directions=1, seed=seed + k, params=moved)
                rows.append(compute_surface(here, dirs, line, progress=False))
            result.lines[label] = Surface(
                rows[0].x, None, {n: np.stack([r[n] for r in rows]) for n in rows[0].metrics},
                attrs={**rows[0].attrs, "num_directions": num_directions},
            )  # fmt: skip
            if plane is not None:
                dirs = random_directions(weights, num_directions=2, seed=seed, params=moved)
                x, y = plane
                result.planes[label] = compute_surface(here, dirs, x, y, progress=progress)
            if path is not None:
                _write_label(path, label, sha, result)
    return result


def _arrays(surface: Surface) -> dict[str, np.ndarray]:
    return {"x": surface.x, **({} if surface.y is None else {"y": surface.y}), **surface.metrics}


def _write_label(path: str | os.PathLike, label: str, sha: str, result: Comparison) -> None:
    surfaces = {
        kind: (_arrays(found[label]), found[label].attrs)
        for kind, found in (("line", result.lines), ("plane", result.planes))
        if label in found
    }
    write_compare_label(
        path, label, checkpoint_sha256=sha, evaluation=result.evaluation[label],
        measures=result.measures[label], surfaces=surfaces,
    )  # fmt: skip


def _read_label(path: str | os.PathLike, label: str, sha: str, result: Comparison) -> None:
    evaluation, measures, surfaces = read_compare_label(path, label, checkpoint_sha256=sha)
    result.evaluation[label] = evaluation
    result.measures[label] = measures
    for kind, (arrays, attrs) in surfaces.items():
        x, y = arrays.pop("x"), arrays.pop("y", None)
        target = result.lines if kind == "line" else result.planes
        target[label] = Surface(x, y, arrays, attrs=attrs)


def plot_comparison(comparison: Comparison, out_dir: str | os.PathLike) -> list[str]:
    """Write the comparison figures (lines, planes, measures) as PNG and PDF into ``out_dir``.

    Returns:
        The paths written.
    """
    from matplotlib.figure import Figure

    from . import plotting

    os.makedirs(out_dir, exist_ok=True)
    written = []
    with plotting.landscape_style():
        fig = Figure(figsize=(4.5, 3.2), layout="constrained")
        curves = {
            label: (s.x, s["loss"].mean(axis=0), s["loss"].std(axis=0))
            for label, s in comparison.lines.items()
        }
        first = next(iter(comparison.lines.values()))
        band = f"±1 standard deviation over {first['loss'].shape[0]} random directions"
        plotting.plot_lines_compare(curves, fig.add_subplot(), x_label=first.attrs["x_label"],
                                    band=band)  # fmt: skip
        figures = {"compare_lines": fig}
        if comparison.planes:
            figures["compare_planes"] = plotting.plot_contours_compare(
                comparison.planes, fig=Figure(figsize=(3.2 * len(comparison.planes) + 1, 3),
                                             layout="constrained"),
            )  # fmt: skip
        table = {
            label: {n: (r.value, r.stderr) for n, r in results.items()}
            for label, results in comparison.measures.items()
        }
        if any(table.values()):
            figures["compare_measures"] = plotting.plot_measures(
                table, fig=Figure(figsize=(8, 4), layout="constrained")
            )
        for name, figure in figures.items():
            for suffix in ("png", "pdf"):
                written.append(
                    os.fspath(plotting.save_figure(figure, f"{out_dir}/{name}.{suffix}"))
                )
    return written


def write_tables(comparison: Comparison, out_dir: str | os.PathLike) -> list[str]:
    """Write ``compare.md`` and ``compare.csv`` into ``out_dir``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "compare.md"), os.path.join(out_dir, "compare.csv")]
    with open(paths[0], "w") as f:
        f.write(comparison.to_markdown() + "\n")
    with open(paths[1], "w") as f:
        f.write(comparison.to_csv())
    return paths
