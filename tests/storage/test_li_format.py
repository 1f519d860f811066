"""Li et al.'s files: non-square grids in both orientations, weights and states, exact."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from landscape.directions import load_directions
from landscape.li_format import (
    decode_li_grid,
    export_li_directions,
    import_li,
    load_li_directions,
)
from landscape.surface import load_surface


def _model() -> nn.Module:
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g))
    return model


def _li_tensors(model: nn.Module, dir_type: str, seed: int) -> list[np.ndarray]:
    """What Li et al.'s code writes: one array per entry, by position."""
    g = np.random.default_rng(seed)
    items = (
        [(n, p.detach()) for n, p in model.named_parameters()]
        if dir_type == "weights"
        else list(model.state_dict().items())
    )
    out = []
    for _, t in items:
        if t.is_floating_point():
            out.append(g.standard_normal(tuple(t.shape)).astype(np.float32))
        else:
            out.append(np.zeros(tuple(t.shape), dtype=np.int64))
    return out


def _write_li_direction_file(path, lists) -> None:
    with h5py.File(path, "w") as f:  # as their h5_util.write_list does
        for name, tensors in zip(("xdirection", "ydirection"), lists, strict=False):
            group = f.create_group(name)
            for i, array in enumerate(tensors):
                group.create_dataset(str(i), data=array)


def _loss(x, y):
    return 1.0 + 10.0 * x + 100.0 * y  # every (x, y) gives another value


def _write_li_surface(path, x, y, dir_file, declared_shape) -> None:
    """Their crunch loop: values at ravel()[j * len(x) + i], dataset of ``declared_shape``."""
    xx, yy = np.meshgrid(x, y)
    loss = _loss(xx, yy).ravel()
    acc = np.linspace(10, 90, loss.size)
    loss[1] = -1  # a point their run did not reach
    with h5py.File(path, "w") as f:
        f["dir_file"] = dir_file
        f["xcoordinates"] = x
        f["ycoordinates"] = y
        f["train_loss"] = loss.reshape(declared_shape)
        f["train_acc"] = acc.reshape(declared_shape)


@pytest.mark.parametrize(("nx", "ny"), [(4, 3), (3, 5)])
@pytest.mark.parametrize("declared", ["x_by_y", "y_by_x"])
@pytest.mark.parametrize("dir_type", ["weights", "states"])
def test_import_non_square_grids_and_directions_exactly(tmp_path, nx, ny, declared, dir_type):
    model = _model()
    x, y = np.linspace(-1, 1, nx), np.linspace(-0.5, 0.5, ny)
    lists = [_li_tensors(model, dir_type, 1), _li_tensors(model, dir_type, 2)]
    dir_path = tmp_path / "dirs.h5"
    _write_li_direction_file(dir_path, lists)
    surf_path = tmp_path / "surf.h5"
    shape = (nx, ny) if declared == "x_by_y" else (ny, nx)
    _write_li_surface(surf_path, x, y, str(dir_path), shape)
    out = tmp_path / "ours.h5"
    surface = import_li(surf_path, model, dir_type=dir_type, out=out)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    expected = _loss(xx, yy)
    expected[1, 0] = np.nan  # ravel index 1 is (x[1], y[0])
    np.testing.assert_array_equal(surface["loss"], expected)
    flat_acc = np.linspace(10, 90, nx * ny)
    for i in range(nx):
        for j in range(ny):
            assert surface["accuracy"][i, j] == flat_acc[j * nx + i] * 0.01
    loaded = load_surface(out)
    np.testing.assert_array_equal(loaded.x, x)
    np.testing.assert_array_equal(loaded.y, y)
    np.testing.assert_array_equal(loaded["loss"], surface["loss"])
    assert loaded.attrs["num_computed"] == nx * ny - 1  # the point their run did not reach
    stored = load_directions(out)
    names = (
        [n for n, _ in model.named_parameters()]
        if dir_type == "weights"
        else list(model.state_dict())
    )
    for direction, arrays in zip((stored.x, stored.y), lists, strict=True):
        for name, array in zip(names, arrays, strict=True):
            if name.endswith("num_batches_tracked"):
                assert name not in direction
                continue
            assert torch.equal(direction[name], torch.from_numpy(array))


def test_decode_line_and_bad_sizes():
    raw = np.array([0.5, -1.0, 0.25])
    np.testing.assert_array_equal(decode_li_grid(raw, 3), [0.5, np.nan, 0.25])
    with pytest.raises(ValueError, match="expected 6 values"):
        decode_li_grid(np.zeros(5), 3, 2)


def test_counts_that_do_not_fit_the_model_are_refused(tmp_path):
    model = _model()
    path = tmp_path / "d.h5"
    _write_li_direction_file(path, [_li_tensors(model, "weights", 0)[:-1]])
    with pytest.raises(ValueError, match="holds 5 tensors; the model has 6"):
        load_li_directions(path, model)
    _write_li_direction_file(path, [_li_tensors(model, "states", 0)])
    with pytest.raises(ValueError, match="other dir_type"):
        load_li_directions(path, model, dir_type="weights")


def test_states_file_without_num_batches_tracked(tmp_path):
    model = _model()
    arrays = [a for a, n in zip(_li_tensors(model, "states", 3), model.state_dict(), strict=True)
              if not n.endswith("num_batches_tracked")]  # fmt: skip
    path = tmp_path / "d.h5"
    _write_li_direction_file(path, [arrays])
    directions = load_li_directions(path, model, dir_type="states")
    assert torch.equal(directions.x["1.running_var"], torch.from_numpy(arrays[5]))


@pytest.mark.parametrize("dir_type", ["weights", "states"])
def test_export_then_their_reader_order_round_trips(tmp_path, dir_type):
    from landscape import random_directions

    model = _model()
    ours = random_directions(model, dir_type=dir_type, ignore="none", seed=4)
    path = tmp_path / "li_dirs.h5"
    export_li_directions(ours, model, path)
    with h5py.File(path, "r") as f:  # as their h5_util.read_list reads it
        xs = [f["xdirection"][str(i)][()] for i in range(len(f["xdirection"]))]
    items = (
        [n for n, _ in model.named_parameters()]
        if dir_type == "weights"
        else list(model.state_dict())
    )
    assert len(xs) == len(items)
    for name, array in zip(items, xs, strict=True):
        if name in ours.x:
            np.testing.assert_array_equal(array, ours.x[name].numpy())
    back = load_li_directions(path, model, dir_type=dir_type)
    assert all(torch.equal(back.x[n], ours.x[n]) for n in ours.x)
    assert all(torch.equal(back.y[n], ours.y[n]) for n in ours.y)


def test_shapes_and_names_that_do_not_fit_the_model_are_refused(tmp_path):
    from landscape import random_directions

    model = _model()
    path = tmp_path / "d.h5"
    tensors = _li_tensors(model, "weights", 0)
    tensors[0] = tensors[0].T  # (3, 4) where the model has (4, 3)
    _write_li_direction_file(path, [tensors])
    with pytest.raises(ValueError, match=r"expected the xdirection tensors .* mis-shaped keys"):
        load_li_directions(path, model)
    ours = random_directions(model, dir_type="states", ignore="none", seed=1)
    with pytest.raises(ValueError, match=r"expected the x direction .* dir_type='states'"):
        export_li_directions(ours, model, tmp_path / "out.h5", dir_type="weights")
    ours.x["0.weight"] = ours.x["0.weight"].T
    with pytest.raises(ValueError, match=r"mis-shaped keys \(1\): 0.weight"):
        export_li_directions(ours, model, tmp_path / "out.h5", dir_type="states")
    with pytest.raises(ValueError, match="expected one of 'weights', 'states' for dir_type"):
        export_li_directions(ours, model, tmp_path / "out.h5", dir_type="state")
