"""``Tracker(write_every=)``: logs appended to the file a few at a time, the same rows as
one at a time; ``flush`` and ``run`` write those held."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape import Tracker, load_tracking
from landscape.storage.tracking import append_tracking_rows

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def make_data(n=32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, (x[:, 0] > 0).long()


def make_model():
    torch.manual_seed(0)
    return nn.Linear(3, 2).double()


def test_batched_writes_store_the_same_rows(tmp_path):
    data, model = make_data(), make_model()
    measures = ["loss", "lambda_max", "slice"]
    one = Tracker(data, path=tmp_path / "one.h5", measures=measures, slice_x=[-1.0, 1.0])
    few = Tracker(data, path=tmp_path / "few.h5", measures=measures, slice_x=[-1.0, 1.0],
                  write_every=3)  # fmt: skip
    for step in range(5):
        a, b = one.log(model, step), few.log(model, step)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        with torch.no_grad():
            model.weight.mul_(0.9)
        written = load_tracking(tmp_path / "few.h5").steps.tolist()
        assert written == ([0, 1, 2] if step >= 2 else [])  # 3 at a time, 2 held
    assert few.run.steps.tolist() == [0, 1, 2, 3, 4]  # reading the run writes them
    a, b = load_tracking(tmp_path / "one.h5"), load_tracking(tmp_path / "few.h5")
    assert a.steps.tolist() == b.steps.tolist()
    for name in a.values:
        assert a.values[name].tolist() == b.values[name].tolist()
    assert a.stderr.keys() == b.stderr.keys() and a.settings == b.settings
    few.flush()  # nothing held: no change
    assert load_tracking(tmp_path / "few.h5").steps.tolist() == [0, 1, 2, 3, 4]


def test_flush_writes_the_held_logs_and_a_restart_continues(tmp_path):
    data, model, path = make_data(), make_model(), tmp_path / "run.h5"
    tracker = Tracker(data, path=path, measures=["loss"], write_every=10)
    for step in range(3):
        tracker.log(model, step)
    assert load_tracking(path).steps.tolist() == []
    tracker.flush()
    assert load_tracking(path).steps.tolist() == [0, 1, 2]
    again = Tracker(data, path=path, measures=["loss"], write_every=10)
    assert again.log(model, 2) is None and again.log(model, 3) is not None
    assert again.run.steps.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="expected a positive int write_every|write_every"):
        Tracker(data, write_every=0)
    append_tracking_rows(path, [])  # no rows: the file is not touched
    assert load_tracking(path).steps.tolist() == [0, 1, 2, 3]
