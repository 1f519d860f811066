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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from .. import distributed
from .._finite import check_finite_inputs
from .._progress import progress_bar
from ..checkpoint import checkpoint_state
from ..checks import check_choice, check_count, check_flag
from ..data import EvaluationData
from ..directions import random_directions
from ..limits import MAX_DRAWS, check_limit
from ..objective import Objective
from ..options import AlignMethod, Repair
from ..params import select_params, state_sha256
from ..paths import BarrierMatrix, barrier_matrix
from ..sharpness import SharpnessResult, sharpness
from ..sharpness.registry import check_settings
from ..storage.codec import same_attr
from ..storage.compare import (
    holding_compare_file,
    read_compare_barriers,
    read_compare_label,
    write_compare_barriers,
    write_compare_label,
)
from ..surface import Surface, compute_surface
from .figures import plot_comparison, write_tables
from .result import Comparison

if TYPE_CHECKING:
    from ..options import AlignMethodName, RepairName

DEFAULT_MEASURES = ("lambda_max", "trace", "adaptive_worst_l2", "avg_l2", "pacbayes", "rise")

__all__ = [
    "Comparison",
    "compare_checkpoints",
    "plot_comparison",
    "write_tables",
    "DEFAULT_MEASURES",
]


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
    barriers: bool = False,
    align: AlignMethodName | None = None,
    repair: RepairName | None = None,
    barrier_points: int = 11,
    residual: bool = False,
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
        barriers: also the straight-line loss barrier between every pair of checkpoints
            (:func:`landscape.paths.barrier_matrix`, on the training data): which of them
            share a basin. Implied by ``align`` or ``repair``.
        align: ``"weights"`` or ``"activations"``: the barriers also after permuting each
            pair's second checkpoint into the first's frame (``barriers.after``).
        repair: ``"reset_bn"`` or ``"repair"`` at every point of every pair's line.
        barrier_points: points per line between two checkpoints.
        residual: with ``align``, permute the residual stream of Hugging Face GPT-2 and
            Llama models too (see :func:`landscape.align`).
        **measure_settings: ``rho``, ``eps``, ``num_samples``, ``target``, ``params`` (the
            weights the measures perturb and the lines and planes move, see
            :func:`landscape.params.select_names`; recorded as their names), ...

    Under ``torchrun`` every rank calls this with the same arguments: the checkpoints are
    dealt to the ranks (each computed whole by one rank, as one process computes it),
    gathered, and rank 0 alone holds and writes the file; an error on any rank is raised
    on every rank with the attribute ``landscape_rank`` naming the rank it came from.

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
    barriers = check_flag(barriers, "barriers") or align is not None or repair is not None
    if barriers:  # before any work
        align = None if align is None else check_choice(align, AlignMethod, "align")
        repair = None if repair is None else check_choice(repair, Repair, "repair")
        barrier_points = check_count(barrier_points, "barrier_points", minimum=2)
        if check_flag(residual, "residual") and align is None:
            raise ValueError("expected align= with residual=True, got residual=True alone")
        if len(checkpoints) < 2:
            raise ValueError(
                f"expected at least two checkpoints for barriers, got {len(checkpoints)}"
            )
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
    # Under torchrun the checkpoints are dealt to the ranks, each computed whole by one rank
    # as one process computes it (a sharded objective's measures need every rank: then all
    # ranks walk every checkpoint together); rank 0 alone holds and writes the file.
    world = 1 if objective.shard_data else distributed.world_size()
    me = distributed.rank() if world > 1 else 0
    by_itself = distributed.alone if world > 1 else contextlib.nullcontext
    shown = progress and distributed.rank() == 0
    job = _Job(objective, test, list(measures), measure_settings, line, num_directions, plane,
               seed, moved, shown)  # fmt: skip
    found: dict[str, _Found] = {}
    with contextlib.ExitStack() as stack:  # the file is held (locked) for the whole run
        if path is not None:

            def resumed() -> dict[str, _Found]:  # rank 0: hold the file, read what is done
                done = stack.enter_context(holding_compare_file(path, settings,
                                                                overwrite=overwrite))  # fmt: skip
                return {label: _read_label(path, label, objective.at(state))
                        for label, state in states.items() if label in done}  # fmt: skip

            found.update(distributed.on_leader(resumed))
        todo = [label for label in states if label not in found]
        bar = progress_bar(progress, desc="compare", unit="ckpt", total=len(todo))
        for start in range(0, len(todo), world):  # a round: one checkpoint per rank
            mine_label = todo[start + me] if start + me < len(todo) else None
            mine, error = None, None
            if mine_label is not None:
                try:
                    with by_itself():
                        mine = job.run(states[mine_label])
                except Exception as err:  # every rank learns of it, and which rank had it
                    error = err
            distributed.share_errors(error)
            for got, computed in distributed.all_gather_objects((mine_label, mine))[:world]:
                if got is None:
                    continue
                found[got] = computed
                if path is not None and distributed.rank() == 0:
                    _write_label(path, got, computed)
                bar.update()
        bar.close()
        matrix = None
        if barriers:
            wanted = {"align": align, "repair": repair, "num_points": barrier_points, "seed": seed}
            if residual:  # recorded only when set: earlier files' matrices still match
                wanted["residual"] = True
            matrix = _barriers(objective, states, path, wanted, dealt=world > 1)
    ordered = [(label, found[label]) for label in states]
    return Comparison(
        {label: f[1] for label, f in ordered}, {label: f[2] for label, f in ordered},
        {label: f[3] for label, f in ordered},
        {label: f[4] for label, f in ordered if f[4] is not None},
        None if path is None else os.fspath(path), settings, barriers=matrix,
    )  # fmt: skip


def _barriers(
    objective: Objective,
    states: Mapping[str, Any],
    path: str | os.PathLike | None,
    settings: dict[str, Any],
    *,
    dealt: bool,
) -> BarrierMatrix:
    """The pairwise barrier matrix: read back from ``path`` when it holds one of these
    checkpoints and ``settings`` (align, repair, num_points, seed), else computed (by rank
    0 alone where the checkpoints are dealt; by every rank together for a sharded
    objective) and written by rank 0."""
    stored = (
        None if path is None else distributed.on_leader(lambda: _stored(path, states, settings))
    )
    if stored is not None:
        return stored

    def compute() -> BarrierMatrix:
        return barrier_matrix(objective, states, align=settings["align"],
                              repair=settings["repair"], t=settings["num_points"],
                              seed=settings["seed"],
                              residual=settings.get("residual", False))  # fmt: skip

    if dealt:

        def alone() -> BarrierMatrix:
            with distributed.alone():
                return compute()

        matrix = distributed.on_leader(alone)
    else:
        matrix = compute()
    if path is not None and distributed.rank() == 0:
        arrays = {"before": matrix.before}
        if matrix.after is not None:
            arrays["after"] = matrix.after
        write_compare_barriers(path, arrays, {"labels": list(states), **matrix.settings})
    return matrix


def _stored(
    path: str | os.PathLike, states: Mapping[str, Any], settings: dict[str, Any]
) -> BarrierMatrix | None:
    """The file's barrier matrix if it was made for these labels and settings."""
    stored = read_compare_barriers(path)
    if stored is None:
        return None
    arrays, attrs = stored
    if list(attrs["labels"]) != list(states):
        return None
    if not all(same_attr(attrs.get(k), v) for k, v in settings.items()):
        return None
    return BarrierMatrix(list(states), arrays["before"], arrays.get("after"),
                         {k: attrs.get(k) for k in settings})  # fmt: skip


# (checkpoint_sha256, evaluation, measures, line, plane or None) of one checkpoint
_Found = tuple[str, dict[str, float], dict[str, SharpnessResult], Surface, Surface | None]


@dataclass(frozen=True)
class _Job:
    """What every checkpoint of a comparison gets, with the same seeds."""

    objective: Objective
    test: EvaluationData | None
    measures: list[str]
    measure_settings: dict[str, Any]
    line: Sequence[float]
    num_directions: int
    plane: tuple[Sequence[float], Sequence[float]] | None
    seed: int
    moved: Any
    progress: bool

    def run(self, state: Mapping[str, Any]) -> _Found:
        here = self.objective.at(state)
        evaluation = {f"train_{k}": v for k, v in here().items()}
        if self.test is not None:
            evaluation.update({f"test_{k}": v for k, v in here(batches=self.test).items()})
        measures = sharpness(here, self.measures, progress=self.progress,
                             **self.measure_settings)  # fmt: skip
        weights = {n: here.base_state[n] for n, _ in self.objective.model.named_parameters()}
        rows = []
        for k in range(self.num_directions):
            dirs = random_directions(weights, num_directions=1, seed=self.seed + k,
                                     params=self.moved)  # fmt: skip
            rows.append(compute_surface(here, dirs, self.line, progress=False))
        line = Surface(
            rows[0].x, None, {n: np.stack([r[n] for r in rows]) for n in rows[0].metrics},
            attrs={**rows[0].attrs, "num_directions": self.num_directions},
        )  # fmt: skip
        plane = None
        if self.plane is not None:
            dirs = random_directions(weights, num_directions=2, seed=self.seed, params=self.moved)
            plane = compute_surface(here, dirs, *self.plane, progress=self.progress)
        return state_sha256(here.base_state), evaluation, measures, line, plane


def _arrays(surface: Surface) -> dict[str, np.ndarray]:
    return {"x": surface.x, **({} if surface.y is None else {"y": surface.y}), **surface.metrics}


def _write_label(path: str | os.PathLike, label: str, found: _Found) -> None:
    sha, evaluation, measures, line, plane = found
    surfaces = {
        kind: (_arrays(surface), surface.attrs)
        for kind, surface in (("line", line), ("plane", plane))
        if surface is not None
    }
    write_compare_label(path, label, checkpoint_sha256=sha, evaluation=evaluation,
                        measures=measures, surfaces=surfaces)  # fmt: skip


def _read_label(path: str | os.PathLike, label: str, here: Objective) -> _Found:
    sha = state_sha256(here.base_state)
    evaluation, measures, surfaces = read_compare_label(path, label, checkpoint_sha256=sha)
    read = {}
    for kind, (arrays, attrs) in surfaces.items():
        x, y = arrays.pop("x"), arrays.pop("y", None)
        read[kind] = Surface(x, y, arrays, attrs=attrs)
    return sha, evaluation, measures, read["line"], read.get("plane")
