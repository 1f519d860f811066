"""What a comparison found: the :class:`Comparison` result, its table and differences."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..paths import BarrierMatrix
from ..results import Result, format_estimate, rows_to_csv
from ..sharpness import SharpnessResult
from ..surface import Surface

__all__ = ["Comparison"]


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
        barriers: the pairwise loss barriers of the checkpoints
            (:class:`~landscape.paths.BarrierMatrix`), or ``None`` when not asked for.
    """

    evaluation: dict[str, dict[str, float]]
    measures: dict[str, dict[str, SharpnessResult]]
    lines: dict[str, Surface]
    planes: dict[str, Surface] = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)
    settings: dict[str, Any] = field(default_factory=dict)
    barriers: BarrierMatrix | None = None

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
