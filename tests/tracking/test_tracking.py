"""Tracker: logged values equal direct computations, warm starts, restarts, files, plots."""

from __future__ import annotations

import copy
import dataclasses
import math

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from _shared import dense_hessian
from torch import nn

import landscape
from landscape import Objective, Tracker, load_tracking
from landscape.cli import main
from landscape.directions import random_direction
from landscape.hessian import HessianOperator
from landscape.linalg import dense_operator, lanczos_eigenpairs
from landscape.plotting import plot_tracking
from landscape.sharpness import MEASURES, WarmStart, sharpness
from landscape.storage.tracking import append_tracking, prepare_tracking, read_tracking


def make_data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).long()


def make_model(hidden=0, seed=0):
    torch.manual_seed(seed)
    if hidden:
        return nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 2)).double()
    return nn.Linear(3, 2).double()


def train(model, data, steps, tracker=None, start=0, lr=0.5):
    """Full-batch gradient descent, logging each step before its update."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(start, steps):
        if tracker is not None:
            tracker.log(model, step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data[0]), data[1]).backward()
        optimizer.step()


def test_logged_values_equal_direct_computations_at_the_same_weights():
    data = make_data()
    model = make_model()
    measures = ["loss", "accuracy", "lambda_max", "lambda_min", "trace", "slice", "fisher_rao"]
    tracker = Tracker(data, every=2, measures=measures, num_probes=30, trace_every=2,
                      slice_x=[-0.5, 0.0, 0.5])  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(5):
        logged = tracker.log(model, step)
        assert (logged is None) == (step % 2 == 1)
        if logged is not None:
            objective = Objective(copy.deepcopy(model), data)
            direct = objective()
            assert logged["loss"] == direct["loss"] and logged["accuracy"] == direct["accuracy"]
            eigenvalues = torch.linalg.eigvalsh(dense_hessian(model, data)[0])
            assert logged["lambda_max"] == pytest.approx(float(eigenvalues[-1]), abs=1e-8)
            assert logged["lambda_min"] == pytest.approx(float(eigenvalues[0]), abs=1e-8)
            # 30 Hutch++ probes sketch all 8 dimensions: the trace is exact
            assert logged["trace"] == pytest.approx(float(eigenvalues.sum()), abs=1e-9)
            d = random_direction(model, norm="filter", seed=0)
            for x, value in zip([-0.5, 0.0, 0.5], logged["slice"], strict=True):
                moved = copy.deepcopy(model)
                with torch.no_grad():
                    for name, p in moved.named_parameters():
                        p.add_(x * d[name])
                    expected = nn.functional.cross_entropy(moved(data[0]), data[1])
                assert value == pytest.approx(float(expected), rel=1e-12)
            fisher = sharpness(objective, ["fisher_rao"])["fisher_rao"].value
            assert logged["fisher_rao"] == pytest.approx(fisher, rel=1e-12)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data[0]), data[1]).backward()
        optimizer.step()
    run = tracker.run
    assert run.steps.tolist() == [0, 2, 4]
    assert run.values["slice"].shape == (3, 3) and run.stderr["trace"].shape == (3,)


def test_warm_started_lambda_max_equals_a_cold_lanczos_run():
    data = make_data()
    model = make_model(hidden=8)
    warm = Tracker(data, measures=["lambda_max", "lambda_min"])
    cold = Tracker(data, measures=["lambda_max", "lambda_min"], warm_start=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(4):
        a, b = warm.log(model, step), cold.log(model, step)
        op = HessianOperator(Objective(model, data))
        reference = lanczos_eigenpairs(op, 1, which="LA", seed=5)
        tol = 1e-8 * abs(reference.values[0])
        assert a["lambda_max"] == pytest.approx(reference.values[0], abs=tol)
        assert a["lambda_max"] == pytest.approx(b["lambda_max"], abs=tol)
        assert a["lambda_min"] == pytest.approx(b["lambda_min"], abs=tol)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data[0]), data[1]).backward()
        optimizer.step()


def test_lanczos_from_an_eigenvector_needs_few_products():
    matrix = torch.diag(torch.arange(1.0, 41.0, dtype=torch.float64))
    start = torch.zeros(40, dtype=torch.float64)
    start[-1], start[0] = 1.0, 1e-3  # nearly the top eigenvector
    cold = lanczos_eigenpairs(dense_operator(matrix), 1)
    warm = lanczos_eigenpairs(dense_operator(matrix), 1, start=start)
    assert warm.converged and warm.values[0] == pytest.approx(40.0, abs=1e-6)
    assert warm.num_matvecs < cold.num_matvecs / 2
    with pytest.raises(ValueError, match="start must have shape"):
        lanczos_eigenpairs(dense_operator(matrix), 1, start=torch.ones(39, dtype=torch.float64))


def test_a_restarted_run_appends_without_duplicates_or_gaps(tmp_path):
    path = tmp_path / "run.h5"
    data = make_data()
    measures = ["loss", "lambda_max", "trace"]
    options = dict(path=path, every=2, measures=measures, num_probes=12, trace_every=2)
    whole = make_model()
    train(whole, data, 10, Tracker(data, **{**options, "path": tmp_path / "whole.h5"}))
    # the first process logs 0, 2, 4 and is killed after step 5; a new one restarts from
    # the checkpoint it saved at step 4
    first, killed = make_model(), Tracker(data, **options)
    train(first, data, 4, killed)
    checkpoint = copy.deepcopy(first.state_dict())
    train(first, data, 6, killed, start=4)
    restarted = make_model()
    restarted.load_state_dict(checkpoint)
    tracker = Tracker(data, **options)
    assert tracker.log(restarted, 4) is None  # recorded before the kill
    train(restarted, data, 10, tracker, start=4)
    run, reference = load_tracking(path), load_tracking(tmp_path / "whole.h5")
    assert run.steps.tolist() == reference.steps.tolist() == [0, 2, 4, 6, 8]
    assert run.values["loss"].tolist() == reference.values["loss"].tolist()
    assert run.values["trace"].tolist() == reference.values["trace"].tolist()
    np.testing.assert_allclose(run.values["lambda_max"], reference.values["lambda_max"], rtol=1e-7)
    assert run.settings == reference.settings


def test_other_settings_are_refused_naming_the_setting(tmp_path):
    path = tmp_path / "run.h5"
    data, model = make_data(), make_model()
    Tracker(data, path=path, every=2, lr=0.1).log(model, 0)
    for change, name in (({"every": 3}, "every"), ({"lr": 0.2}, "lr"),
                         ({"measures": ["loss"]}, "measures")):  # fmt: skip
        options = {"path": path, "every": 2, "lr": 0.1, **change}
        with pytest.raises(ValueError, match=f"other settings .*{name}: file"):
            Tracker(data, **options).log(model, 2)
    with pytest.raises(ValueError, match="data_sha256"):
        Tracker(make_data(seed=1), path=path, every=2, lr=0.1).log(model, 2)
    assert load_tracking(path).steps.tolist() == [0]


def test_bad_options_are_refused():
    data = make_data()
    with pytest.raises(ValueError, match="unknown measures"):
        Tracker(data, measures=["sharpest"])
    with pytest.raises(ValueError, match="every must be"):
        Tracker(data, every=0)
    with pytest.raises(ValueError, match="none is among the measures"):
        Tracker(data, measures=["loss"], rho=0.1)
    with pytest.raises(ValueError, match="accuracy needs a classification loss"):
        Tracker((data[0], data[0][:, :2]), measures=["accuracy"], loss="mse").log(make_model(), 0)


def test_the_model_is_not_changed():
    data = make_data()
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double()
    model.train()
    model(data[0]).sum().backward()
    before = copy.deepcopy(model.state_dict())
    grads = [p.grad.clone() for p in model.parameters()]
    tracker = Tracker(data, measures=["loss", "lambda_max", "trace", "slice"], num_probes=6)
    tracker.log(model, 0)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))


def test_the_storage_round_trip_drops_rows_past_the_last_step(tmp_path):
    path = tmp_path / "t.h5"
    settings = {"measures": ["loss", "slice"], "every": 1, "lr": None, "slice_x": [0.0, 1.0]}
    shapes = {"loss": (), "slice": (2,)}
    assert prepare_tracking(path, settings, shapes).tolist() == []
    append_tracking(path, 3, {"loss": 0.5, "slice": np.array([0.5, 0.7])}, {"loss": 0.0})
    append_tracking(path, 7, {"loss": 0.25, "slice": np.array([0.25, 0.4])}, {"loss": 0.1})
    found = read_tracking(path)
    assert found["steps"].tolist() == [3, 7] and found["settings"] == settings
    assert found["values"]["slice"].tolist() == [[0.5, 0.7], [0.25, 0.4]]
    assert found["stderr"]["loss"].tolist() == [0.0, 0.1] and "slice" not in found["stderr"]
    with h5py.File(path, "a") as f:  # a process killed after writing a value, before its step
        f["tracking/values/loss"].resize(3, axis=0)
    assert prepare_tracking(path, settings, shapes).tolist() == [3, 7]
    with h5py.File(path) as f:
        assert len(f["tracking/values/loss"]) == 2
    with pytest.raises(ValueError, match="expected values for"):
        append_tracking(path, 8, {"loss": 0.1}, {"loss": 0.0})


def test_plot_tracking_draws_the_measure_and_the_stability_line(tmp_path):
    data, model = make_data(), make_model()
    tracker = Tracker(data, path=tmp_path / "run.h5", measures=["lambda_max", "trace", "slice"],
                      lr=0.5, num_probes=6, slice_x=[-1.0, 0.0, 1.0])  # fmt: skip
    train(model, data, 3, tracker)
    run = load_tracking(tmp_path / "run.h5")
    fig, ax = plt.subplots()
    before = dict(plt.rcParams)
    plot_tracking(run, "lambda_max", ax)
    assert ax.lines[0].get_xdata().tolist() == [0, 1, 2]
    assert ax.lines[0].get_ydata().tolist() == run.values["lambda_max"].tolist()
    assert list(ax.lines[1].get_ydata()) == [4.0, 4.0]  # 2 / lr
    assert dict(plt.rcParams) == before
    ax = plot_tracking(run, "slice", fig.add_subplot(2, 1, 2))
    assert len(ax.lines) == 3
    assert ax.lines[2].get_ydata().tolist() == run.values["slice"][2].tolist()
    with pytest.raises(ValueError, match="has no 'loss'"):
        plot_tracking(run, "loss")
    plt.close("all")
    out = tmp_path / "run.png"
    assert main(["plot", str(tmp_path / "run.h5"), "--kind", "tracking", "-o", str(out)]) == 0
    assert out.stat().st_size > 0
    assert landscape.plot_tracking is plot_tracking


def test_lambda_max_and_trace_are_the_registry_measures(monkeypatch):
    """One estimator per name: the Tracker's values are the registry's, with its settings
    (the warm start a WarmStart that went through the same calls), bit for bit."""
    calls = []
    for name in ("lambda_max", "trace"):
        measure = MEASURES[name]

        def spy(objective, *, _function=measure.function, **settings):
            calls.append((settings["quantity"], sorted(settings)))
            return _function(objective, **settings)

        monkeypatch.setitem(MEASURES, name, dataclasses.replace(measure, function=spy))
    data, model = make_data(), make_model(hidden=4)
    tracker = Tracker(data, measures=["lambda_max", "trace"], num_probes=9, trace_every=1,
                      tol=1e-6, max_hvps=200, seed=3)  # fmt: skip
    start = WarmStart()
    for step in range(2):
        logged = tracker.log(model, step)
        settings = dict(num_probes=9, tol=1e-6, max_hvps=200, seed=3, warm_start=start)
        expected = sharpness(Objective(model, data), ["lambda_max", "trace"], **settings)
        assert logged["lambda_max"] == expected["lambda_max"].value
        assert logged["trace"] == expected["trace"].value
        assert tracker.run.stderr["trace"][step] == expected["trace"].stderr
        train(model, data, 1)
    assert expected["lambda_max"].settings["warm_start"]
    # the tracker's trace, then both directly: the tracker's lambda_max is the measure's
    # own Lanczos (extreme_eigenvalue) on an operator it builds once a log
    assert [c[0] for c in calls] == ["trace", "lambda_max", "trace"] * 2
    assert calls[0][1] == ["num_probes", "progress", "quantity", "seed"]


def test_log_prints_nothing_unless_progress_is_asked(capfd):
    data, model = make_data(), make_model()
    measures = ["loss", "lambda_max", "trace", "fisher_rao"]
    Tracker(data, measures=measures, num_probes=6).log(model, 0)
    assert capfd.readouterr().err == ""  # 0.2 printed a bar at every log
    Tracker(data, measures=measures, num_probes=6, progress=True).log(model, 0)
    shown = capfd.readouterr().err
    assert all(name in shown for name in ("lambda_max", "trace", "fisher_rao"))


def test_the_trace_is_computed_at_its_cadence_and_nan_between(tmp_path):
    data, model = make_data(), make_model()
    path = tmp_path / "run.h5"
    tracker = Tracker(data, path=path, every=2, measures=["loss", "trace"], trace_every=4,
                      num_probes=6)  # fmt: skip
    for step in range(10):
        logged = tracker.log(model, step)
        if step in (0, 4, 8):
            registry = sharpness(Objective(model, data), ["trace"], num_probes=6, progress=False)
            assert logged["trace"] == registry["trace"].value
        elif step % 2 == 0:
            assert math.isnan(logged["trace"]) and not math.isnan(logged["loss"])
        train(model, data, step + 1, start=step)
    run = load_tracking(path)
    assert run.steps.tolist() == [0, 2, 4, 6, 8]
    assert np.isnan(run.values["trace"]).tolist() == [False, True, False, True, False]
    assert np.isnan(run.stderr["trace"]).tolist() == [False, True, False, True, False]
    assert run.settings["trace_every"] == 4 and run.settings["num_probes"] == 6
    assert Tracker(data, every=5).trace_every == 50  # default: every 10th log
    with pytest.raises(ValueError, match=r"expected trace_every a multiple of every \(2\), got 3"):
        Tracker(data, every=2, trace_every=3)
    with pytest.raises(TypeError, match="expected an int trace_every"):
        Tracker(data, trace_every=1.5)


def test_a_tracker_takes_an_objective(tmp_path):
    data, model = make_data(), make_model()
    objective = Objective(copy.deepcopy(model), data, batch_size=16)
    measures = ["loss", "accuracy", "lambda_max"]
    given = Tracker(objective=objective, measures=measures).log(model, 0)
    built = Tracker(data, batch_size=16, measures=measures).log(model, 0)
    assert given == built
    with pytest.raises(ValueError, match="expected data or an objective, got both"):
        Tracker(data, objective=objective)
    with pytest.raises(ValueError, match="expected data or an objective, got neither"):
        Tracker()
    with pytest.raises(
        ValueError, match=r"expected the loss options of the objective, got \['loss'\]"
    ):
        Tracker(objective=objective, loss="mse")
    with pytest.raises(TypeError, match="expected a landscape Objective for objective"):
        Tracker(objective=data)
