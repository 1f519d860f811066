"""landscape.evaluate is 0.1's module path: every name it had still imports from it, and is
the same object as in the modules that now hold it."""

from __future__ import annotations

import warnings


def test_old_names_import_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from landscape import evaluate
    from landscape import data, losses, objective

    assert evaluate.Objective is objective.Objective
    assert evaluate.BatchLoss is objective.BatchLoss
    assert evaluate.as_batches is data.as_batches
    assert evaluate.accuracy_sum is losses.accuracy_sum
    assert evaluate.LossName is losses.LossName and evaluate.MetricFn is losses.MetricFn
    assert evaluate.Precision is objective.Precision
    assert evaluate.DEFAULT_BATCH_SIZE == data.DEFAULT_BATCH_SIZE == 1024
