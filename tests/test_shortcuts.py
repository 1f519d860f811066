import numpy as np
import pytest
import torch
from _shared import dense_hessian
from torch import nn

import landscape as ls
from landscape.shortcuts import Hessian, random_line, random_plane


def model_and_data():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    data = (torch.randn(40, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (40,)))
    return model, data


def test_random_plane_equals_compute_surface_with_the_same_directions():
    model, data = model_and_data()
    plane = random_plane(model, data, distance=0.5, num_points=5, seed=3, progress=False)
    grid = np.linspace(-0.5, 0.5, 5)
    dirs = ls.random_directions(model, num_directions=2, seed=3)
    expected = ls.compute_surface(model, data, dirs, grid, grid, progress=False)
    np.testing.assert_array_equal(plane["loss"], expected["loss"])
    assert plane["loss"][2, 2] == ls.Objective(model, data)()["loss"]


def test_random_line_and_bad_grid():
    model, data = model_and_data()
    line = random_line(model, data, distance=1.0, num_points=3, progress=False)
    assert line["loss"].shape == (3,) and line.y is None
    with pytest.raises(ValueError, match="expected an int num_points >= 2, got 1"):
        random_line(model, data, num_points=1, progress=False)
    with pytest.raises(TypeError, match="expected an int num_points, got float 2.5"):
        random_line(model, data, num_points=2.5, progress=False)
    with pytest.raises(ValueError, match="expected a positive distance, got 0.0"):
        random_line(model, data, distance=0.0, progress=False)


def test_old_count_names_still_work_with_a_deprecation_warning():
    """0.2's ``steps`` (grid points) and ``top_n`` are ``num_points`` and ``num_eigenpairs``."""
    model, data = model_and_data()
    with pytest.warns(DeprecationWarning, match="steps= is renamed num_points="):
        old = random_line(model, data, distance=1.0, steps=3, progress=False)
    new = random_line(model, data, distance=1.0, num_points=3, progress=False)
    np.testing.assert_array_equal(old["loss"], new["loss"])
    with pytest.warns(DeprecationWarning, match="top_n= is renamed num_eigenpairs="):
        top = Hessian(model, data).eigenvalues(top_n=1, progress=False)
    assert len(top.eigenvalues) == 1


def test_pyhessian_style_object_matches_the_dense_hessian():
    model, data = model_and_data()
    dense, _ = dense_hessian(model, data)
    exact = torch.linalg.eigvalsh(dense).numpy()
    hessian = Hessian(model, data)
    top = hessian.eigenvalues(num_eigenpairs=2)
    np.testing.assert_allclose(top.eigenvalues, exact[::-1][:2], rtol=1e-6)
    trace = hessian.trace(seed=0)
    assert abs(trace.value - exact.sum()) < 4 * trace.stderr + 1e-8
