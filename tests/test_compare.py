import numpy as np
import pytest
import torch
from torch import nn

from landscape.compare import compare_checkpoints, plot_comparison, write_tables
from landscape.directions import random_directions
from landscape.evaluate import Objective
from landscape.sharpness import sharpness
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
        assert result.measures["b"][name].stderr == direct[name].stderr
    second = random_directions(model_b, num=1, seed=SETTINGS["seed"] + 1)
    line = compute_surface(model_b, data(0), second, [-1, 0, 1], progress=False)
    assert np.array_equal(result.lines["b"]["loss"][1], line["loss"])
    assert result.planes["a"]["loss"].shape == (3, 2)
    evaluation = result.evaluation["a"]
    assert evaluation["test_loss"] == Objective(mlp(1), data(1))()["loss"]
    row = result.table_rows()[0]
    assert row["gap_loss"] == pytest.approx(evaluation["test_loss"] - evaluation["train_loss"])
    assert "worst_l2_stderr" in row and "±" in result.to_markdown()

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
