"""Random directions drawn one tensor at a time, in pieces, keep the values of 0.2."""

import pytest
import torch
from torch import nn

import landscape.directions.drawing as drawing
from landscape.directions import is_running_stat, random_direction, random_directions
from landscape.params import model_state, state_dot


@pytest.mark.parametrize("piece", [16, 32, 112])
def test_drawing_in_pieces_equals_one_draw(piece):
    """torch's CPU sampler fills 16 entries at a time: pieces that are multiples of 16 (a
    short last one merged) give one draw's values and leave the generator where it would."""
    sizes = [*range(1, 3 * piece + 40), 1000, 4099]
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        whole = torch.randn(n, generator=g, dtype=torch.float64)
        after = torch.rand(4, generator=g)
        g = torch.Generator().manual_seed(n)
        out = torch.empty(n, dtype=torch.float64)
        drawing.fill_normal(out, g, piece=piece)
        assert torch.equal(out, whole), n
        assert torch.equal(torch.rand(4, generator=g), after), n
        g = torch.Generator().manual_seed(n)
        drawing.skip_normal(n, g, piece=piece)
        assert torch.equal(torch.rand(4, generator=g), after), n
    with pytest.raises(ValueError, match="multiple of 16"):
        list(drawing.pieces(10, 24))


def _old_random_direction(state, generator, norm, ignore):
    """Version 0.2's algorithm, written out: one float64 draw per floating tensor, cast to
    float32 (or wider), normalized out of place, kept in the tensor's dtype."""
    out = {}
    for name, t in state.items():
        if not t.is_floating_point():
            continue
        work = torch.promote_types(t.dtype, torch.float32)
        d = torch.randn(t.shape, generator=generator, dtype=torch.float64).to(work)
        w = t.detach().to(work)
        if d.dim() <= 1:
            if ignore == "biasbn":
                out[name] = torch.zeros_like(t)
                continue
            d, w = d.reshape(1, -1), w.reshape(1, -1)
        if norm == "weight":
            d = d * w
        elif norm == "layer":
            d = d * (w.norm() / d.norm())
        elif norm == "filter":
            rows_d, rows_w = d.reshape(d.shape[0], -1), w.reshape(w.shape[0], -1)
            d = rows_d * (rows_w.norm(dim=1) / rows_d.norm(dim=1))[:, None]
        d = d.reshape(t.shape).to(t.dtype)
        out[name] = t.detach().clone() if ignore == "none" and is_running_stat(name) else d
    return out


def _cnn(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 7)
    ).to(dtype)
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("norm", ["filter", "layer", "weight", "none"])
@pytest.mark.parametrize("ignore", ["biasbn", "none"])
def test_a_seed_gives_the_directions_of_0_2_bit_for_bit(monkeypatch, dtype, norm, ignore):
    monkeypatch.setattr(drawing, "_PIECE", 32)  # pieces inside every tensor of this model
    model = _cnn(dtype)
    state = model_state(model, "states", copy=False)
    dirs = random_directions(model, seed=4, norm=norm, ignore=ignore, dir_type="states")
    g = torch.Generator().manual_seed(4)
    x = _old_random_direction(state, g, norm, ignore)
    y = _old_random_direction(state, g, norm, ignore)
    for name in x:
        assert dirs.x[name].dtype == dtype and torch.equal(dirs.x[name], x[name]), name
        want = torch.zeros_like(y[name]) if is_running_stat(name) else y[name]
        assert torch.equal(dirs.y[name], want), name
    head = random_direction(model, seed=2, norm=norm, ignore=ignore, params="4.*")
    old = _old_random_direction(
        {n: t for n, t in state.items() if n.startswith("4.")},
        torch.Generator().manual_seed(2),
        norm,
        ignore,
    )
    assert head.keys() == old.keys() and all(torch.equal(head[n], old[n]) for n in old)


def test_orthogonalized_directions_keep_the_values_of_0_2():
    model = _cnn(torch.float32)
    state = model_state(model, "weights", copy=False)
    dirs = random_directions(model, seed=1, orthogonalize=True)
    g = torch.Generator().manual_seed(1)
    x = _old_random_direction(state, g, "filter", "biasbn")
    y = _old_random_direction(state, g, "filter", "biasbn")
    coef = state_dot(y, x) / state_dot(x, x)
    y = {n: t - coef * x[n] for n, t in y.items()}
    for name, t in y.items():
        if t.dim() > 1:
            rows = t.reshape(t.shape[0], -1)
            w = state[name].reshape(t.shape[0], -1)
            t = (rows * (w.norm(dim=1) / rows.norm(dim=1))[:, None]).reshape(t.shape)
        else:
            t = torch.zeros_like(t)
        assert torch.equal(dirs.y[name], t), name
