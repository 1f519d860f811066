"""Inputs that would poison or swamp a run are refused before any work, in one line:
non-finite checkpoints and data, and requests or files larger than the limits."""

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from landscape.checkpoint import save_checkpoint
from landscape.cli import main
from landscape.compare import compare_checkpoints
from landscape.evaluate import Objective
from landscape.limits import MAX_DRAWS, MAX_POINTS
from landscape.sharpness import measure_keskar
from landscape.storage import create_surface_file

USER = """
import torch
from torch import nn

def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))

def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(24, 4, generator=g), torch.randint(0, 3, (24,), generator=g)

def nan_data():
    x, y = data()
    x[3, 1] = float("nan")
    return x, y
"""


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def small_data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(24, 4, generator=g), torch.randint(0, 3, (24,), generator=g)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "user.py").write_text(USER)
    model = small_model()
    save_checkpoint(model, tmp_path / "a.pt")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["0.weight"][1, 2] = float("nan")
    state["2.bias"][0] = float("inf")
    save_checkpoint(state, tmp_path / "nan.pt")
    return tmp_path


def run(project, name, *extra, checkpoint="a.pt", data="data", out="out.h5"):
    args = [name, "--model", f"{project}/user.py:model", "--checkpoint",
            str(project / checkpoint), "--data", f"{project}/user.py:{data}",
            "--out", str(project / out), "--quiet", *extra]  # fmt: skip
    return main(args)


def one_line(capsys, *expected):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


# ---------------------------------------------------------------- non-finite inputs
SMALL = {"surface": ("--x=-1:1:3",), "sharpness": ("--metric", "avg_l2", "--num-samples", "2"),
         "hessian": ("--top-k", "1")}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_nonfinite_checkpoint_is_refused_naming_the_tensor(project, capsys, name):
    assert run(project, name, *SMALL[name], checkpoint="nan.pt") == 2
    one_line(capsys, "parameter '0.weight'", "1 NaN and 0 inf among the 24 values",
             "and 1 more tensor", "--allow-nonfinite")  # fmt: skip
    assert not (project / "out.h5").exists()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_one_nan_in_the_data_is_refused_naming_the_batch(project, capsys, name):
    assert run(project, name, *SMALL[name], data="nan_data") == 2
    one_line(capsys, "1 NaN and 0 inf among the 96 values of batch[0] of the first batch")


def test_allow_nonfinite_goes_on_keeps_nan_and_reports_the_count(project, capsys):
    assert run(project, "surface", "--x=-1:1:3", "--allow-nonfinite", checkpoint="nan.pt") == 0
    with h5py.File(project / "out.h5", "r") as f:
        assert np.isnan(f["metrics/loss"][()]).all()  # kept, never replaced
    one_line(capsys, "warning: non-finite results", "loss at 3 of 3 values")


def test_the_objective_refuses_nonfinite_inputs_unless_allowed():
    model, (x, y) = small_model(), small_data()
    x[5, 0] = float("nan")
    with pytest.raises(ValueError, match=r"1 NaN and 0 inf among the 96 values of batch\[0\]"):
        Objective(model, (x, y))
    loss = Objective(model, (x, y), allow_nonfinite=True)()["loss"]
    assert not np.isfinite(loss)  # a non-finite value is kept as it is
    model.register_buffer("mask", torch.full((2,), -float("inf")))  # masks may hold -inf
    Objective(model, small_data())
    model.mask[0] = float("nan")
    with pytest.raises(ValueError, match="buffer 'mask' of the checkpoint"):
        Objective(model, small_data())


# ---------------------------------------------------------------- limits
def test_a_file_declaring_a_grid_over_the_limit_is_refused_by_every_reader(tmp_path, capsys):
    path = tmp_path / "big.h5"
    create_surface_file(path, x=np.zeros(2), y=np.zeros(2), names=("loss",), directions=(),
                        attrs={})  # fmt: skip
    n = 10001  # 100,020,001 points: just over the limit (800 MB of float64 a metric)
    with h5py.File(path, "a") as f:  # declared, never written: a file of a few KB
        for name in ("coords", "metrics", "computed"):
            del f[name]
        f.create_dataset("coords/x", data=np.linspace(-1, 1, n))
        f.create_dataset("coords/y", data=np.linspace(-1, 1, n))
        f.create_dataset("metrics/loss", shape=(n, n), dtype="f8", chunks=(100, 100),
                         fillvalue=np.nan)  # fmt: skip
        f.create_dataset("computed", shape=(n, n), dtype=bool, chunks=(100, 100))
    assert path.stat().st_size < 2**20
    for args in (
        ["info", str(path)],
        ["plot", str(path), "-o", str(tmp_path / "a.png")],
        ["export", str(path), "--format", "html", "-o", str(tmp_path / "a.html")],
    ):
        assert main(args) == 2
        one_line(capsys, f"{path} declares a grid of {n} x {n} points",
                 f"expected at most {MAX_POINTS:,} grid points, got {n * n:,}")  # fmt: skip


@pytest.mark.parametrize(
    ("name", "extra", "expected"),
    [
        ("hessian", ("--density", "--density-probes", "1000000000"), "density probes"),
        ("hessian", ("--trace", "--num-probes", "1000000000"), "trace probes"),
        ("sharpness", ("--metric", "avg_l2", "--num-samples", "1000000000000"), "num_samples"),
        ("surface", ("--x=-1:1:100000", "--y=-1:1:100000"), "grid points"),
    ],
)
def test_requests_over_the_limits_are_refused_with_the_number_and_the_limit(
    project, capsys, name, extra, expected
):
    assert run(project, name, *extra) == 2
    err = one_line(capsys, expected, "expected at most")
    assert f"{MAX_DRAWS:,}" in err or f"{MAX_POINTS:,}" in err


def test_connect_and_trajectory_refuse_too_many_points(project, capsys):
    common = ["--model", f"{project}/user.py:model", "--data", f"{project}/user.py:data",
              "--quiet"]  # fmt: skip
    ckpt = str(project / "a.pt")
    out = str(project / "p.h5")
    assert main(["connect", *common, ckpt, ckpt, "--curve", "line",
                 "--num-points", "100000000000", "--out", out]) == 2  # fmt: skip
    one_line(capsys, f"expected at most {MAX_POINTS:,} path points, got 100,000,000,000")
    assert main(["trajectory", *common, ckpt, ckpt, ckpt, "--num-points", "100000",
                 "--out", out]) == 2  # fmt: skip
    one_line(capsys, f"expected at most {MAX_POINTS:,} grid points, got 10,000,000,000")


def test_keskar_refuses_a_subspace_larger_than_the_weights():
    objective = Objective(small_model(), small_data())
    num_weights = 4 * 6 + 6 + 6 * 3 + 3
    with pytest.raises(ValueError, match=f"at most {num_weights} subspace dimensions.*1,000,000"):
        measure_keskar(objective, subspace_dim=10**6)


def test_compare_refuses_a_nonfinite_checkpoint_unless_allowed(tmp_path):
    model = small_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["2.bias"][1] = float("nan")
    good = {k: v.clone() for k, v in model.state_dict().items()}
    options = dict(measures=[], line=[0.0, 1.0], num_directions=1, progress=False)
    with pytest.raises(ValueError, match=r"1 NaN and 0 inf among the 3 values of .*'2.bias'"):
        compare_checkpoints(small_model(), {"good": good, "bad": state}, small_data(), **options)
    result = compare_checkpoints(
        small_model(), {"good": good, "bad": state}, small_data(), allow_nonfinite=True, **options
    )
    assert np.isnan(result.lines["bad"].metrics["loss"]).all()  # kept as it is
    assert np.isfinite(result.lines["good"].metrics["loss"]).all()
