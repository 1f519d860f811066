"""The Tracker's eigenvalues state their error: the residual ``||H v - lambda v||`` of each
log, stored in the file, equal to a dense float64 computation and bounding the distance to
the true ``lambda_max``; the tracking defaults (tolerance, float64 cadence) and the cheap
per-log set-up (the loss from the operator's pass, the determinism check once)."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
import torch
from _shared import dense_hessian
from torch import nn

from landscape import Objective, Tracker, load_tracking
from landscape.tracking.eigenvalues import TOL

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def make_data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] - 0.7 * x[:, 2] > 0).long()


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))  # float32


def step(model, data, lr=0.5):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(data[0]), data[1]).backward()
    optimizer.step()


def float64_hessian(model, data):
    return dense_hessian(copy.deepcopy(model).double(), (data[0].double(), data[1]))[0]


def test_the_stored_residual_is_the_dense_float64_one_and_bounds_lambda_max(tmp_path):
    data, model = make_data(), make_model()
    path = tmp_path / "run.h5"
    tracker = Tracker(data, path=path, measures=["loss", "lambda_max"], verify_every=2)
    returned = []
    for s in range(4):
        logged = tracker.log(model, s)
        returned.append(logged)
        hessian = float64_hessian(model, data)
        vector = tracker._warm["lambda_max"].vector  # the logged eigenvector, float64
        value, residual = logged["lambda_max"], logged["lambda_max_residual"]
        dense = float((hessian @ vector - value * vector).norm())
        top = float(torch.linalg.eigvalsh(hessian)[-1])
        # float64 check (even logs): the same number; float32 products: their round-off
        assert residual == pytest.approx(dense, abs=1e-12 * top if s % 2 == 0 else 1e-5 * top)
        assert 0 < residual <= TOL * top  # the tracking default tolerance, float32 model
        assert abs(value - top) <= residual  # the true lambda_max within the stated bound
        step(model, data)
    run = load_tracking(path)
    stored = run.values["lambda_max_residual"].tolist()
    assert stored == [r["lambda_max_residual"] for r in returned]
    assert run.stderr["lambda_max_residual"].tolist() == [0.0] * 4
    assert tracker.run.values.keys() == {"loss", "lambda_max", "lambda_max_residual"}


def test_lambda_min_has_its_residual_too():
    data, model = make_data(), make_model()
    logged = Tracker(data, measures=["lambda_max", "lambda_min"]).log(model, 0)
    hessian = float64_hessian(model, data)
    low, high = torch.linalg.eigvalsh(hessian)[[0, -1]].tolist()
    assert abs(logged["lambda_min"] - low) <= logged["lambda_min_residual"]
    assert abs(logged["lambda_max"] - high) <= logged["lambda_max_residual"]


def test_a_file_without_residuals_is_read_and_continued(tmp_path):
    """A file written before the residual column (0.2): still read, and a run continuing
    it gains the column, NaN for the rows before."""
    data, model = make_data(), make_model()
    path = tmp_path / "old.h5"
    tracker = Tracker(data, path=path, measures=["loss", "lambda_max"])
    for s in range(2):
        tracker.log(model, s)
    with h5py.File(path, "a") as f:  # as version 0.2 wrote it
        group = f["tracking"]
        del group["values/lambda_max_residual"], group["stderr/lambda_max_residual"]
        group.attrs["measure_names"] = '["loss", "lambda_max"]'
    old = load_tracking(path)
    assert sorted(old.values) == ["lambda_max", "loss"] and old.steps.tolist() == [0, 1]
    continued = Tracker(data, path=path, measures=["loss", "lambda_max"])
    assert continued.log(model, 1) is None
    continued.log(model, 2)
    run = load_tracking(path)
    assert run.steps.tolist() == [0, 1, 2]
    assert np.isnan(run.values["lambda_max_residual"][:2]).all()
    assert run.values["lambda_max_residual"][2] > 0
    assert run.values["loss"][:2].tolist() == old.values["loss"].tolist()


def test_the_logged_loss_is_the_objectives_exactly():
    data, model = make_data(), make_model()
    tracker = Tracker(data, measures=["loss", "lambda_max"])
    for s in range(3):
        logged = tracker.log(model, s)
        assert logged["loss"] == Objective(copy.deepcopy(model), data)()["loss"]
        step(model, data)


def test_the_float64_check_cadence():
    data = make_data()
    assert Tracker(data, every=5).verify_every == 50  # default: every 10th log
    assert "verify_every" not in Tracker(data).settings
    assert Tracker(data, verify_every=1).settings["verify_every"] == 1
    with pytest.raises(ValueError, match=r"expected verify_every a multiple of every \(2\)"):
        Tracker(data, every=2, verify_every=3)
    with pytest.raises(TypeError, match="expected an int verify_every"):
        Tracker(data, verify_every=0.5)


def test_float64_models_keep_the_tight_default():
    data = (make_data()[0].double(), make_data()[1])
    model = make_model().double()
    logged = Tracker(data, measures=["lambda_max"]).log(model, 0)
    top = float(torch.linalg.eigvalsh(dense_hessian(model, data)[0])[-1])
    assert logged["lambda_max_residual"] <= 1e-8 * top
    assert logged["lambda_max"] == pytest.approx(top, abs=1e-10 * top)


def test_the_determinism_check_runs_at_the_first_log_only(monkeypatch):
    import landscape.tracking.eigenvalues as tracker_module

    built = []

    class Spy(tracker_module.HessianOperator):
        def __init__(self, *args, **kwargs):
            built.append((kwargs["check_deterministic"], kwargs["fingerprint"]))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tracker_module, "HessianOperator", Spy)
    data, model = make_data(), make_model()
    tracker = Tracker(data, measures=["lambda_max", "lambda_min"])
    for s in range(3):
        tracker.log(model, s)
    assert built == [(True, False), (False, False), (False, False)]  # one operator a log


def test_the_run_plot_draws_no_panel_for_a_residual():
    from matplotlib.figure import Figure

    from landscape.plotting import plot_tracking_run

    data, model = make_data(), make_model()
    tracker = Tracker(data, measures=["loss", "lambda_max"])
    for s in range(2):
        tracker.log(model, s)
    fig = plot_tracking_run(tracker.run, fig=Figure())
    assert [ax.get_ylabel() != "" for ax in fig.axes] == [True, True]


def test_lambda_min_keeps_the_lanczos_default_tolerance():
    """Near 0 a residual of 1e-2 ||H|| could exceed lambda_min itself: 1e-4 there."""
    data, model = make_data(), make_model()
    logged = Tracker(data, measures=["lambda_min"], max_hvps=60).log(model, 0)
    top = float(torch.linalg.eigvalsh(float64_hessian(model, data))[-1])
    assert logged["lambda_min_residual"] <= 1e-4 * top
