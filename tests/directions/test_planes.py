"""Planes through three checkpoints, along Hessian curvature, and random-plane curvature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _shared import dense_hessian, gaussian_data, gaussian_mlp
from torch import nn

from landscape import Objective, compute_surface, planes, random_directions
from landscape.directions import (
    chance_curvature,
    checkpoint_plane,
    curvature_directions,
    directional_curvature,
)


def _model(seed: int = 0) -> nn.Module:
    return gaussian_mlp((3, 4, 2), seed=seed)


def _data():
    return gaussian_data(20, 3, 2)


def test_three_point_plane_shows_each_checkpoint_at_its_loss():
    a, b, c = _model(0), _model(1), _model(2)
    data = _data()
    plane = checkpoint_plane(_model(9), [a, b, c])
    objective = Objective(_model(9), data)
    dx, dy = plane.directions.x, plane.directions.y
    flat = [torch.cat([d[n].reshape(-1) for n in dx]) for d in (dx, dy)]
    assert float(flat[0] @ flat[0]) == pytest.approx(1.0, abs=1e-14)
    assert float(flat[1] @ flat[1]) == pytest.approx(1.0, abs=1e-14)
    assert abs(float(flat[0] @ flat[1])) < 1e-14
    coords = plane.coords
    dist = lambda s, t: math.sqrt(sum(float(((s[n] - t[n]) ** 2).sum()) for n in s))  # noqa: E731
    sa, sb, sc = (m.state_dict() for m in (a, b, c))
    assert np.linalg.norm(coords[1] - coords[0]) == pytest.approx(dist(sa, sb), rel=1e-13)
    assert np.linalg.norm(coords[2] - coords[0]) == pytest.approx(dist(sa, sc), rel=1e-13)
    assert np.linalg.norm(coords[2] - coords[1]) == pytest.approx(dist(sb, sc), rel=1e-13)
    xs, ys = np.unique(coords[:, 0]), np.unique(coords[:, 1])
    surface = compute_surface(objective.at(plane.origin), plane.directions, xs, ys, progress=False)
    for point, model in zip(coords, (a, b, c), strict=True):
        i, j = int(np.flatnonzero(xs == point[0])[0]), int(np.flatnonzero(ys == point[1])[0])
        own = objective(model.state_dict())["loss"]
        assert abs(surface["loss"][i, j] - own) < 1e-10
    np.testing.assert_allclose(plane.project([a, b, c]), coords, rtol=0, atol=1e-12)


def test_three_point_plane_refuses_collinear_points():
    a, b = _model(0), _model(1)
    mid = {n: (a.state_dict()[n] + b.state_dict()[n]) / 2 for n in a.state_dict()}
    with pytest.raises(ValueError, match="one line"):
        checkpoint_plane(_model(9), [a, b, mid])
    with pytest.raises(ValueError, match="three checkpoints"):
        checkpoint_plane(_model(9), [a, b])
    with pytest.raises(ValueError, match=r"expected checkpoint 2 to match .* got mis-shaped keys"):
        checkpoint_plane(_model(9), [a, b, {"0.weight": torch.zeros(5, 5)}])
    with pytest.raises(ValueError, match=r"checkpoint 1 .* got unexpected keys \(1\): extra"):
        checkpoint_plane(_model(9), [a, {**b.state_dict(), "extra": torch.zeros(1)}, mid])


def test_curvature_plane_and_chance_curvature_match_the_dense_hessian():
    model, data = _model(3), _data()
    objective = Objective(model, data)
    hessian = dense_hessian(model, data)[0].numpy()
    values, vectors = np.linalg.eigh(hessian)
    directions = curvature_directions(objective)
    assert directions.settings["lambda_max"] == pytest.approx(values[-1], rel=1e-7)
    assert directions.settings["lambda_min"] == pytest.approx(values[0], rel=1e-7, abs=1e-9)
    vx = torch.cat([t.reshape(-1) for t in directions.x.values()]).numpy()
    assert abs(vx @ vectors[:, -1]) == pytest.approx(1.0, abs=1e-6)
    randoms = random_directions(model, seed=0, ignore="none", norm="none")
    chance = chance_curvature(objective, randoms, num_probes=3 * len(values) + 3)
    assert chance.num_params == len(values)
    assert chance.expected == pytest.approx(np.trace(hessian) / len(values), rel=1e-8)
    assert chance.lambda_max == pytest.approx(values[-1], rel=1e-7)
    assert chance.lambda_min == pytest.approx(values[0], rel=1e-7, abs=1e-9)
    for d, along in zip((randoms.x, randoms.y), chance.along, strict=True):
        flat = torch.cat([d[n].reshape(-1) for n, _ in model.named_parameters()]).numpy()
        assert along == pytest.approx(flat @ hessian @ flat / (flat @ flat), rel=1e-10)


def test_directional_curvature_of_least_squares_is_exact():
    X = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    model = nn.Linear(2, 1, bias=False).double()
    objective = Objective(model, (X, torch.zeros(3, 1, dtype=torch.float64)), loss="mse")
    d = {"weight": torch.tensor([[1.0, -1.0]], dtype=torch.float64)}
    # loss = mean (w x)^2, Hessian 2 X^T X / n
    hessian = 2 * X.T @ X / 3
    v = d["weight"].reshape(-1)
    assert directional_curvature(objective, d) == pytest.approx(
        float(v @ hessian @ v / (v @ v)), rel=1e-14
    )
    with pytest.raises(ValueError, match="zero"):
        directional_curvature(objective, {"weight": torch.zeros(1, 2)})
    with pytest.raises(ValueError, match=r"weight: expected \(1, 2\), got \(2, 1\)"):
        directional_curvature(objective, {"weight": torch.ones(2, 1)})  # 0.3: broadcast


def _bn_cnn(seed: int) -> nn.Module:
    """A float32 BatchNorm CNN whose weights and running statistics come from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
        nn.Linear(6 * 5 * 5, 4),
    )  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
        model[1].running_mean.copy_(torch.rand(6, generator=g) * 2 - 1)
        model[1].running_var.copy_(torch.rand(6, generator=g) * 2 + 0.1)
    return model.eval()


def test_a_plane_of_batchnorm_checkpoints_moves_their_statistics_by_default(tmp_path):
    """Issue 26 item 5: with ``dir_type="weights"`` b and c are read with a's running
    statistics; the default for a model with floating buffers is ``"states"``."""
    from landscape import load_surface

    a, b, c = _bn_cnn(0), _bn_cnn(1), _bn_cnn(2)
    g = torch.Generator().manual_seed(3)
    data = (torch.randn(40, 3, 5, 5, generator=g), torch.randint(0, 4, (40,), generator=g))
    plane = checkpoint_plane(_bn_cnn(9), [a, b, c])
    assert plane.settings["dir_type"] == "states" and "buffers" not in plane.settings
    assert "1.running_var" in plane.directions.x
    objective = Objective(_bn_cnn(9), data)
    xs, ys = np.unique(plane.coords[:, 0]), np.unique(plane.coords[:, 1])
    path = tmp_path / "plane.h5"
    at = objective.at(plane.origin)
    surface = compute_surface(at, plane.directions, xs, ys, path=path, progress=False)
    for point, model in zip(plane.coords, (a, b, c), strict=True):
        i, j = int(np.flatnonzero(xs == point[0])[0]), int(np.flatnonzero(ys == point[1])[0])
        own = Objective(model, data)()["loss"]
        assert surface["loss"][i, j] == pytest.approx(own, rel=1e-4), (point, own)
    stored = load_surface(path)
    assert stored.attrs["dir_type"] == "states"
    assert "states" in stored.attrs["x_label"] and "states" in stored.attrs["y_label"]
    # explicit weights: as in 0.2 (buffers stay a's), and said so
    weights = checkpoint_plane(_bn_cnn(9), [a, b, c], dir_type="weights")
    assert weights.settings["dir_type"] == "weights" and weights.settings["buffers"] == "kept at a"
    assert sorted(weights.directions.x) == sorted(n for n, _ in a.named_parameters())
    labelled = compute_surface(at, weights.directions, [0.0], [0.0], progress=False)
    assert "kept at a" in labelled.attrs["x_label"]
    # a checkpoint without its statistics: weights, with a warning
    partial = {n: t for n, t in c.state_dict().items() if "running" not in n}
    with pytest.warns(RuntimeWarning, match="floating buffers"):
        assert checkpoint_plane(_bn_cnn(9), [a, b, partial]).settings["dir_type"] == "weights"


def test_a_plane_of_a_model_without_buffers_keeps_the_settings_of_0_2():
    plane = checkpoint_plane(_model(9), [_model(0), _model(1), _model(2)])
    assert set(plane.settings) == {"dir_type", "norm", "coords"}
    assert plane.settings["dir_type"] == "weights"
    with pytest.raises(ValueError, match="dir_type"):
        checkpoint_plane(_model(9), [_model(0), _model(1), _model(2)], dir_type="buffers")


def test_landscape_planes_is_an_alias_of_the_directions_modules():
    from landscape.directions import ChanceCurvature, CheckpointPlane

    assert planes.checkpoint_plane is checkpoint_plane and planes.CheckpointPlane is CheckpointPlane
    assert planes.chance_curvature is chance_curvature
    assert planes.ChanceCurvature is ChanceCurvature
    assert planes.curvature_directions is curvature_directions
    assert planes.directional_curvature is directional_curvature
