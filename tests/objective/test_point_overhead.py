"""The work of ``Objective.evaluate_points`` per call and per point that is not the model's
(issue 25, item 4): directions already on the model's device and dtype are used as they are
(0.2 called ``.to`` on each of their tensors at every chunk of points), and the points'
sums land in their rows whatever order the points were evaluated in (the centre first)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from landscape.directions import random_directions
from landscape.objective import Objective


def small_objective() -> tuple[Objective, nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
    data = (torch.randn(20, 5), torch.randint(0, 3, (20,)))
    return Objective(model, data, batch_size=8, points_per_pass=1), model


def test_directions_on_the_device_are_not_converted_per_chunk(monkeypatch):
    objective, model = small_objective()
    dirs = random_directions(model, seed=0)
    ids = {id(t) for d in (dirs.x, dirs.y) for t in d.values()}
    converted = []
    real = torch.Tensor.to

    def recording(self, *args, **kwargs):
        if id(self) in ids:
            converted.append(id(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recording)
    coords = np.array([[0.5, -0.5], [0.25, 0.0]])
    for _ in range(3):
        objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], coords)
    assert converted == []


def test_each_point_lands_in_its_row_whatever_the_order():
    """The centre goes first, so the other points are evaluated out of their order: each
    row equals the point evaluated alone, to the last bit, for the loss and the accuracy."""
    objective, model = small_objective()
    dirs = random_directions(model, seed=0)
    coords = np.array([[0.5, 0.0], [0.0, 0.0], [-0.5, 0.25], [0.0, 0.0], [1.0, 1.0]])
    together = objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], coords)
    for i, point in enumerate(coords):
        alone = objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], point[None])
        for name in objective.names:
            assert together[name][i] == alone[name][0], (name, i)
    assert together["loss"][1] == together["loss"][3] == objective()["loss"]
