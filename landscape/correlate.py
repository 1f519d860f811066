"""Sharpness against generalization over many models: Kendall's tau, intervals, granulated tau.

Given the comparison of N checkpoints (:func:`~landscape.compare.compare_checkpoints`, or
the ``compare.h5`` it writes) with test data, :func:`correlate` ranks the models by each
measure and by their generalization gap and reports, per measure:

- ``tau``: Kendall's tau-b between the measure and the gap (ties counted as in
  ``scipy.stats.kendalltau``), over the models where both are finite;
- ``tau_low``, ``tau_high``: a percentile bootstrap interval (models resampled with
  replacement, the same resamples for every measure, from ``seed``);
- with the models' hyperparameters, Jiang et al.'s (2020) granulated tau: for each
  hyperparameter, the mean tau within the groups of models that share every other
  hyperparameter (groups of one model, or where a side is constant, are left out), and
  ``granulated_tau``, the mean of those over the hyperparameters.

A positive tau means the sharper model (by that measure) generalizes worse.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .compare import Comparison
from .limits import MAX_DRAWS, check_limit
from .results import Result, rows_to_csv
from .storage.compare import read_compare_results

Gap = Literal["accuracy", "loss"]

__all__ = ["Correlation", "correlate", "kendall_tau", "read_hparams", "write_correlation"]


def kendall_tau(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of ``x`` and ``y`` along the last axis (leading axes are batches).

    NaN where one side is constant (no untied pair).

    Example:
        >>> float(kendall_tau(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])))
        0.3333333333333333
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    i, j = np.triu_indices(x.shape[-1], k=1)
    sx = np.sign(x[..., i] - x[..., j])
    sy = np.sign(y[..., i] - y[..., j])
    untied = np.sqrt((sx * sx).sum(-1) * (sy * sy).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(untied > 0, (sx * sy).sum(-1) / untied, np.nan)


@dataclass(frozen=True, eq=False)
class Correlation(Result):
    """What :func:`correlate` found; compared by value.

    Attributes:
        labels: the models (checkpoint labels), in order.
        gap: ``(N,)`` generalization gap of each model.
        values: ``{measure: (N,)}`` each measure's value for each model.
        tau: ``{measure: Kendall's tau with the gap}``.
        interval: ``{measure: (low, high)}`` bootstrap interval of tau.
        granulated: ``{measure: {hyperparameter: mean tau over its groups}}`` (empty
            without hyperparameters).
        hparams: ``{label: {hyperparameter: value}}`` (empty without them).
        settings: ``gap``, ``num_bootstrap``, ``seed``, ``confidence``.
    """

    labels: list[str]
    gap: np.ndarray
    values: dict[str, np.ndarray]
    tau: dict[str, float]
    interval: dict[str, tuple[float, float]]
    granulated: dict[str, dict[str, float]] = field(default_factory=dict)
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def granulated_tau(self) -> dict[str, float]:
        """``{measure: mean over hyperparameters of their tau}`` (empty without them)."""
        out = {}
        for measure, by in self.granulated.items():
            found = [v for v in by.values() if math.isfinite(v)]
            out[measure] = float(np.mean(found)) if found else math.nan
        return out

    def table_rows(self) -> list[dict[str, Any]]:
        """One row a measure: ``measure, tau, tau_low, tau_high`` (and with hyperparameters
        ``granulated_tau`` and ``psi_<hyperparameter>``)."""
        rows = []
        granulated = self.granulated_tau
        for measure, tau in self.tau.items():
            low, high = self.interval[measure]
            row: dict[str, Any] = {"measure": measure, "tau": tau, "tau_low": low,
                                   "tau_high": high}  # fmt: skip
            if self.granulated:
                row["granulated_tau"] = granulated[measure]
                row.update({f"psi_{h}": v for h, v in self.granulated[measure].items()})
            rows.append(row)
        return rows

    def to_csv(self) -> str:
        """The table as CSV, full precision."""
        return rows_to_csv(self.table_rows())

    def to_markdown(self) -> str:
        """The table as Markdown: tau with its interval, granulated taus."""
        rows = self.table_rows()
        extra = [k for k in rows[0] if k not in ("measure", "tau", "tau_low", "tau_high")]
        level = round(100 * self.settings.get("confidence", 0.95))
        header = ["measure", f"tau [{level}% interval]", *extra]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            cells = [row["measure"], f"{row['tau']:+.3f} [{row['tau_low']:+.2f}, "
                     f"{row['tau_high']:+.2f}]", *(f"{row[k]:+.3f}" for k in extra)]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def read_hparams(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Hyperparameters from a CSV file: a ``checkpoint`` column (the labels) and one
    column per hyperparameter; values are kept as text (compared as written).

    Raises:
        ValueError: no ``checkpoint`` column, or a label given twice.
    """
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "checkpoint" not in rows[0]:
        raise ValueError(
            f"{os.fspath(path)}: expected a header with a 'checkpoint' column (the labels of "
            "the comparison) and one column per hyperparameter"
        )
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        label = row.pop("checkpoint")
        if label in out:
            raise ValueError(f"{os.fspath(path)}: checkpoint {label!r} is given twice")
        out[label] = row
    return out


def _granulated(
    values: np.ndarray, gap: np.ndarray, hparams: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """For each hyperparameter, the mean tau within groups that differ in it only."""
    names = list(hparams[0])
    out = {}
    for name in names:
        groups: dict[tuple, list[int]] = {}
        for k, h in enumerate(hparams):
            key = tuple((other, h[other]) for other in names if other != name)
            groups.setdefault(key, []).append(k)
        taus = [
            float(kendall_tau(values[idx], gap[idx])) for idx in map(np.array, groups.values())
            if len(idx) > 1
        ]  # fmt: skip
        taus = [t for t in taus if math.isfinite(t)]
        out[name] = float(np.mean(taus)) if taus else math.nan
    return out


def correlate(
    comparison: Comparison | str | os.PathLike,
    hparams: Mapping[str, Mapping[str, Any]] | str | os.PathLike | None = None,
    *,
    gap: Gap = "accuracy",
    measures: Sequence[str] | None = None,
    num_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Correlation:
    """Kendall's tau of every measure with the generalization gap, over many models.

    Args:
        comparison: a :class:`~landscape.compare.Comparison` made with ``test_data``, or
            the path of its ``compare.h5``.
        hparams: ``{label: {hyperparameter: value}}`` for every model, or the path of a CSV
            file (see :func:`read_hparams`); enables the granulated tau.
        gap: ``"accuracy"`` (train minus test accuracy, the ``gap_accuracy`` column) or
            ``"loss"`` (test minus train loss, ``gap_loss``).
        measures: which measures (default: all in the comparison).
        num_bootstrap: bootstrap resamples of the models.
        confidence: level of the interval.
        seed: seed of the resamples.

    Returns:
        a :class:`Correlation`.

    Raises:
        ValueError: fewer than 3 models, no test data in the comparison, an unknown gap or
            measure, hyperparameters missing for some models or with differing names.

    Example:
        >>> from landscape.sharpness import SharpnessResult
        >>> evaluation = {f"m{k}": {"train_accuracy": 1.0, "test_accuracy": 1 - 0.1 * k,
        ...                         "train_loss": 0.0, "test_loss": 0.1 * k} for k in range(4)}
        >>> sharp = {f"m{k}": {"trace": SharpnessResult("trace", 10.0 * k, 0.0)} for k in range(4)}
        >>> found = correlate(Comparison(evaluation, sharp, {}), num_bootstrap=50)
        >>> found.tau, found.interval
        ({'trace': 1.0}, {'trace': (1.0, 1.0)})
    """
    if gap not in ("accuracy", "loss"):
        raise ValueError(f"gap must be 'accuracy' or 'loss', got {gap!r}")
    check_limit("bootstrap resamples", num_bootstrap, MAX_DRAWS)
    if num_bootstrap < 1 or not 0 < confidence < 1:
        raise ValueError(
            f"need num_bootstrap >= 1 and 0 < confidence < 1, got {num_bootstrap}, {confidence}"
        )
    if not isinstance(comparison, Comparison):
        settings, found = read_compare_results(comparison)
        comparison = Comparison(
            {k: e for k, (e, _) in found.items()}, {k: m for k, (_, m) in found.items()}, {},
            settings=settings,
        )  # fmt: skip
    rows = comparison.table_rows()
    if len(rows) < 3:
        raise ValueError(f"expected at least 3 models to rank, got {len(rows)}")
    column = f"gap_{gap}"
    if any(column not in row for row in rows):
        raise ValueError(
            f"the comparison has no {column}: run compare_checkpoints with test_data "
            "(landscape compare --test-data)"
        )
    labels = [row["checkpoint"] for row in rows]
    known = list(dict.fromkeys(m for per in comparison.measures.values() for m in per))
    measures = known if measures is None else list(measures)
    unknown = [m for m in measures if m not in known]
    if unknown or not measures:
        raise ValueError(f"measures {unknown or measures} are not in the comparison: {known}")
    gaps = np.array([row[column] for row in rows], dtype=np.float64)
    values = {m: np.array([row.get(m, np.nan) for row in rows], dtype=np.float64)
              for m in measures}  # fmt: skip
    by_label: dict[str, dict[str, Any]] = {}
    if hparams is not None:
        by_label = read_hparams(hparams) if isinstance(hparams, (str, os.PathLike)) else {
            k: dict(v) for k, v in hparams.items()}  # fmt: skip
        missing = [label for label in labels if label not in by_label]
        if missing:
            raise ValueError(f"no hyperparameters for the models {missing[:5]}; give every model's")
        by_label = {label: by_label[label] for label in labels}
        names = {tuple(sorted(h)) for h in by_label.values()}
        if len(names) != 1:
            raise ValueError(f"models name different hyperparameters: {sorted(names)}")
    # one set of uniforms: every measure with all values finite gets the same resamples
    uniforms = np.random.default_rng(seed).random((num_bootstrap, len(labels)))
    tail = 100 * (1 - confidence) / 2
    tau, interval, granulated = {}, {}, {}
    for m in measures:
        kept = np.flatnonzero(np.isfinite(values[m]) & np.isfinite(gaps))
        x, y = values[m][kept], gaps[kept]
        tau[m] = float(kendall_tau(x, y)) if len(x) > 1 else math.nan
        resamples = (uniforms[:, : len(kept)] * len(kept)).astype(np.int64)
        chunk = max(1, 2_000_000 // max(len(kept) ** 2, 1))  # bounds the pair arrays' memory
        boot = np.concatenate([
            kendall_tau(x[r], y[r]) for r in np.split(resamples, range(chunk, num_bootstrap, chunk))
        ])  # fmt: skip
        boot = boot[np.isfinite(boot)]
        interval[m] = (
            (float(np.percentile(boot, tail)), float(np.percentile(boot, 100 - tail)))
            if len(boot) else (math.nan, math.nan)
        )  # fmt: skip
        if by_label:
            table = [by_label[label] for label in labels]
            granulated[m] = _granulated(values[m], gaps, table)
    settings = {"gap": gap, "num_bootstrap": num_bootstrap, "confidence": confidence,
                "seed": seed}  # fmt: skip
    return Correlation(labels, gaps, values, tau, interval, granulated, by_label, settings)


def write_correlation(correlation: Correlation, out_dir: str | os.PathLike) -> list[str]:
    """Write ``correlation.csv``, ``correlation.md`` and ``correlation.png`` into ``out_dir``.

    Returns:
        the paths written.
    """
    import matplotlib.pyplot as plt

    from . import plotting

    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f"correlation.{ext}") for ext in ("csv", "md", "png")]
    with open(paths[0], "w") as f:
        f.write(correlation.to_csv())
    with open(paths[1], "w") as f:
        f.write(correlation.to_markdown() + "\n")
    with plotting.landscape_style():
        fig = plotting.plot_correlation(correlation)
        plotting.save_figure(fig, paths[2])
    plt.close(fig)
    return paths
