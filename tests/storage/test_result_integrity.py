"""Results are never mixed or silently wrong: model fingerprints on resume, refused casts,
and clear one-line errors for inputs that used to fail late or obscurely."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from landscape.checkpoint import load_checkpoint, load_state, save_checkpoint
from landscape.cli import main
from landscape.compare import compare_checkpoints
from landscape.directions import random_directions
from landscape.evaluate import Objective
from landscape.sharpness import sharpness
from landscape.surface import compute_surface, parse_range

USER_CODE = """
import torch
from torch import nn

def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.{act}(), nn.Linear(6, 3))

def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 4, generator=g), torch.randint(0, 3, (12,), generator=g)
"""


def _mlp(act: type[nn.Module] = nn.ReLU) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), act(), nn.Linear(6, 3))


def _data(labels=None):
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(12, 4, generator=g)
    return inputs, torch.arange(12) % 3 if labels is None else labels


def _surface(model, path, **options):
    directions = random_directions(_mlp(), num=1)
    return compute_surface(model, _data(), directions, [0.0, 1.0], path=path, progress=False,
                           **options)  # fmt: skip


# ---------------------------------------------------------------- resume identity
def test_resume_refuses_a_changed_model_and_accepts_older_files(tmp_path):
    path = tmp_path / "s.h5"
    _surface(_mlp(nn.ReLU), path)
    with pytest.raises(ValueError, match="model_sha256"):
        _surface(_mlp(nn.Tanh), path)
    with h5py.File(path, "a") as f:  # a file written before the fingerprint existed
        del f.attrs["model_sha256"]
    assert _surface(_mlp(nn.ReLU), path).attrs["num_computed"] == 2


def test_cli_resume_normalizes_paths_and_refuses_edited_code(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(USER_CODE.format(act="ReLU"))
    save_checkpoint(_mlp(), tmp_path / "c.pt")

    def run(model):
        return main(["surface", "--model", model, "--data", "m.py:data", "--checkpoint", "c.pt",
                     "--out", "s.h5", "--x=-1:1:2", "--quiet"])  # fmt: skip

    assert run("m.py:mlp") == 0
    assert run("./m.py:mlp") == 0
    (tmp_path / "m.py").write_text(USER_CODE.format(act="Tanh"))
    assert run("m.py:mlp") == 2
    assert "model_sha256" in capsys.readouterr().err


# ---------------------------------------------------------------- casts
def test_non_float_checkpoints_are_refused_and_float_casts_reported():
    model = _mlp()
    as_int = {n: t.int() for n, t in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"0\.weight \(int32 into float32\)"):
        load_checkpoint(model, as_int)
    with pytest.raises(ValueError, match="bool into float32"):
        load_checkpoint(model, {n: t.bool() for n, t in model.state_dict().items()})
    half = {n: t.half() for n, t in model.state_dict().items()}
    with pytest.warns(UserWarning, match=r"0\.weight \(float16 into float32\)"):
        load_checkpoint(model, half)


# ---------------------------------------------------------------- checkpoint files
def test_truncated_and_misnamed_checkpoint_files(tmp_path):
    model = _mlp()
    save_file(model.state_dict(), tmp_path / "st.pt")  # safetensors under a .pt name
    assert sorted(load_state(tmp_path / "st.pt")) == sorted(model.state_dict())
    blob = (tmp_path / "st.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[:-10])
    with pytest.raises(ValueError, match="truncated safetensors"):
        load_state(tmp_path / "cut.pt")
    torch.save(model.state_dict(), tmp_path / "full.pt")
    for size in (5, 200):
        (tmp_path / "cut.pt").write_bytes((tmp_path / "full.pt").read_bytes()[:size])
        with pytest.raises(ValueError, match="truncated or not a file torch.load can read"):
            load_state(tmp_path / "cut.pt")


# ---------------------------------------------------------------- up-front refusals
def test_huge_grids_are_refused_before_allocating():
    with pytest.raises(ValueError, match="at most 100,000,000 grid points, got 1,000,000,000"):
        parse_range("-1:1:1000000000")
    axis = np.linspace(-1, 1, 100_000)
    with pytest.raises(ValueError, match="got 10,000,000,000"):
        compute_surface(_mlp(), _data(), random_directions(_mlp(), num=2), axis, axis)


def test_labels_checked_on_the_first_batch():
    # on the first evaluation's outputs (no forward pass of its own), whichever path runs
    with pytest.raises(ValueError, match="0 .. 2 for a model with 3 outputs.*max label 7"):
        Objective(_mlp(), _data(torch.arange(12) % 8))()
    with pytest.raises(ValueError, match="cross_entropy"):
        Objective(_mlp(), _data(), loss="mse")()
    many = Objective(_mlp(), _data(torch.arange(12) % 8), points_per_pass=2)
    direction = {n: torch.ones_like(p) for n, p in _mlp().named_parameters()}
    with pytest.raises(ValueError, match="max label 7"):
        many.evaluate_points(many.base_state, [direction], np.array([[0.5], [1.0]]))


def test_bad_counts_and_seeds():
    with pytest.raises(ValueError, match="num_directions must be at least 1"):
        compare_checkpoints(_mlp(), {"a": _mlp()}, _data(), num_directions=0, progress=False)
    with pytest.raises(ValueError, match="2\\*\\*63"):
        sharpness(Objective(_mlp(), _data()), ["rise"], seed=2**64, progress=False)


def test_cli_bad_options_exit_in_one_line(tmp_path, capsys, monkeypatch):
    common = ["--model", "digits-mlp", "--data", "digits", "--out", str(tmp_path / "o")]
    for extra in (["--seed", str(2**64)], ["--num-directions", "0"]):
        with pytest.raises(SystemExit) as exit_:
            main(["compare", "c.pt", *common, *extra])
        assert exit_.value.code == 2
    save_checkpoint(_mlp(), tmp_path / "c.pt")
    (tmp_path / "m.py").write_text(USER_CODE.format(act="ReLU"))
    capsys.readouterr()
    assert main(["sharpness", "--model", f"{tmp_path}/m.py:mlp", "--data", f"{tmp_path}/m.py:data",
                 "--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "s.h5"),
                 "--loss", "nope", "--quiet"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "cross_entropy" in err and "()" not in err
    monkeypatch.setattr("landscape.cli.build_parser", _interrupt)
    assert main(["info", "x.h5"]) == 130
    assert capsys.readouterr().err.count("\n") == 1


def _interrupt():
    raise KeyboardInterrupt
