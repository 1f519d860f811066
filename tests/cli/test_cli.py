import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch
from _shared import ROOT

from landscape.checkpoint import save_checkpoint
from landscape.cli import main
from landscape.surface import load_surface

USER_CODE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    def other_model():
        return nn.Linear(5, 3)

    def data():
        g = torch.Generator().manual_seed(0)
        return torch.randn(30, 5, generator=g), torch.randint(0, 3, (30,), generator=g)
    """
)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "user.py").write_text(USER_CODE)
    namespace: dict = {}
    exec(USER_CODE, namespace)
    save_checkpoint(namespace["model"](), tmp_path / "a.pt")
    other = namespace["model"]()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5)
        other[1].running_mean.add_(0.3)
    torch.save({"state_dict": other.state_dict()}, tmp_path / "b.pt")
    return tmp_path


def surface_args(project, out, *extra):
    return [
        "surface", "--model", f"{project}/user.py:model", "--checkpoint", str(project / "a.pt"),
        "--data", f"{project}/user.py:data", "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


@pytest.mark.slow  # surface, plot and info end to end: 15s on 2 busy cores
def test_surface_plot_info_end_to_end(project, capsys):
    out = project / "plane.h5"
    assert main(surface_args(project, out, "--x", "-1:1:3", "--y=-0.5:0.5:4")) == 0
    surface = load_surface(out)
    assert surface["loss"].shape == (3, 4) and np.isfinite(surface["loss"]).all()
    assert surface.attrs["model"].endswith("user.py:model")
    for kind in ("contour", "contourf", "heatmap", "surface3d"):
        assert main(["plot", str(out), "--kind", kind, "-o", str(project / f"{kind}.png")]) == 0
        assert (project / f"{kind}.png").stat().st_size > 1000
    assert main(["info", str(out)]) == 0
    assert "12 of 12 computed" in capsys.readouterr().out
    # the same command again resumes (nothing to do) and changes nothing
    before = out.read_bytes()
    assert main(surface_args(project, out, "--x", "-1:1:3", "--y=-0.5:0.5:4")) == 0
    assert np.array_equal(load_surface(out)["loss"], surface["loss"])
    assert len(out.read_bytes()) == len(before)


def test_interpolation_line_reaches_the_target_with_its_batchnorm_stats(project):
    out = project / "interp.h5"
    args = surface_args(project, out, "--x", "-0.5:1.5:5", "--directions", "interp",
                        "--target", str(project / "b.pt"))  # fmt: skip
    assert main(args) == 0
    line = load_surface(out)
    assert line.y is None and line["loss"].shape == (5,) and line.attrs["dir_type"] == "states"
    namespace: dict = {}
    exec(USER_CODE, namespace)
    from landscape.checkpoint import load_checkpoint
    from landscape.evaluate import Objective

    end = load_checkpoint(namespace["model"](), project / "b.pt")
    assert line["loss"][3] == pytest.approx(Objective(end, namespace["data"]())()["loss"], rel=1e-5)
    assert main(["plot", str(out), "--kind", "line", "-o", str(project / "line.pdf")]) == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--x", "-1:1"], "START:STOP:NUM"),
        (["--checkpoint", "missing.pt"], "no such checkpoint file"),
        (["--model", "nowhere.module:model"], "cannot import"),
        (["--model", "digits-mlp"], "missing"),
        (["--data", "landscape:nothing"], "no callable"),
        (["--directions", "interp"], "needs --target"),
        (["--loss", "sum"], "built-in name"),
    ],
)
def test_user_errors_are_one_line(project, capsys, change, message):
    args = surface_args(project, project / "e.h5")
    for i in range(0, len(change), 2):
        if change[i] in args:
            args[args.index(change[i]) + 1] = change[i + 1]
        else:
            args += change[i : i + 2]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_mismatched_resume_refused_then_overwritten(project, capsys):
    out = project / "p.h5"
    assert main(surface_args(project, out, "--x", "-1:1:3")) == 0
    assert main(surface_args(project, out, "--x", "-1:1:3", "--seed", "1")) == 2
    assert "made for another run" in capsys.readouterr().err
    assert main(surface_args(project, out, "--x", "-1:1:3", "--seed", "1", "--overwrite")) == 0


@pytest.mark.slow  # command lines in subprocesses: 19s on 2 busy cores
def test_foreign_file_and_python_dash_m(project):
    foreign = project / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2]
    result = subprocess.run(
        [sys.executable, "-m", "landscape", "info", str(foreign)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "not a landscape file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow  # sharpness and compare command lines: 55s on 2 busy cores
def test_sharpness_and_compare_commands(project, capsys):
    common = ["--model", f"{project}/user.py:model", "--data", f"{project}/user.py:data", "--quiet"]
    out = project / "sharp.h5"
    args = ["sharpness", *common, "--checkpoint", str(project / "a.pt"), "--out", str(out),
            "--metric", "worst_l2", "rise", "--num-samples", "2", "--rho", "0.1"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "worst_l2" in printed and "±" in printed
    assert main([*args[:-2], "--rho", "0.2"]) == 2  # another command's results
    assert "already has /sharpness/worst_l2 from another command" in capsys.readouterr().err
    assert main(args) == 0  # the same command: complete
    assert "complete" in capsys.readouterr().out
    assert main([*args, "--overwrite"]) == 0
    assert main([*args[:-7], "--metric", "sharpest"]) == 2
    assert "unknown sharpness measure" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--rho", "-1"]) == 2

    folder = project / "cmp"
    args = ["compare", *common, str(project / "a.pt"), str(project / "b.pt"), "--out",
            str(folder), "--metric", "avg_l2", "--num-samples", "2", "--x", "-1:1:3",
            "--y=-1:1:3", "--num-directions", "2", "--test-data", common[3]]  # fmt: skip
    assert main(args) == 0
    assert "| a |" in capsys.readouterr().out
    for name in ("compare.h5", "compare.md", "compare.csv", "compare_planes.png"):
        assert (folder / name).exists(), name


@pytest.mark.slow  # three Hessian command lines: 85s on 2 busy cores
def test_hessian_command_and_hessian_directions(project, capsys):
    common = ["--model", f"{project}/user.py:model", "--data", f"{project}/user.py:data",
              "--checkpoint", str(project / "a.pt"), "--quiet"]  # fmt: skip
    out = project / "h.h5"
    args = ["hessian", *common, "--num-eigenpairs", "3", "--trace", "--density", "--float64",
            "--num-probes", "6", "--density-probes", "2",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "lambda_max" in printed and "trace" in printed
    from landscape.hessian import load_hessian

    results = load_hessian(out)
    assert results.eigen.eigenvalues.shape == (3,)
    assert results.extremes.lambda_max == pytest.approx(results.eigen.eigenvalues[0], rel=1e-6)
    assert results.trace.stderr >= 0 and results.density.density.shape == results.density.grid.shape
    for kind in ("density", "eigenvalues"):
        assert main(["plot", str(out), "--kind", kind, "-o", str(project / f"{kind}.png")]) == 0
    assert main([*args, "--seed", "1"]) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert main(args) == 0 and "complete" in capsys.readouterr().out

    plane = project / "hplane.h5"
    args = ["surface", *common, "--directions", "hessian", "--x=-0.5:0.5:3", "--y=-0.5:0.5:3",
            "--out", str(plane)]  # fmt: skip
    assert main(args) == 0
    surface = load_surface(plane)
    assert surface.attrs["directions"] == "hessian" and np.isfinite(surface["loss"]).all()
    assert main(args) == 0  # resumes with the stored directions


@pytest.mark.slow  # torchrun with two ranks: 21s on 2 busy cores
def test_torchrun_two_ranks_write_the_single_process_file(project):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    single, shared = project / "single.h5", project / "shared.h5"
    grid = ["--x=-1:1:5", "--y=-1:1:4", "--device", "cpu"]
    assert main(surface_args(project, single, *grid)) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, GLOO_SOCKET_IFNAME="lo")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "landscape",
               *surface_args(project, shared, *grid)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = load_surface(single), load_surface(shared)
    assert b.attrs["num_computed"] == 20
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-6)


def test_version_and_debug(project, capsys):
    from landscape import __version__

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and __version__ in capsys.readouterr().out
    bad = surface_args(project, project / "x.h5", "--x", "-1:1:3", "--model", "nope:f")
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert main([*bad, "--debug"]) == 2  # --debug anywhere: the traceback is shown
    assert "Traceback" in capsys.readouterr().err


def test_module_callable_found_in_the_current_directory(project, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(project))])
    args = surface_args(project, project / "m.h5", "--x", "-1:1:3")
    args[args.index("--model") + 1] = "user:model"
    args[args.index("--data") + 1] = "user:data"
    assert main(args) == 0
    sys.modules.pop("user", None)


def test_train_mode_changes_batchnorm_values_and_is_recorded(project):
    eval_line = load_surface_from(project, "eval.h5")
    train_line = load_surface_from(project, "train.h5", "--train-mode")
    assert train_line.attrs["train_mode"] is True and eval_line.attrs["train_mode"] is False
    assert not np.allclose(train_line["loss"], eval_line["loss"])


def load_surface_from(project, name, *extra):
    assert main(surface_args(project, project / name, "--x", "-1:1:3", *extra)) == 0
    return load_surface(project / name)


def test_separate_axis_norms_and_reused_directions(project):
    plane = load_surface_from(project, "p.h5", "--y", "-1:1:3", "--x-norm", "filter",
                              "--y-norm", "layer")  # fmt: skip
    from landscape.storage import load_directions

    dx, dy = load_directions(project / "p.h5")
    weight = torch.load(project / "a.pt")["0.weight"]
    assert torch.allclose(dx["0.weight"].norm(dim=1), weight.norm(dim=1), rtol=1e-5)
    assert torch.allclose(dy["0.weight"].norm(), weight.norm(), rtol=1e-5)
    assert not torch.allclose(dy["0.weight"].norm(dim=1), weight.norm(dim=1), rtol=1e-3)
    reused = load_surface_from(project, "q.h5", "--y", "-1:1:3", "--dir-file",
                               str(project / "p.h5"))  # fmt: skip
    np.testing.assert_array_equal(reused["loss"], plane["loss"])


def test_pca_directions_from_a_trajectory(project):
    line = load_surface_from(project, "pca.h5", "--directions", "pca", "--trajectory",
                             str(project / "b.pt"), str(project / "a.pt"))  # fmt: skip
    assert np.isfinite(line["loss"]).all()
    assert main(surface_args(project, project / "z.h5", "--directions", "pca")) == 2


def test_plot_options(project, capsys):
    load_surface_from(project, "plane.h5", "--y", "-1:1:3")
    fig = project / "c.png"
    args = ["plot", str(project / "plane.h5"), "-o", str(fig), "--kind", "contour"]
    assert main([*args, "--levels", "0.5,1,2", "--vmax", "3", "--title", "T", "--no-log"]) == 0
    assert fig.stat().st_size > 1000
    with pytest.raises(SystemExit):
        main(["plot", str(project / "plane.h5"), "-o", ""])
    assert "figure file name" in capsys.readouterr().err


def test_info_on_a_checkpoint_does_not_advise_removing_it(project, capsys):
    checkpoint = project / "model.pt"
    save_checkpoint(torch.nn.Linear(2, 1), checkpoint)
    assert main(["info", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "not a readable HDF5 file" in err and ".h5 files it writes" in err
    assert "remove" not in err and "overwrite" not in err and checkpoint.exists()


def test_a_loss_returning_the_batch_mean_gives_the_mean(project, capsys):
    (project / "mine.py").write_text(
        "import torch.nn.functional as F\n\n"
        "def mean_ce(outputs, targets):\n    return F.cross_entropy(outputs, targets)\n"
    )
    grid = ["--x", "-1:1:3", "--batch-size", "7"]
    mean, builtin = project / "mean.h5", project / "builtin.h5"
    with pytest.warns(UserWarning, match="batch mean"):
        assert main(surface_args(project, mean, "--loss", f"{project}/mine.py:mean_ce", *grid)) == 0
    assert main(surface_args(project, builtin, *grid)) == 0
    np.testing.assert_allclose(load_surface(mean)["loss"], load_surface(builtin)["loss"],
                               rtol=1e-5)  # fmt: skip
    assert load_surface(mean).attrs["loss_reduction"] == "mean"
    declared = ["--loss", f"{project}/mine.py:mean_ce", "--loss-reduction", "mean", *grid]
    assert main(surface_args(project, mean, *declared)) == 0  # the same run: resumed
    capsys.readouterr()
    assert main(surface_args(project, builtin, "--loss-reduction", "mean", *grid)) == 2
    assert "batch sum already" in capsys.readouterr().err


@pytest.mark.slow  # Hessian and sharpness command lines: 12s on 2 busy cores
def test_hessian_and_sharpness_files_record_where_they_came_from(project, capsys):
    from landscape.checkpoint import load_checkpoint
    from landscape.evaluate import Objective
    from landscape.params import state_sha256
    from landscape.storage import decode_attrs

    namespace: dict = {}
    exec(USER_CODE, namespace)
    model = load_checkpoint(namespace["model"](), project / "a.pt")
    expected = {
        "model": f"{project}/user.py:model",
        "data": f"{project}/user.py:data",
        "checkpoint_path": str(project / "a.pt"),
        "checkpoint_sha256": state_sha256(model.state_dict()),
        "data_sha256": Objective(model, namespace["data"]()).data_sha256(),
        "num_examples": 30,
        "loss_name": "cross_entropy",
        "train_mode": False,
    }
    common = ["--model", expected["model"], "--data", expected["data"], "--checkpoint",
              expected["checkpoint_path"], "--quiet"]  # fmt: skip
    out = project / "h.h5"
    assert main(["hessian", *common, "--top-k", "1", "--trace", "--num-probes", "6",
                 "--out", str(out)]) == 0  # fmt: skip
    assert main(["sharpness", *common, "--metric", "worst_l2", "avg_l2", "--num-samples", "2",
                 "--out", str(out)]) == 0  # fmt: skip
    with h5py.File(out, "r") as f:
        groups = ["hessian/eigen", "hessian/extremes", "hessian/trace"]
        for group in [*groups, "sharpness/worst_l2", "sharpness/avg_l2"]:
            attrs = decode_attrs(f[group].attrs)
            assert {k: attrs[k] for k in expected} == expected, group
            assert attrs["precision"] == "fp32", group
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    for value in expected.values():
        assert f"  {value}\n" in printed, value


@pytest.mark.slow  # each command line twice: 11s on 2 busy cores
def test_quiet_hides_the_bars_that_are_shown_otherwise(project, capsys):
    common = ["--model", f"{project}/user.py:model", "--data", f"{project}/user.py:data",
              "--checkpoint", str(project / "a.pt")]  # fmt: skip
    hessian = ["hessian", *common, "--top-k", "1", "--overwrite", "--out", str(project / "q.h5")]
    sharp = ["sharpness", *common, "--metric", "avg_l2", "--num-samples", "2", "--overwrite",
             "--out", str(project / "q.h5")]  # fmt: skip
    for args, bar in ((hessian, "eigenpairs: "), (sharp, "avg_l2: ")):
        assert main(args) == 0
        assert bar in capsys.readouterr().err
        assert main([*args, "--quiet"]) == 0
        assert bar not in capsys.readouterr().err


@pytest.mark.slow  # whole command lines: 32s on 2 busy cores
def test_a_standard_error_that_cannot_be_estimated_is_not_printed(project, capsys):
    args = ["sharpness", "--model", f"{project}/user.py:model", "--data",
            f"{project}/user.py:data", "--checkpoint", str(project / "a.pt"), "--quiet",
            "--out", str(project / "w.h5"), "--metric", "worst_l2", "keskar", "rise",
            "--num-samples", "3"]  # fmt: skip
    assert main(args) == 0
    lines = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert "±" not in lines["worst_l2"] and "nan" not in lines["worst_l2"]  # one batch
    assert "±" not in lines["keskar"]  # exact: stderr 0
    assert "±" in lines["rise"]


def test_num_eigenpairs_is_spelled_as_every_count_and_top_k_still_works():
    from landscape.cli import build_parser

    base = ["hessian", "--model", "m:f", "--data", "m:d", "--checkpoint", "c.pt", "--out", "o.h5"]
    parser = build_parser()
    assert parser.parse_args([*base, "--num-eigenpairs", "3"]).num_eigenpairs == 3
    assert parser.parse_args([*base, "--top-k", "2"]).num_eigenpairs == 2  # 0.2's name
    assert parser.parse_args(base).num_eigenpairs == 5
