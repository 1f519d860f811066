"""Recipe directions (``random_directions(..., stored=False)``): never stored, each
tensor made again from ``(seed, axis, name, chunk)``; filter norms, the same values
however they are cut, surfaces equal to the stored directions' and resumed bit for bit."""

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import landscape.directions.recipes as recipes
from landscape import Objective, compute_surface, load_surface, random_directions
from landscape.directions import Directions, RecipeDirection, stored_directions


def _model(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 5, 3), nn.BatchNorm2d(5), nn.Flatten(), nn.Linear(5 * 4 * 4, 3)
    ).to(dtype)


def _mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    data = (torch.randn(20, 6, dtype=torch.float64), torch.randint(0, 3, (20,)))
    return model, data


def test_filter_norms_equal_the_weights_and_small_tensors_follow_ignore():
    model = _model()
    dirs = random_directions(model, seed=3, stored=False)
    weights = dict(model.named_parameters())
    for d in (dirs.x, dirs.y):
        assert isinstance(d, RecipeDirection)
        for name, w in weights.items():
            v = d[name]
            assert v.dtype == w.dtype and v.shape == w.shape
            if w.dim() > 1:
                rows, wrows = v.reshape(len(v), -1).norm(dim=1), w.reshape(len(w), -1).norm(dim=1)
                torch.testing.assert_close(rows, wrows.detach(), rtol=1e-6, atol=0)
            else:
                assert not v.any(), name
    assert dirs.settings["stored"] is False and dirs.settings["generator"] == recipes.GENERATOR
    assert not torch.equal(dirs.x["0.weight"], dirs.y["0.weight"])


@pytest.mark.parametrize("norm", ["filter", "layer", "weight", "none"])
def test_every_norm_matches_normalizing_the_raw_draws(norm):
    from landscape.directions import normalize_direction

    model = _model()
    weights = {n: p.detach() for n, p in model.named_parameters()}
    d = RecipeDirection(weights, seed=1, axis=0, norm=norm, ignore="none")
    raw = RecipeDirection(weights, seed=1, axis=0, norm="none", ignore="none")
    expected = normalize_direction(dict(raw), weights, norm=norm, ignore="none")
    for name in weights:
        torch.testing.assert_close(d[name], expected[name], rtol=1e-6, atol=1e-7)


def test_running_statistics_move_along_x_only_with_ignore_none():
    model = _model()
    dirs = random_directions(model, seed=0, dir_type="states", ignore="none", stored=False)
    assert torch.equal(dirs.x["1.running_var"], model[1].running_var)
    assert not dirs.y["1.running_var"].any()
    assert "1.num_batches_tracked" not in dirs.x


def test_values_are_the_same_in_two_runs_and_for_any_block_size(monkeypatch):
    model = _model()
    first = {n: t.clone() for n, t in random_directions(model, seed=5, stored=False).x.items()}
    again = random_directions(_model(), seed=5, stored=False).x
    for name, t in first.items():
        assert torch.equal(again[name], t), name
    monkeypatch.setattr(recipes, "BLOCK", 7)  # one filter at a time
    monkeypatch.setattr(recipes, "CHUNK", recipes.CHUNK)
    small = random_directions(model, seed=5, stored=False).x
    for name, t in first.items():
        assert torch.equal(small[name], t), name


def test_a_slice_of_rows_equals_those_rows_of_the_whole_tensor():
    """A shard (rows ``a:b`` of a tensor, on its own) gets the whole tensor's rows, across
    the generator's chunk boundaries and for rows wider than a reduction's grain."""
    torch.manual_seed(0)
    weights = {"wide": torch.randn(5, 70_000), "tall": torch.randn(3000, 50)}
    d = RecipeDirection(weights, seed=2, axis=1)
    for name, bounds in (("wide", [(0, 1), (1, 3), (4, 5), (0, 5)]),
                         ("tall", [(0, 1), (1310, 1311), (17, 2999), (1000, 3000)])):  # fmt: skip
        whole = d[name]
        for a, b in bounds:
            assert torch.equal(d.rows(name, a, b), whole[a:b]), (name, a, b)


def test_values_do_not_depend_on_what_else_is_selected():
    model = _model()
    full = random_directions(model, seed=4, stored=False)
    head = random_directions(model, seed=4, stored=False, params="3.*")
    assert sorted(head.x) == ["3.bias", "3.weight"]
    assert torch.equal(head.x["3.weight"], full.x["3.weight"])
    assert torch.equal(head.y["3.weight"], full.y["3.weight"])


def test_orthogonalize_needs_stored_directions():
    with pytest.raises(ValueError, match="expected stored=True"):
        random_directions(nn.Linear(3, 2), stored=False, orthogonalize=True)


def test_a_surface_over_recipes_equals_the_surface_over_the_same_values_stored():
    model, data = _mlp()
    objective = Objective(model, data)
    recipe = random_directions(model, seed=1, stored=False)
    held = stored_directions(recipe)
    assert all(type(d) is dict for d in (held.x, held.y))
    xs, ys = [-1.0, 0.0, 0.5], [-0.5, 0.0, 1.0]
    a = compute_surface(objective, recipe, xs, ys, progress=False)
    b = compute_surface(objective, held, xs, ys, progress=False)
    for name in a.metrics:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=0)
    assert a["loss"][1, 1] == objective()["loss"]
    line_directions = random_directions(model, seed=1, num_directions=1, stored=False)
    line = compute_surface(objective, line_directions, xs, progress=False)
    np.testing.assert_allclose(line["loss"], a["loss"][:, 1], rtol=1e-12)


def test_the_file_records_the_recipe_and_stores_tensors_only_on_request(tmp_path):
    model, data = _mlp()
    objective = Objective(model, data)
    recipe = random_directions(model, seed=1, stored=False)
    compute_surface(objective, recipe, [0.0, 1.0], [0.0, 1.0], path=tmp_path / "r.h5",
                    progress=False)  # fmt: skip
    compute_surface(objective, recipe, [0.0, 1.0], [0.0, 1.0], path=tmp_path / "s.h5",
                    progress=False, store_directions=True)  # fmt: skip
    with h5py.File(tmp_path / "r.h5") as f:
        assert "directions/x" not in f
        assert '"stored": false' in f["directions"].attrs["settings"]
    with h5py.File(tmp_path / "s.h5") as f:
        stored = torch.from_numpy(f["directions/x/2.weight"][()])
    assert torch.equal(stored, recipe.x["2.weight"])


def test_a_killed_recipe_surface_resumes_to_the_uninterrupted_one_bit_for_bit(
    tmp_path, monkeypatch
):
    model, data = _mlp()
    recipe = random_directions(model, seed=1, stored=False)
    grid = np.linspace(-1, 1, 5)
    full = compute_surface(Objective(model, data), recipe, grid, grid, progress=False)

    calls = {"n": 0}
    original = Objective.__call__

    def dies(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 12:
            raise KeyboardInterrupt  # killed after the first chunk of 8 points is written
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Objective, "__call__", dies)
    path = tmp_path / "s.h5"
    with pytest.raises(KeyboardInterrupt):
        compute_surface(Objective(model, data), recipe, grid, grid, path=path, progress=False,
                        write_interval=0.0)  # fmt: skip
    monkeypatch.setattr(Objective, "__call__", original)
    done = load_surface(path).attrs["num_computed"]
    assert 0 < done < 25
    again = random_directions(model, seed=1, stored=False)  # made again, as a new process would
    resumed = compute_surface(Objective(model, data), again, grid, grid, path=path,
                              progress=False)  # fmt: skip
    assert np.array_equal(resumed["loss"], full["loss"])
    assert np.array_equal(load_surface(path)["loss"], full["loss"])
    other = random_directions(model, seed=2, stored=False)
    with pytest.raises(ValueError):
        compute_surface(Objective(model, data), other, grid, grid, path=path, progress=False)


_USER = """
import torch
from torch import nn

def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))

def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(24, 4, generator=g), torch.randint(0, 3, (24,), generator=g)
"""


def test_the_command_line_draws_recipes_with_recipe(tmp_path):
    from landscape.checkpoint import save_checkpoint
    from landscape.cli import main

    (tmp_path / "user.py").write_text(_USER)
    namespace: dict = {}
    exec(_USER, namespace)
    model = namespace["model"]()
    save_checkpoint(model, tmp_path / "a.pt")
    out = tmp_path / "s.h5"
    args = ["surface", "--model", f"{tmp_path}/user.py:model", "--checkpoint",
            str(tmp_path / "a.pt"), "--data", f"{tmp_path}/user.py:data", "--out", str(out),
            "--x=-1:1:3", "--y=-1:1:3", "--quiet", "--recipe", "--seed", "2"]  # fmt: skip
    assert main(args) == 0
    with h5py.File(out) as f:
        assert "directions/x" not in f
    expected = compute_surface(model, namespace["data"](),
                               random_directions(model, seed=2, stored=False),
                               [-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], progress=False)  # fmt: skip
    np.testing.assert_allclose(load_surface(out)["loss"], expected["loss"], rtol=1e-12)
    assert main(args) == 0  # the same command again: resumed, nothing to do


def test_a_recipe_beside_a_stored_direction_is_read_as_a_mapping():
    model, data = _mlp()
    objective = Objective(model, data)
    recipe = random_directions(model, seed=1, stored=False)
    mixed = Directions(recipe.x, dict(recipe.y), kind="custom")
    held = stored_directions(recipe)
    a = compute_surface(objective, mixed, [0.0, 1.0], [-1.0, 1.0], progress=False)
    b = compute_surface(objective, held, [0.0, 1.0], [-1.0, 1.0], progress=False)
    assert np.array_equal(a["loss"], b["loss"])
