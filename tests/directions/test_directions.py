import numpy as np
import pytest
import torch
from torch import nn

from landscape.directions import (
    directions_from_file,
    interpolation_direction,
    normalize_direction,
    pca_directions,
    project_states,
    random_direction,
    random_directions,
    random_plane,
    save_directions,
)


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)
    ).double()


def test_filter_norm_matches_weight_filters_and_ignored_are_zero():
    model = small_cnn()
    d = random_direction(model, norm="filter", seed=3)
    for name, w in model.named_parameters():
        if w.dim() > 1:
            want = w.detach().reshape(w.shape[0], -1).norm(dim=1)
            got = d[name].reshape(w.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
        else:
            assert torch.count_nonzero(d[name]) == 0, name


def test_layer_weight_none_and_ignore_none():
    model = small_cnn()
    w = dict(model.named_parameters())
    layer = random_direction(model, norm="layer", seed=1)
    assert abs(layer["0.weight"].norm() - w["0.weight"].norm()) < 1e-12
    raw = random_direction(model, norm="none", seed=1)
    weight = random_direction(model, norm="weight", seed=1)
    torch.testing.assert_close(weight["0.weight"], raw["0.weight"] * w["0.weight"].detach())
    keep = random_direction(model, norm="filter", ignore="none", seed=1)
    assert abs(keep["0.bias"].norm() - w["0.bias"].norm()) < 1e-12


def test_same_seed_same_direction_other_seed_differs():
    model = small_cnn()
    a, b = random_direction(model, seed=5), random_direction(model, seed=5)
    c = random_direction(model, seed=6)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])


def test_states_directions_cover_buffers_but_not_integers():
    d = random_direction(small_cnn(), dir_type="states", ignore="none", seed=0)
    assert "1.running_mean" in d and "1.num_batches_tracked" not in d
    assert torch.count_nonzero(d["1.running_var"]) > 0


def test_orthogonalized_directions_record_cosine():
    model = nn.Linear(50, 40).double()
    plain = random_directions(model, seed=0)
    ortho = random_directions(model, seed=0, orthogonalize=True, norm="none")
    assert abs(ortho.cosine) < 1e-12
    assert ortho.settings["cosine"] == ortho.cosine
    filt = random_directions(model, seed=0, orthogonalize=True)
    assert abs(filt.cosine) < abs(plain.cosine) + 0.05
    assert torch.equal(plain.x["weight"], filt.x["weight"])


def test_bad_options_raise():
    with pytest.raises(ValueError, match="expected one of .* for norm"):
        random_direction(nn.Linear(2, 2), norm="filters")
    with pytest.raises(ValueError, match="expected one of .* for ignore"):
        random_direction(nn.Linear(2, 2), ignore="bias")
    with pytest.raises(TypeError, match="nn.Module or a mapping"):
        random_direction([1, 2])
    with pytest.raises(ValueError, match="shape"):
        normalize_direction({"w": torch.ones(2, 2)}, {"w": torch.ones(2, 3)})


def test_interpolation_direction_reaches_the_end_including_buffers():
    a, b = small_cnn(), small_cnn()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
        b[1].running_mean.add_(2.0)
    d = interpolation_direction(a, b)
    assert torch.equal(a.state_dict()["1.running_mean"] + d["1.running_mean"], b[1].running_mean)
    with pytest.raises(ValueError, match="expected the end checkpoint to match the names and"):
        interpolation_direction(a, nn.Linear(2, 2).double())


def test_pca_of_a_trajectory_on_a_plane_recovers_the_plane():
    torch.manual_seed(0)
    final = {"w": torch.randn(6, 5, dtype=torch.float64)}
    u, v = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    coeffs = [(3.0 * np.cos(t), np.sin(t)) for t in np.linspace(0, 3, 12)]
    trajectory = [{"w": final["w"] + a * u + b * v} for a, b in coeffs]
    dirs = pca_directions(trajectory, final)
    assert sum(dirs.settings["explained_variance"]) == pytest.approx(1.0, abs=1e-10)
    assert abs(dirs.cosine) < 1e-10
    coords = project_states(dirs, trajectory, final)
    for (a, b), c in zip(coeffs, coords, strict=True):
        back = final["w"] + c[0] * dirs.x["w"] + c[1] * dirs.y["w"]
        torch.testing.assert_close(back, final["w"] + a * u + b * v, rtol=0, atol=1e-10)


def test_interpolation_between_a_model_and_a_loaded_state_dict_keeps_weights():
    a, b = small_cnn(), small_cnn()
    d = interpolation_direction(a, b.state_dict(), dir_type="weights")
    assert sorted(d) == sorted(n for n, _ in a.named_parameters())


def test_zero_filters_stay_zero_instead_of_nan():
    # an interpolation direction with a frozen layer: zero rows and a zero tensor
    w = {"a": torch.randn(3, 4, dtype=torch.float64), "b": torch.randn(2, 5, dtype=torch.float64)}
    d = {"a": torch.randn(3, 4, dtype=torch.float64), "b": torch.zeros(2, 5, dtype=torch.float64)}
    d["a"][1] = 0
    for norm in ("filter", "layer"):
        out = normalize_direction(d, w, norm=norm)
        assert torch.equal(out["b"], torch.zeros(2, 5, dtype=torch.float64)), norm
        assert torch.isfinite(out["a"]).all(), norm
    out = normalize_direction(d, w, norm="filter")
    assert torch.equal(out["a"][1], torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(out["a"][[0, 2]].norm(dim=1), w["a"][[0, 2]].norm(dim=1),
                               rtol=1e-12, atol=0)  # fmt: skip


def bn_cnn_with_statistics():
    model = small_cnn()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        model[1].running_mean.copy_(torch.randn(4, generator=g, dtype=torch.float64))
        model[1].running_var.copy_(torch.rand(4, generator=g, dtype=torch.float64) + 0.05)
        model[1].num_batches_tracked.fill_(7)
    data = (torch.randn(16, 2, 6, 6, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (16,), generator=g))  # fmt: skip
    return model.eval(), data


def test_running_statistics_move_along_themselves_and_stay_valid():
    from landscape.surface import compute_surface

    model, data = bn_cnn_with_statistics()
    grid = np.linspace(-0.9, 1, 11)
    line = random_directions(model, num_directions=1, dir_type="states", ignore="none", seed=0)
    plane = random_directions(model, dir_type="states", ignore="none", seed=0)
    for name in ("1.running_var", "1.running_mean"):
        assert torch.equal(line.x[name], model.state_dict()[name])
        assert torch.equal(plane.x[name], model.state_dict()[name])
        assert torch.count_nonzero(plane.y[name]) == 0
    assert "1.num_batches_tracked" not in plane.x
    assert torch.count_nonzero(plane.y["1.weight"]) > 0  # other 1-D tensors stay Gaussian
    assert not np.isnan(compute_surface(model, data, line, grid, progress=False)["loss"]).any()
    surface = compute_surface(model, data, plane, grid, grid, progress=False)
    assert not np.isnan(surface["loss"]).any()
    ortho = random_directions(model, dir_type="states", ignore="none", orthogonalize=True)
    assert torch.count_nonzero(ortho.y["1.running_var"]) == 0
    biasbn = random_directions(model, dir_type="states", seed=0)
    assert torch.count_nonzero(biasbn.x["1.running_var"]) == 0


def test_cosine_is_computed_once_and_reads_do_no_dot_products(monkeypatch):
    import landscape.directions.core as core
    import landscape.directions.random as module

    model = nn.Linear(30, 20).double()
    dirs = random_directions(model, seed=2)
    x = torch.cat([t.reshape(-1) for t in dirs.x.values()]).numpy()
    y = torch.cat([t.reshape(-1) for t in dirs.y.values()]).numpy()
    expected = x @ y / np.sqrt((x @ x) * (y @ y))

    def no_dot(*args, **kwargs):
        raise AssertionError("a read of cosine computed dot products")

    monkeypatch.setattr(module, "state_dot", no_dot)
    monkeypatch.setattr(core, "_cosine", no_dot)
    monkeypatch.setattr(torch, "dot", no_dot)
    assert dirs.cosine == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert dirs.cosine == dirs.settings["cosine"]
    assert random_directions(model, num_directions=1).cosine is None


def test_directions_compare_by_value():
    model = small_cnn()
    a, b = random_directions(model, seed=1), random_directions(model, seed=1)
    assert a == b
    assert a != random_directions(model, seed=2)


def test_builders_return_directions_as_the_cli_made_them(tmp_path):
    from landscape.directions import (
        directions_from_file,
        interpolation_directions,
        random_direction,
        random_plane,
        save_directions,
    )

    model = nn.Linear(5, 4)
    plane = random_plane(model, x_norm="filter", y_norm="layer", seed=4)
    g = torch.Generator().manual_seed(4)  # what the CLI drew by hand in 0.2
    x = random_direction(model, norm="filter", generator=g)
    y = random_direction(model, norm="layer", generator=g)
    assert torch.equal(plane.x["weight"], x["weight"])
    assert torch.equal(plane.y["weight"], y["weight"])
    assert (plane.settings["x_norm"], plane.settings["y_norm"]) == ("filter", "layer")
    with pytest.raises(ValueError, match="one norm"):
        random_plane(model, x_norm="filter", y_norm="layer", orthogonalize=True)
    end = nn.Linear(5, 4)
    line = interpolation_directions(model, end, settings={"target_sha256": "abc"})
    assert torch.equal(line.x_end["weight"], end.weight.detach())
    assert line.settings == {"dir_type": "states", "target_sha256": "abc"}
    save_directions(random_directions(model, num_directions=1), tmp_path / "one.h5")
    assert directions_from_file(tmp_path / "one.h5").y is None
    with pytest.raises(ValueError, match=r"expected 2 direction\(s\) in .*one.h5, got 1"):
        directions_from_file(tmp_path / "one.h5", num_directions=2)


def test_direction_counts_are_num_directions_and_num_still_works(tmp_path):
    """0.2 spelled the count ``num``: it still works, with a DeprecationWarning, in every
    builder; both names at once, or a count other than 1 or 2, is refused."""
    model = nn.Linear(3, 2)
    states = [{"weight": torch.randn(2, 3, generator=torch.Generator().manual_seed(i)),
               "bias": torch.zeros(2)} for i in range(4)]  # fmt: skip
    save_directions(random_directions(model, seed=0), tmp_path / "d.h5")
    builders = {
        "random_directions": lambda **kw: random_directions(model, **kw),
        "random_plane": lambda **kw: random_plane(model, **kw),
        "pca_directions": lambda **kw: pca_directions(states, **kw),
        "directions_from_file": lambda **kw: directions_from_file(tmp_path / "d.h5", **kw),
    }
    for name, build in builders.items():
        assert build(num_directions=1).y is None, name
        with pytest.warns(DeprecationWarning, match="num= is renamed num_directions="):
            old = build(num=1)
        assert old == build(num_directions=1), name
        with pytest.raises(TypeError, match="expected num_directions= or its old name num="):
            build(num=1, num_directions=1)
        with pytest.raises(ValueError, match="expected num_directions 1 or 2, got 3"):
            build(num_directions=3)
