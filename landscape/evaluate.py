"""Compatibility module: the names of 0.1's ``landscape.evaluate``, now in their own modules.

- :class:`~landscape.objective.Objective` and ``BatchLoss``: :mod:`landscape.objective`;
- :func:`~landscape.data.as_batches`: :mod:`landscape.data`;
- ``LossName``, ``MetricFn``, :func:`~landscape.losses.accuracy_sum`: :mod:`landscape.losses`;
- ``Precision``: :mod:`landscape.objective`.

Every name is re-exported without a warning, so 0.1 code keeps working unchanged; new code
imports from the modules above.
"""

from .data import DEFAULT_BATCH_SIZE, as_batches
from .losses import LossName, MetricFn, accuracy_sum
from .objective import BatchLoss, Objective, Precision

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "BatchLoss",
    "LossName",
    "MetricFn",
    "Objective",
    "Precision",
    "accuracy_sum",
    "as_batches",
]
