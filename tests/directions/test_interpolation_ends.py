"""An interpolation line made from ``interpolation_direction`` alone is exact at both ends,
BatchNorm running statistics included (issue 26 item 4)."""

import numpy as np
import pytest
import torch
from torch import nn

from landscape import Objective, compute_surface
from landscape.directions import Directions, Interpolation, interpolation_direction
from landscape.params import model_state, point_state


def bn_cnn(seed: int) -> nn.Module:
    """A float32 BatchNorm CNN whose weights and running statistics come from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 4),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
        model[1].running_mean.copy_(torch.rand(6, generator=g) * 0.4 - 0.2)
        model[1].running_var.copy_(torch.rand(6, generator=g) + 0.5)
        model[1].num_batches_tracked.fill_(seed)
    return model.eval()


def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(41, 3, 5, 5, generator=g), torch.randint(0, 4, (41,), generator=g)


@pytest.mark.parametrize("points_per_pass", [1, 3])
def test_a_line_from_interpolation_direction_ends_at_the_end_checkpoint(points_per_pass):
    a, b = bn_cnn(0), bn_cnn(1)
    d = interpolation_direction(a, b.state_dict(), dir_type="states")
    assert isinstance(d, Interpolation) and isinstance(d, dict)
    start, end = model_state(a, "states"), b.state_dict()
    naive = {n: start[n] + 1.0 * t for n, t in d.items()}
    assert any(not torch.equal(naive[n], end[n]) for n in d)  # a + 1 * (b - a) is not b
    line = Directions(d, kind="interpolation")
    # the state at t = 1: b's floating tensors bit for bit, running statistics included
    at_one = point_state(start, [line.x], [1.0], ends=[line.x_end])
    for name in d:
        assert torch.equal(at_one[name], end[name]), name
    assert {"1.running_mean", "1.running_var"} <= set(d)
    ts = [-0.5, 0.0, 0.5, 1.0, 1.5]
    objective = Objective(a, data(), points_per_pass=points_per_pass)
    surface = compute_surface(objective, line, ts, progress=False)
    at_a = Objective(a, data())()
    at_b = Objective(b, data())()
    # one point per pass is b's own evaluation, to the last bit; K points through vmap batch
    # the convolutions, so their float32 logits may differ in the last bits (the float64
    # cross-entropy shows it: 2.6e-8 here)
    rel = 0 if points_per_pass == 1 else 1e-6
    for name in ("loss", "accuracy"):
        assert surface[name][1] == at_a[name]
        assert surface[name][3] == pytest.approx(at_b[name], rel=rel)


def test_an_interpolation_direction_used_elsewhere_is_a_plain_direction():
    """Centred away from the start, the end does not apply: ``base + t d`` as before."""
    a, b, c = bn_cnn(0), bn_cnn(1), bn_cnn(2)
    d = interpolation_direction(a, b, dir_type="states")
    surface = compute_surface(c, data(), Directions(d), [0.0, 0.25, 1.0], progress=False)
    objective = Objective(c, data())
    plain = objective.evaluate_points(
        objective.base_state, [dict(d)], np.array([[0.0], [0.25], [1.0]])
    )
    np.testing.assert_array_equal(surface["loss"], plain["loss"])
