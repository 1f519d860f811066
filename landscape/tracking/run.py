"""What a :class:`~landscape.tracking.Tracker` logged: the :class:`TrackingRun` result,
and :func:`load_tracking` to read one back from a file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..results import Result
from ..storage.tracking import read_tracking

__all__ = ["TrackingRun", "load_tracking"]


@dataclass(frozen=True, eq=False)
class TrackingRun(Result):
    """Measures logged during training; compared by value.

    Attributes:
        steps: int array ``(n,)`` of the logged steps, increasing.
        values: ``{measure: array}``, ``(n,)`` per measure, ``(n, len(slice_x))`` for the
            slice (coordinates in ``settings["slice_x"]``); beside ``lambda_max`` and
            ``lambda_min`` their residuals ``<measure>_residual`` (NaN in rows of files
            written before them), beside thresholded measures ``<measure>_threshold``.
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
