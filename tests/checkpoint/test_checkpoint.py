"""Tests for landscape.checkpoint: safe loading, wrappers, prefixes, mismatches, saving."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import pytest
import torch
from torch import nn

from landscape.checkpoint import (
    file_sha256,
    load_checkpoint,
    load_state,
    save_checkpoint,
    state_from_object,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            [
                ("fc1", nn.Linear(4, 3)),
                ("bn", nn.BatchNorm1d(3)),
                ("relu", nn.ReLU()),
                ("fc2", nn.Linear(3, 2)),
            ]
        )
    )


def _trained_state() -> dict[str, torch.Tensor]:
    """A state that differs from _net()'s in every entry, buffers included."""
    return {k: v + 1 for k, v in _net().state_dict().items()}


def _assert_state_equal(a, b) -> None:
    assert sorted(a) == sorted(b)  # safetensors files keep names sorted, not in model order
    for k in a:
        assert torch.equal(a[k], b[k]), k


class _WritesFile:
    """Unpickling this runs ``open(path, "w")``, creating the file: code execution."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# ---------------------------------------------------------------- formats
@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"state_dict": s, "epoch": 3},
        lambda s: {"model": s, "optimizer": {"lr": 0.1}},
        lambda s: {"model_state_dict": s, "step": 10},
        lambda s: {f"module.{k}": v for k, v in s.items()},
        lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}},
        lambda s: {f"module._orig_mod.{k}": v for k, v in s.items()},
    ],
    ids=[
        "raw",
        "state_dict",
        "model",
        "model_state_dict",
        "module",
        "wrapped-module",
        "ddp+compile",
    ],
)
def test_load_state_formats(tmp_path, wrap):
    state = _trained_state()
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(state), path)
    _assert_state_equal(load_state(path), state)
    _assert_state_equal(load_state(str(path)), state)


def test_load_state_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = _trained_state()
    save_file({f"module.{k}": v for k, v in state.items()}, str(tmp_path / "m.safetensors"))
    _assert_state_equal(load_state(tmp_path / "m.safetensors"), state)
    # recognised by its header too, whatever the extension
    save_file(state, str(tmp_path / "m.bin"))
    _assert_state_equal(load_state(tmp_path / "m.bin"), state)


def test_load_state_maps_to_cpu(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"w": torch.ones(2, dtype=torch.float64)}, path)
    loaded = load_state(path)
    assert loaded["w"].device.type == "cpu" and loaded["w"].dtype == torch.float64


def test_prefix_kept_unless_every_key_has_it(tmp_path):
    state = {"module.a": torch.zeros(1), "b": torch.zeros(1)}
    torch.save(state, tmp_path / "c.pt")
    assert sorted(load_state(tmp_path / "c.pt")) == ["b", "module.a"]


# ---------------------------------------------------------------- safety and errors
def test_arbitrary_pickle_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _WritesFile(marker)}, path)

    with pytest.raises(ValueError, match="arbitrary pickled code") as info:
        load_state(path)
    assert "weights_only=False" in str(info.value)
    assert not marker.exists(), "loading ran code stored in the checkpoint"
    with pytest.raises(ValueError, match="arbitrary pickled code"):
        load_checkpoint(nn.Linear(1, 2), path)
    assert not marker.exists()

    # The payload is live: an unsafe load would have written the file.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_whole_module_pickle_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), path)
    with pytest.raises(ValueError, match="arbitrary pickled code"):
        load_state(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_state(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="directory"):
        load_state(tmp_path)


@pytest.mark.parametrize(
    ("obj", "shown"),
    [
        ({"epoch": 3, "optimizer": {"lr": 0.1}}, "'epoch': int"),
        ([torch.zeros(1)], "a list"),
        (torch.zeros(3), "a Tensor"),
        ({}, "top-level keys {}"),
        ({"state_dict": {"a": 1}}, "'state_dict': dict"),
    ],
)
def test_not_a_checkpoint_says_what_was_found(tmp_path, obj, shown):
    path = tmp_path / "x.pt"
    torch.save(obj, path)
    with pytest.raises(ValueError, match="expected .* to hold a state_dict") as info:
        load_state(path)
    assert shown in str(info.value)


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, world\n")
    with pytest.raises(ValueError, match="not a file torch.load can read"):
        load_state(path)
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 32)
    with pytest.raises(ValueError, match="safetensors"):
        load_state(bad)


def test_bad_types():
    with pytest.raises(TypeError, match="expected a str or os.PathLike path, got int"):
        load_state(3)
    with pytest.raises(TypeError, match="expected an nn.Module model, got str"):
        load_checkpoint("model", {})
    with pytest.raises(TypeError, match="expected a path or a state_dict mapping for path_or_s"):
        load_checkpoint(nn.Linear(1, 1), 3.0)
    with pytest.raises(TypeError, match="nn.Module or a state_dict"):
        save_checkpoint([1, 2], "x.pt")
    with pytest.raises(TypeError, match="'a': int"):
        save_checkpoint({"a": 1}, "x.pt")


# ---------------------------------------------------------------- load_checkpoint
def test_load_checkpoint_loads_into_the_model(tmp_path):
    model = _net().eval()
    params = [p.data_ptr() for p in model.parameters()]
    state = _trained_state()
    path = save_checkpoint(state, tmp_path / "ckpt.pt")
    data = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    expected = torch.func.functional_call(_net().eval(), state, (data,))

    assert load_checkpoint(model, path) is model
    _assert_state_equal(model.state_dict(), state)
    assert torch.equal(model(data), expected)  # analysing the model analyses the checkpoint
    assert [p.data_ptr() for p in model.parameters()] == params  # same tensors, new values
    assert not model.training  # mode kept

    refused = {k: v.clone() for k, v in state.items()}
    refused["fc1.weight"] = refused["fc1.weight"] - 5
    refused["fc2.weight"] = torch.zeros(5, 4)
    with pytest.raises(ValueError, match="mis-shaped"):
        load_checkpoint(model, refused)
    _assert_state_equal(model.state_dict(), state)  # checked before any value is written


def test_load_checkpoint_copy_returns_loaded_copy(tmp_path):
    model = _net().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = _trained_state()
    path = save_checkpoint(state, tmp_path / "ckpt.pt")

    loaded = load_checkpoint(model, path, copy=True)
    assert loaded is not model
    _assert_state_equal(loaded.state_dict(), state)
    _assert_state_equal(model.state_dict(), before)  # caller's model untouched
    assert not loaded.training and not model.training  # mode kept on the copy
    for p, q in zip(loaded.parameters(), model.parameters(), strict=True):
        assert p.data_ptr() != q.data_ptr()

    from_mapping = load_checkpoint(model, {"model": state}, copy=True)
    _assert_state_equal(from_mapping.state_dict(), state)
    with pytest.raises(TypeError, match="expected True or False for copy, got str 'yes'"):
        load_checkpoint(model, state, copy="yes")


def test_load_checkpoint_keeps_model_dtype():
    model = _net().double()
    loaded = load_checkpoint(model, _trained_state())
    assert all(p.dtype == torch.float64 for p in loaded.parameters())


def test_mismatch_lists_names():
    model = _net()
    state = _trained_state()
    del state["fc2.bias"]
    state["fc3.weight"] = torch.zeros(1)
    state["fc1.weight"] = torch.zeros(5, 4)
    with pytest.raises(ValueError) as info:
        load_checkpoint(model, state)
    msg = str(info.value)
    assert msg.startswith(
        "expected the given state to match the names and shapes of the model Sequential, got "
    )
    assert "missing keys (1): fc2.bias" in msg
    assert "unexpected keys (1): fc3.weight" in msg
    assert "fc1.weight: expected (3, 4), got (5, 4)" in msg


def test_mismatch_list_truncated():
    model = nn.Sequential(*[nn.Linear(1, 1) for _ in range(20)])
    with pytest.raises(ValueError, match=r"missing keys \(40\): .*\.\.\. and 30 more"):
        load_checkpoint(model, {"other": torch.zeros(1)})


def test_non_strict_allows_missing_and_unexpected_but_not_shapes():
    model = _net()
    state = _trained_state()
    del state["fc2.bias"]
    state["extra"] = torch.zeros(1)
    loaded = load_checkpoint(model, state, strict=False, copy=True)
    assert torch.equal(loaded.fc1.weight, state["fc1.weight"])
    assert torch.equal(loaded.fc2.bias, model.fc2.bias)  # missing: model's own value

    state["fc1.weight"] = torch.zeros(5, 4)
    with pytest.raises(ValueError, match="mis-shaped"):
        load_checkpoint(model, state, strict=False)


# ---------------------------------------------------------------- saving and hashing
@pytest.mark.parametrize("name", ["ckpt.pt", "ckpt.safetensors", "sub/dir/ckpt.pth"])
def test_save_round_trip(tmp_path, name):
    model = _net()
    path = save_checkpoint(model, tmp_path / name)
    assert path == tmp_path / name
    _assert_state_equal(load_state(path), model.state_dict())
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_save_is_plain_state_dict(tmp_path):
    shared = torch.arange(6.0)
    state = {"a": shared, "b": shared[:3], "c": torch.ones(2, 2).t()}  # shared, non-contiguous
    path = save_checkpoint(state, tmp_path / "s.safetensors")
    _assert_state_equal(load_state(path), state)
    raw = torch.load(save_checkpoint(state, tmp_path / "s.pt"), weights_only=True)
    assert type(raw) is dict and sorted(raw) == ["a", "b", "c"]


def test_state_from_object_docs():
    with pytest.raises(ValueError, match="the given state"):
        state_from_object({"x": 1}, source="the given state")


def test_file_sha256(tmp_path):
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path, chunk_size=7) == hashlib.sha256(data).hexdigest()
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "missing")
