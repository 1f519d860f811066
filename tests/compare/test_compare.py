import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import landscape.data
from landscape.compare import Comparison, compare_checkpoints, plot_comparison, write_tables
from landscape.directions import random_directions
from landscape.evaluate import Objective
from landscape.sharpness import WarmStart, sharpness
from landscape.surface import compute_surface

MEASURES = ["worst_l2", "avg_l2", "rise"]
SETTINGS = dict(num_samples=4, seed=3)


def mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def data(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (40,), generator=g)


def run(tmp_path, **kwargs):
    options = dict(
        test_data=data(1), measures=MEASURES, line=[-1, 0, 1], num_directions=2,
        plane=([-1, 0, 1], [0, 1]), path=tmp_path / "c.h5", progress=False, **SETTINGS,
    )  # fmt: skip
    options.update(kwargs)
    return compare_checkpoints(mlp(0), {"a": mlp(1), "b": mlp(2).state_dict()}, data(0), **options)


def test_comparison_matches_direct_calls_and_resumes(tmp_path):
    result = run(tmp_path)
    model_b = mlp(2)
    objective = Objective(model_b, data(0))
    direct = sharpness(objective, MEASURES, **SETTINGS)
    for name in MEASURES:
        assert result.measures["b"][name].value == direct[name].value
        np.testing.assert_equal(result.measures["b"][name].stderr, direct[name].stderr)
    second = random_directions(model_b, num=1, seed=SETTINGS["seed"] + 1)
    line = compute_surface(model_b, data(0), second, [-1, 0, 1], progress=False)
    assert np.array_equal(result.lines["b"]["loss"][1], line["loss"])
    assert result.planes["a"]["loss"].shape == (3, 2)
    evaluation = result.evaluation["a"]
    assert evaluation["test_loss"] == Objective(mlp(1), data(1))()["loss"]
    row = result.table_rows()[0]
    assert row["gap_loss"] == pytest.approx(evaluation["test_loss"] - evaluation["train_loss"])
    assert "worst_l2_stderr" in row and "±" in result.to_markdown()
    # worst_l2 over one batch has no standard error: its cells show the value alone
    assert math.isnan(row["worst_l2_stderr"])
    table = result.to_markdown().splitlines()
    column = table[0].split(" | ").index("worst_l2")
    assert all("±" not in line.split(" | ")[column] for line in table[2:])
    assert all("nan" not in line for line in table)

    again = run(tmp_path)  # resumes: everything is read back, nothing recomputed
    for label in ("a", "b"):
        assert list(again.evaluation[label].items()) == list(result.evaluation[label].items())
        assert again.measures[label]["avg_l2"].value == result.measures[label]["avg_l2"].value
        assert np.array_equal(again.lines[label]["loss"], result.lines[label]["loss"])
        assert np.array_equal(again.planes[label]["loss"], result.planes[label]["loss"])

    with pytest.raises(ValueError, match="another comparison"):
        run(tmp_path, seed=4)
    assert run(tmp_path, seed=4, overwrite=True).measures["a"]["rise"].settings["seed"] == 4

    paths = write_tables(result, tmp_path) + plot_comparison(result, tmp_path)
    assert all((tmp_path / p).exists() for p in paths)
    assert (tmp_path / "compare.csv").read_text().startswith("checkpoint,train_loss")


def test_bad_comparisons_are_refused_before_work(tmp_path):
    with pytest.raises(ValueError, match="does not fit the architecture"):
        compare_checkpoints(mlp(0), {"a": mlp(1), "wide": nn.Linear(5, 3)}, data(0))
    with pytest.raises(ValueError, match="unknown sharpness measure"):
        compare_checkpoints(mlp(0), {"a": mlp(1)}, data(0), measures=["sharpest"])
    with pytest.raises(ValueError, match="rho"):
        compare_checkpoints(mlp(0), {"a": mlp(1)}, data(0), measures=["worst_l2"], rho=-1.0)
    with pytest.raises(ValueError, match="at least one checkpoint"):
        compare_checkpoints(mlp(0), {}, data(0))


def test_one_private_copy_and_one_fingerprint_per_data_set(tmp_path, monkeypatch):
    # 0.1 built 11 Objectives for two checkpoints: 10 deep copies of the model, 9 data
    # fingerprints. Now one Objective is re-pointed at each checkpoint.
    copies, depth = [], [0]
    original_copy = copy.deepcopy

    def counting_copy(obj, memo=None):
        if depth[0] == 0 and isinstance(obj, nn.Module):
            copies.append(type(obj).__name__)
        depth[0] += 1
        try:
            return original_copy(obj, memo)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(copy, "deepcopy", counting_copy)
    hashed = []
    original_fingerprint = getattr(landscape.data, "fingerprint", None)
    monkeypatch.setattr(
        landscape.data, "fingerprint", lambda b: hashed.append(1) or original_fingerprint(b),
        raising=False,
    )  # fmt: skip
    result = run(tmp_path, measures=["worst_l2", "avg_l2", "rise", "lambda_max"])
    assert copies == ["Sequential"]
    assert len(hashed) == 2  # the training data and the test data
    assert isinstance(result, Comparison) and result.settings["num_directions"] == 2


def test_loaded_comparison_equals_the_computed_one(tmp_path):
    result = run(tmp_path, plane=None)
    again = run(tmp_path, plane=None)
    assert again.evaluation == result.evaluation
    for label, measures in result.measures.items():
        np.testing.assert_equal(
            {n: (r.value, r.stderr) for n, r in again.measures[label].items()},
            {n: (r.value, r.stderr) for n, r in measures.items()},
        )
    for label in result.lines:
        assert np.array_equal(again.lines[label]["loss"], result.lines[label]["loss"])


def test_a_comparison_file_of_version_0_1_resumes(tmp_path, monkeypatch):
    import os
    import shutil
    import sys

    from _shared import TEST_DATA as here

    sys.path.insert(0, here)
    try:
        from make_compare_v0_1 import SETTINGS, models_and_data
    finally:
        sys.path.remove(here)
    arch, checkpoints, train = models_and_data()
    path = tmp_path / "old.h5"
    shutil.copy(os.path.join(here, "compare_v0_1.h5"), path)
    fresh = compare_checkpoints(arch, checkpoints, train, **SETTINGS)

    def refuse(*args, **kwargs):
        raise AssertionError("a finished checkpoint was computed again")

    monkeypatch.setattr("landscape.compare.compute_surface", refuse)
    monkeypatch.setattr("landscape.compare.sharpness", lambda *a, **k: {})  # settings check
    loaded = compare_checkpoints(arch, checkpoints, train, path=path, **SETTINGS)
    assert loaded.labels == ["first", "second"]
    for label in loaded.labels:
        for key, value in fresh.evaluation[label].items():
            assert loaded.evaluation[label][key] == pytest.approx(value, rel=1e-12)
        for name, result in fresh.measures[label].items():
            assert loaded.measures[label][name].value == pytest.approx(result.value, rel=1e-9)
        for kind in ("lines", "planes"):
            got, want = getattr(loaded, kind)[label], getattr(fresh, kind)[label]
            np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-12)


def test_a_comparison_takes_an_objective(tmp_path):
    """``objective=`` carries the data, loss and options; the result equals the built one's,
    and lambda_max warm-started across checkpoints is recorded as a flag."""
    checkpoints = {"a": mlp(1), "b": mlp(2)}
    options = dict(measures=["lambda_max", "avg_l2"], line=[0.0, 1.0], num_directions=1,
                   progress=False, **SETTINGS)  # fmt: skip
    objective = Objective(mlp(0), data(0), loss="cross_entropy", batch_size=16)
    start = WarmStart()
    given = compare_checkpoints(checkpoints=checkpoints, objective=objective,
                                path=tmp_path / "c.h5", warm_start=start, **options)  # fmt: skip
    built = compare_checkpoints(mlp(0), checkpoints, data(0), batch_size=16, **options)
    for label in checkpoints:
        assert given.evaluation[label] == built.evaluation[label]
        assert given.measures[label]["avg_l2"].value == built.measures[label]["avg_l2"].value
        assert given.measures[label]["lambda_max"].value == pytest.approx(
            built.measures[label]["lambda_max"].value, rel=1e-7
        )
    assert given.measures["b"]["lambda_max"].settings["warm_start"]
    assert given.settings["warm_start"] is True and start.vector is not None
    with pytest.raises(ValueError, match=r"expected the objective alone, got \['data'\]"):
        compare_checkpoints(checkpoints=checkpoints, data=data(0), objective=objective)
    with pytest.raises(ValueError, match=r"got \['loss'\] beside it"):
        compare_checkpoints(checkpoints=checkpoints, objective=objective, loss="mse")
    with pytest.raises(ValueError, match="expected a model and data, or an objective"):
        compare_checkpoints(checkpoints=checkpoints)


def test_differences_say_which_exceed_their_standard_errors():
    from landscape.sharpness import SharpnessResult

    def measures(trace, se):
        return {
            "trace": SharpnessResult("trace", trace, se, {}),
            "lambda_max": SharpnessResult("lambda_max", trace / 10, 0.0, {}),
            "rise": SharpnessResult("rise", 1.0, float("nan"), {}),
        }

    found = Comparison(
        {"a": {"train_loss": 0.1}, "b": {"train_loss": 0.1}},
        {"a": measures(10.0, 0.3), "b": measures(10.5, 0.4)},
        {},
    )
    rows = {row["quantity"]: row for row in found.differences("a", "b")}
    assert rows["trace"]["stderr"] == pytest.approx(0.5) and rows["trace"]["exceeds"] is False
    assert rows["trace"]["difference"] == pytest.approx(0.5)
    assert found.differences("a", "b", z=0.5)[1]["exceeds"] is True  # 0.5 > 0.5 * 0.5
    assert rows["lambda_max"]["exceeds"] is True  # exact values that differ
    assert rows["train_loss"]["exceeds"] is None  # exact here; its sampling error unknown
    assert rows["rise"]["exceeds"] is None  # no error known
