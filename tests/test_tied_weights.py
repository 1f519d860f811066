"""Tied weights (an embedding shared with the output head) are one parameter everywhere.

The model mimics GPT-2: the embedding ``wte`` comes first in ``named_parameters()``, and
``safetensors.torch.save_model`` keeps the tied tensor under ``lm_head.weight`` (the name
that sorts first). Every value is checked against a computation by hand that uses one
shared tensor in both places.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _shared import dense_hessian_of
from safetensors.torch import save_model
from torch import nn

from landscape import compute_surface, load_checkpoint, random_directions
from landscape.checkpoint import load_state
from landscape.hessian import HessianOperator, hessian_eigenpairs
from landscape.objective import Objective
from landscape.params import expand_tied, merge_tied, model_state, tied_names
from landscape.planes import checkpoint_plane
from landscape.sharpness import sharpness
from landscape.trajectory import trajectory_plane

f64 = torch.float64
V, D, N = 7, 4, 12
WEIGHTS = ["wte.weight", "hidden.weight", "hidden.bias"]


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(V, D)
        self.hidden = nn.Linear(D, D)
        self.lm_head = nn.Linear(D, V, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lm_head(torch.tanh(self.hidden(self.wte(tokens))))


def by_hand(w: torch.Tensor, hidden_w: torch.Tensor, hidden_b: torch.Tensor, data) -> torch.Tensor:
    """The mean cross-entropy with ``w`` as both the embedding and the output head."""
    tokens, targets = data
    h = torch.tanh(F.linear(w[tokens], hidden_w, hidden_b))
    return F.cross_entropy(F.linear(h, w), targets)


def make_model(seed: int = 0) -> TiedLM:
    torch.manual_seed(seed)
    return TiedLM().double()


def make_data():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, V, (N,), generator=g), torch.randint(0, V, (N,), generator=g)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


def assert_unchanged(model: TiedLM, before: dict[str, torch.Tensor]) -> None:
    assert model.lm_head.weight is model.wte.weight
    after = model.state_dict()
    assert list(after) == list(before)
    for name, t in before.items():
        assert torch.equal(after[name], t), name


def test_tied_names_and_one_entry_per_tied_tensor():
    model = make_model()
    assert tied_names(model) == {"lm_head.weight": "wte.weight"}
    assert list(model_state(model, "weights")) == WEIGHTS
    assert list(model_state(model, "states")) == WEIGHTS
    for dir_type in ("weights", "states"):
        dirs = random_directions(model, dir_type=dir_type, seed=0)
        assert list(dirs.x) == WEIGHTS and list(dirs.y) == WEIGHTS


def test_merge_and_expand_tied():
    tied = {"lm_head.weight": "wte.weight"}
    w, other = torch.ones(2), torch.zeros(2)
    assert list(merge_tied({"lm_head.weight": w, "b": other}, tied)) == ["wte.weight", "b"]
    assert merge_tied({"wte.weight": w, "lm_head.weight": w.clone()}, tied)["wte.weight"] is w
    full = expand_tied({"lm_head.weight": w}, tied)
    assert full["wte.weight"] is w and full["lm_head.weight"] is w
    with pytest.raises(ValueError, match="one tied tensor"):
        merge_tied({"wte.weight": w, "lm_head.weight": other}, tied)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # K = 3 must not fall back to one
@pytest.mark.parametrize("points_per_pass", [1, 3])
def test_surface_moves_both_uses_of_the_tied_tensor(points_per_pass):
    model, data = make_model(), make_data()
    before = snapshot(model)
    dirs = random_directions(model, seed=3)
    x = y = np.array([-0.5, 0.0, 0.5])
    surface = compute_surface(
        model, data, dirs, x, y, progress=False, points_per_pass=points_per_pass
    )
    base = dict(model.named_parameters())
    for i, a in enumerate(x):
        for j, b in enumerate(y):
            p = {n: base[n].detach() + a * dirs.x[n] + b * dirs.y[n] for n in WEIGHTS}
            expected = float(by_hand(p["wte.weight"], p["hidden.weight"], p["hidden.bias"], data))
            assert surface["loss"][i, j] == pytest.approx(expected, abs=1e-12, rel=0)
    assert_unchanged(model, before)


def test_objective_call_takes_the_tied_tensor_under_either_name():
    model, data = make_model(), make_data()
    before = snapshot(model)
    objective = Objective(model, data, accuracy=False)
    w = model.wte.weight.detach() + 0.1
    expected = float(by_hand(w, model.hidden.weight.detach(), model.hidden.bias.detach(), data))
    for state in ({"wte.weight": w}, {"lm_head.weight": w}, {"wte.weight": w, "lm_head.weight": w}):
        assert objective(state)["loss"] == pytest.approx(expected, abs=1e-12, rel=0)
    with pytest.raises(ValueError, match="one tied tensor"):
        objective({"wte.weight": w, "lm_head.weight": w + 1})
    assert_unchanged(model, before)


def dense_hessian(model: TiedLM, data) -> torch.Tensor:
    """The Hessian over the flat vector of the tied tensor (once) and the hidden layer."""
    params = dict(model.named_parameters())
    hessian, _ = dense_hessian_of(
        lambda p: by_hand(*(p[n] for n in WEIGHTS), data), {n: params[n] for n in WEIGHTS}
    )
    return hessian


def test_hessian_counts_the_tied_tensor_once():
    model, data = make_model(), make_data()
    before = snapshot(model)
    objective = Objective(model, data)
    operator = HessianOperator(objective)
    assert operator.names == tuple(WEIGHTS)
    dense = dense_hessian(model, data)
    assert operator.num_params == dense.shape[0] == V * D + D * D + D
    columns = torch.stack([operator @ e for e in torch.eye(operator.num_params, dtype=f64)], 1)
    torch.testing.assert_close(columns, dense, atol=1e-12, rtol=0)
    eigen = hessian_eigenpairs(objective, k=2, which="LA", seed=0)
    top = np.linalg.eigvalsh(dense.numpy())[::-1][:2]
    np.testing.assert_allclose(eigen.eigenvalues, top, rtol=1e-8)
    assert_unchanged(model, before)


@pytest.mark.filterwarnings("ignore:.*not a minimum")  # an untrained model
def test_sharpness_perturbs_the_tied_tensor():
    model, data = make_model(), make_data()
    before = snapshot(model)
    objective = Objective(model, data, points_per_pass=3)
    results = sharpness(objective, ["worst_l2", "avg_l2", "rise"], rho=0.05, num_samples=4)
    assert all(np.isfinite(r.value) for r in results.values())
    assert results["worst_l2"].value > 0
    assert_unchanged(model, before)


@pytest.mark.parametrize("kept", ["lm_head.weight", "wte.weight"])
def test_checkpoint_holding_the_tied_tensor_once_loads(tmp_path, kept):
    source, target = make_model(), TiedLM().double()
    before = snapshot(target)
    path = tmp_path / "model.safetensors"
    save_model(source, str(path))
    if kept == "wte.weight":  # a torch.save'd state_dict with the other name dropped
        state = source.state_dict()
        del state["lm_head.weight"]
        path = tmp_path / "model.pt"
        torch.save(state, path)
    assert sorted(load_state(path)) == sorted(["hidden.bias", "hidden.weight", kept])
    loaded = load_checkpoint(target, path, copy=True)
    assert loaded.lm_head.weight is loaded.wte.weight
    for name, t in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name
    objective = Objective(target, make_data())
    assert objective.at(load_state(path))() == Objective(source, make_data())()
    assert_unchanged(target, before)


def test_checkpoint_still_refuses_missing_and_conflicting_keys():
    model = make_model()
    state = model.state_dict()
    del state["lm_head.weight"], state["hidden.weight"]
    with pytest.raises(ValueError, match=r"missing keys \(1\): hidden.weight"):
        load_checkpoint(model, state)
    untied = {n: t.clone() for n, t in model.state_dict().items()}
    untied["lm_head.weight"] += 1
    with pytest.raises(ValueError, match="one tied tensor"):
        load_checkpoint(model, untied)


def test_planes_count_the_tied_tensor_once():
    model, data = make_model(), make_data()
    a, b, c = (make_model(seed) for seed in (1, 2, 3))
    plane = checkpoint_plane(model, [a, b, c], dir_type="states")
    assert list(plane.directions.x) == WEIGHTS
    flat = [torch.cat([m.state_dict()[n].reshape(-1) for n in WEIGHTS]) for m in (a, b)]
    assert plane.coords[1, 0] == pytest.approx(float((flat[1] - flat[0]).norm()), rel=1e-12)
    objective = Objective(model, data).at(plane.origin)
    surface = compute_surface(
        objective, plane.directions, plane.coords[:2, 0], [0.0], progress=False
    )
    assert surface["loss"][1, 0] == pytest.approx(Objective(b, data)()["loss"], rel=1e-10)
    trajectory = trajectory_plane(Objective(model, data), [a, b, c], surface=False)
    assert list(trajectory.directions.x) == WEIGHTS
