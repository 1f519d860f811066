"""A resume refuses a file made by another model function: a parent class edited, other
builder arguments, other outputs at the checkpoint; older files still resume."""

import os

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from landscape.checkpoint import save_checkpoint
from landscape.cli import main
from landscape.directions import random_directions
from landscape.storage.codec import decode_attr, encode_attr
from landscape.surface import compute_surface

USER = """
import torch
from torch import nn

class Base(nn.Module):
    def __init__(self, act="relu"):
        super().__init__()
        self.act = act
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 3)

    def hidden(self, x):
        h = self.fc1(x)
        return torch.tanh(h) if self.act == "tanh" else torch.PARENT(h)

class MLP(Base):
    def forward(self, x):
        return self.fc2(self.hidden(x))

def model():
    torch.manual_seed(0)
    return MLP(BUILDER)

def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(24, 4, generator=g), torch.randint(0, 3, (24,), generator=g)
"""


def write_user(folder, parent="relu", builder=""):
    path = folder / "user.py"
    path.write_text(USER.replace("PARENT", parent).replace("BUILDER", builder))
    stamp = os.stat(path).st_mtime + 10  # a new mtime even within one clock tick
    os.utime(path, (stamp, stamp))


def surface_args(folder):
    return ["surface", "--model", f"{folder}/user.py:model", "--checkpoint",
            str(folder / "a.pt"), "--data", f"{folder}/user.py:data", "--out",
            str(folder / "s.h5"), "--x=-1:1:5", "--quiet"]  # fmt: skip


def unfinished_file(folder):
    """A run's file with its last two points marked not done (as a killed run leaves)."""
    write_user(folder)
    namespace: dict = {}
    exec(USER.replace("PARENT", "relu").replace("BUILDER", ""), namespace)
    save_checkpoint(namespace["model"](), folder / "a.pt")
    assert main(surface_args(folder)) == 0
    with h5py.File(folder / "s.h5", "a") as f:
        full = f["metrics/loss"][()]
        f["computed"][3:] = False
        f["metrics/loss"][3:] = np.nan
    return full


def test_a_parent_class_edit_is_refused_on_resume(tmp_path, capsys):
    unfinished_file(tmp_path)
    capsys.readouterr()
    write_user(tmp_path, parent="sigmoid")  # the parent's forward: relu -> sigmoid
    assert main(surface_args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "model_classes_sha256" in err and "model_sha256:" not in err, err
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f["computed"][()].sum() == 3  # nothing of the new model was written


def test_other_builder_arguments_are_refused_on_resume(tmp_path, capsys):
    unfinished_file(tmp_path)
    capsys.readouterr()
    write_user(tmp_path, builder='act="tanh"')  # MLP() -> MLP(act="tanh")
    assert main(surface_args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "builder_sha256" in err and len(err.strip().splitlines()) == 1, err


def test_the_same_model_resumes_to_the_full_run(tmp_path):
    full = unfinished_file(tmp_path)
    assert main(surface_args(tmp_path)) == 0
    with h5py.File(tmp_path / "s.h5", "r") as f:
        np.testing.assert_array_equal(f["metrics/loss"][()], full)


def test_a_file_without_the_new_fingerprints_resumes_with_the_old_checks(tmp_path):
    full = unfinished_file(tmp_path)
    with h5py.File(tmp_path / "s.h5", "a") as f:
        for name in ("model_classes_sha256", "model_probe", "builder_sha256"):
            del f.attrs[name]
    assert main(surface_args(tmp_path)) == 0
    with h5py.File(tmp_path / "s.h5", "r") as f:
        np.testing.assert_array_equal(f["metrics/loss"][()], full)


class Scaled(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale  # not in extra_repr, not a tensor: only the outputs show it
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) * self.scale


def test_other_outputs_at_the_checkpoint_are_refused_and_tiny_noise_is_not(tmp_path):
    torch.manual_seed(0)
    a = Scaled(1.0)
    b = Scaled(2.0)
    b.load_state_dict(a.state_dict())
    data = (torch.randn(16, 4), torch.randint(0, 3, (16,)))
    dirs = random_directions(a, seed=0)
    path = tmp_path / "s.h5"
    compute_surface(a, data, dirs, [-1, 0, 1], path=path, progress=False)
    with h5py.File(path, "a") as f:
        f["computed"][2] = False
    with pytest.raises(ValueError, match="model_probe: the model's outputs on the first batch"):
        compute_surface(b, data, dirs, [-1, 0, 1], path=path, progress=False)
    with h5py.File(path, "a") as f:  # a probe off by 1e-6 of its largest output: noise
        probe = decode_attr(f.attrs["model_probe"])
        probe[0] += 1e-6 * max(abs(v) for v in probe)
        f.attrs["model_probe"] = encode_attr(probe)
    done = compute_surface(a, data, dirs, [-1, 0, 1], path=path, progress=False)
    assert done.attrs["num_computed"] == 3
