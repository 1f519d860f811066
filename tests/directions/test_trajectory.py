"""Training trajectories on their PCA plane: variance, projection, true vs projected loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _shared import gaussian_data, gaussian_mlp
from torch import nn

from landscape import Objective
from landscape.trajectory import load_trajectory, trajectory_plane


def _model() -> nn.Module:
    return gaussian_mlp((4, 6, 3), seed=0)


def _data():
    return gaussian_data(30, 4, 3)


def _run(model: nn.Module, data, num: int = 8) -> list[dict[str, torch.Tensor]]:
    """Checkpoints of plain gradient descent (deterministic)."""
    X, y = data
    model = nn.Sequential(*[m for m in model])  # same modules, trained in place below
    states = [{n: t.clone() for n, t in model.state_dict().items()}]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(num - 1):
        for _ in range(3):
            loss = nn.functional.cross_entropy(model(X), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        states.append({n: t.clone() for n, t in model.state_dict().items()})
    return states


def test_explained_variance_equals_sklearn_pca_and_final_is_exact():
    PCA = pytest.importorskip("sklearn.decomposition").PCA  # noqa: N806 (a class)
    model, data = _model(), _data()
    states = _run(_model(), data)
    objective = Objective(model, data)
    result = trajectory_plane(objective, states, steps=range(0, 24, 3), surface=False)
    final = states[-1]
    names = [n for n, t in final.items() if t.dim() > 1]  # ignore="biasbn": weights only
    matrix = np.stack(
        [torch.cat([(s[n] - final[n]).reshape(-1) for n in names]).numpy() for s in states]
    )
    expected = PCA(n_components=2).fit(matrix).explained_variance_ratio_
    np.testing.assert_allclose(result.explained_variance, expected, rtol=1e-12, atol=0)
    assert result.steps.tolist() == list(range(0, 24, 3))
    assert result.coords.shape == (8, 2)
    np.testing.assert_array_equal(result.coords[-1], [0.0, 0.0])
    # the final checkpoint is the plane's origin: its projected loss is its own loss
    assert result.projected["loss"][-1] == result.true["loss"][-1]
    for i, state in enumerate(states):
        assert result.true["loss"][i] == objective(state)["loss"]
    assert result.surface is None


def test_checkpoints_in_the_plane_project_to_their_own_loss(tmp_path):
    model, data = _model(), _data()
    final = {n: t.clone() for n, t in model.state_dict().items()}
    g = torch.Generator().manual_seed(5)
    u = {n: torch.randn(t.shape, generator=g, dtype=torch.float64) for n, t in final.items()}
    v = {n: torch.randn(t.shape, generator=g, dtype=torch.float64) for n, t in final.items()}
    for d in (u, v):  # the PCA leaves biases out: keep the run in the weights' plane
        for t in d.values():
            if t.dim() <= 1:
                t.zero_()
    coefs = [(0.3, -0.2), (0.5, 0.1), (0.2, 0.4), (-0.1, 0.2), (0.0, 0.0)]
    states = [{n: final[n] + a * u[n] + b * v[n] for n in final} for a, b in coefs]
    objective = Objective(model, data)
    out = tmp_path / "t.h5"
    result = trajectory_plane(objective, states, num_points=5, path=out)
    np.testing.assert_allclose(result.projected["loss"], result.true["loss"], rtol=0, atol=1e-10)
    assert result.explained_variance.sum() == pytest.approx(1.0, abs=1e-12)
    surface = result.surface
    assert surface is not None and surface["loss"].shape == (5, 5)
    assert (
        surface.x.min() < result.coords[:, 0].min() and surface.x.max() > result.coords[:, 0].max()
    )
    assert load_trajectory(out) == result


def test_trajectory_needs_three_checkpoints_and_one_label_each():
    model, data = _model(), _data()
    states = _run(_model(), data, num=3)
    with pytest.raises(ValueError, match="at least 3"):
        trajectory_plane(Objective(model, data), states[:2], surface=False)
    with pytest.raises(ValueError, match="one step label"):
        trajectory_plane(Objective(model, data), states, steps=[1, 2], surface=False)
