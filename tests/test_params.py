import pytest
import torch
from torch import nn

from landscape.params import (
    axpy,
    flatten,
    lerp_coefficient,
    model_device_dtype,
    model_state,
    point_state,
    select_names,
    state_dot,
    state_sha256,
    unflatten,
)


def test_flatten_unflatten_round_trip():
    state = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([7.0])}
    flat = flatten(state)
    assert flat.tolist() == [0, 1, 2, 3, 4, 5, 7]
    back = unflatten(flat, state)
    assert all(torch.equal(back[n], state[n]) for n in state)
    with pytest.raises(ValueError, match="expected a vector of 7"):
        unflatten(torch.zeros(3), state)


def test_model_state_weights_and_states():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    assert sorted(model_state(model)) == ["0.bias", "0.weight", "1.bias", "1.weight"]
    states = model_state(model, "states")
    assert "1.running_mean" in states and "1.num_batches_tracked" in states
    states["0.weight"].add_(1.0)  # copies, not views
    assert not torch.equal(states["0.weight"], model[0].weight)
    with pytest.raises(ValueError, match="dir_type"):
        model_state(model, "buffers")


def test_select_names_filters():
    state = model_state(nn.Linear(2, 3))
    assert select_names(state, lambda n, t: t.dim() > 1) == ["weight"]
    assert select_names(state, ["bias"]) == ["bias"]
    with pytest.raises(ValueError, match="'nope' matches no tensor"):
        select_names(state, ["nope"])


def test_axpy_zero_coefficient_is_identity_and_dot():
    base = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    d = {"w": torch.tensor([1.0, -1.0])}
    assert axpy(base, [(0.0, d)])["w"] is base["w"]
    assert axpy(base, [(2.0, d)])["w"].tolist() == [3.0, 0.0]
    assert state_dot(d, d) == 2.0


def test_sha_changes_with_values_and_mixed_devices_dtypes_raise():
    a = {"w": torch.zeros(2)}
    b = {"w": torch.tensor([0.0, 1e-30])}
    assert state_sha256(a) != state_sha256(b)
    assert state_sha256(a) == state_sha256({"w": torch.zeros(2)})
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2).double())
    with pytest.raises(ValueError, match="one device with one dtype"):
        model_device_dtype(model)


def test_point_state_reaches_the_end_exactly_and_is_axpy_below_one_half():
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(1000, generator=g), "n": torch.tensor(3)}
    b = {"w": torch.randn(1000, generator=g)}
    d = {"w": b["w"] - a["w"]}
    assert not torch.equal(axpy(a, [(1.0, d)])["w"], b["w"])  # float32 rounding
    assert torch.equal(point_state(a, [d], [1.0], ends=[b])["w"], b["w"])
    assert point_state(a, [d], [0.0], ends=[b])["w"] is a["w"]
    for t in (-0.5, 0.25, 0.4999):
        assert torch.equal(point_state(a, [d], [t], ends=[b])["w"], axpy(a, [(t, d)])["w"])
    # from 0.5 on the point is formed from the end: end + (t - 1) d
    expected = b["w"] + (0.75 - 1.0) * d["w"]
    assert torch.equal(point_state(a, [d], [0.75], ends=[b])["w"], expected)
    assert lerp_coefficient(0.5) == (True, -0.5)
    # the end's term comes first, then the others in order
    e = {"w": torch.randn(1000, generator=g)}
    got = point_state(a, [e, d], [0.3, 1.0], ends=[None, b])["w"]
    assert torch.equal(got, b["w"] + 0.3 * e["w"])
    with pytest.raises(ValueError, match="at most one"):
        point_state(a, [d, d], [1.0, 1.0], ends=[b, b])
    with pytest.raises(ValueError, match=r"expected the end state .* got missing keys \(1\): w"):
        point_state(a, [d], [1.0], ends=[{}])
