"""Planes through three checkpoints, along Hessian curvature, and random-plane curvature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape import Objective, compute_surface, random_directions
from landscape.planes import (
    chance_curvature,
    checkpoint_plane,
    curvature_directions,
    directional_curvature,
)


def _model(seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return model


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(20, 3, generator=g, dtype=torch.float64), torch.randint(
        0, 2, (20,), generator=g
    )


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


def _dense_hessian(model: nn.Module, data) -> tuple[np.ndarray, list[str]]:
    X, y = data
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]

    def loss(flat):
        parts = torch.split(flat, sizes)
        params = {n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)}
        return nn.functional.cross_entropy(functional_call(model, params, (X,)), y)

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return torch.autograd.functional.hessian(loss, flat).numpy(), names


def test_curvature_plane_and_chance_curvature_match_the_dense_hessian():
    model, data = _model(3), _data()
    objective = Objective(model, data)
    hessian, _ = _dense_hessian(model, data)
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
