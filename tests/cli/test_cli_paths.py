"""The command line of issue 11: trajectory, connect, export, import-li, plot --kind."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from landscape.checkpoint import save_checkpoint
from landscape.cli import main
from landscape.demo import digits_mlp
from landscape.storage.paths import load_paths
from landscape.trajectory import load_trajectory


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Four digits-MLP checkpoints on a line-ish run (no training: quick)."""
    folder = tmp_path_factory.mktemp("ckpts")
    start, end = digits_mlp(seed=0).state_dict(), digits_mlp(seed=1).state_dict()
    g = torch.Generator().manual_seed(0)
    paths = []
    for k, t in enumerate((0.0, 0.3, 0.7, 1.0)):
        state = {n: torch.lerp(start[n], end[n], t) for n in start}
        if 0 < t < 1:
            state = {n: v + 0.01 * torch.randn(v.shape, generator=g) for n, v in state.items()}
        paths.append(str(save_checkpoint(state, folder / f"step{k}.pt")))
    return paths


@pytest.mark.demo
def test_trajectory_then_plot_and_export(checkpoints, tmp_path, capsys):
    out = tmp_path / "t.h5"
    args = ["trajectory", "--model", "digits-mlp", "--data", "digits", *checkpoints, "--steps",
            "0", "10", "20", "30", "--num-points", "4", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert "explained variance" in capsys.readouterr().out
    trajectory = load_trajectory(out)
    assert trajectory.steps.tolist() == [0, 10, 20, 30]
    assert trajectory.surface["loss"].shape == (4, 4)
    figure = tmp_path / "t.png"
    assert main(["plot", str(out), "--kind", "trajectory", "-o", str(figure)]) == 0
    assert figure.stat().st_size > 0
    pytest.importorskip("meshio", reason="export --format vts needs the [export] extra (meshio)")
    assert main(["export", str(out), "--format", "vts", "-o", str(tmp_path / "t.vts")]) == 0
    assert (tmp_path / "t_path.vtu").exists()


@pytest.mark.demo
def test_connect_writes_paths_groups(checkpoints, tmp_path, capsys):
    out = tmp_path / "c.h5"
    args = ["connect", checkpoints[0], checkpoints[-1], "--model", "digits-mlp", "--data",
            "digits", "--curve", "polychain", "--num-steps", "3", "--num-points", "5",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "line" in printed and "polychain" in printed
    with h5py.File(out, "r") as f:
        assert sorted(f["paths"]) == ["line", "polychain"]
        assert sorted(f["paths/line"]) == ["accuracy", "loss", "t"]
        assert {"barrier", "barrier_t"} <= set(f["paths/polychain"].attrs)
    assert load_paths(out)["line"].t.tolist() == np.linspace(0, 1, 5).tolist()
    assert main([*args, "--lr", "0.5"]) == 2  # another command's results: refused
    assert "--overwrite" in capsys.readouterr().err
    assert main(args) == 0 and "complete" in capsys.readouterr().out  # the same command
    figure = tmp_path / "c.png"
    assert main(["plot", str(out), "--kind", "paths", "-o", str(figure)]) == 0
    assert main(["plot", str(out), "--kind", "trajectory", "-o", str(figure)]) == 2


def test_import_li_from_the_command_line(tmp_path, capsys):
    x, y = np.linspace(-1, 1, 3), np.linspace(-1, 1, 2)
    xx, yy = np.meshgrid(x, y)
    surface = tmp_path / "li.h5"
    with h5py.File(surface, "w") as f:
        f["xcoordinates"], f["ycoordinates"] = x, y
        f["train_loss"] = (xx + 10 * yy).ravel().reshape(3, 2)
        f["train_acc"] = np.full((3, 2), 50.0)
    out = tmp_path / "ours.h5"
    args = ["import-li", str(surface), "--model", "digits-mlp", "--out", str(out)]
    assert main(args) == 2  # a model, but no direction file to name its tensors
    assert "dir_file" in capsys.readouterr().err
    model = digits_mlp()
    with h5py.File(tmp_path / "dirs.h5", "w") as f:
        for group in ("xdirection", "ydirection"):
            for i, p in enumerate(model.parameters()):
                f.create_dataset(f"{group}/{i}", data=np.zeros(tuple(p.shape), np.float32))
    assert main([*args, "--dir-file", str(tmp_path / "dirs.h5")]) == 0
    from landscape.surface import load_surface

    loaded = load_surface(out)
    np.testing.assert_array_equal(loaded["loss"], np.add.outer(x, 10 * y))
    np.testing.assert_array_equal(loaded["accuracy"], np.full((3, 2), 0.5))


_PROJECT = """
import torch
from torch import nn


def model():
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2))


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(24, 3, generator=g), torch.randint(0, 2, (24,), generator=g)
"""


def test_connect_with_align_and_repair_keeps_both_barriers_and_the_permutations(tmp_path, capsys):
    from landscape.alignment import permutation_spec, permute_state

    (tmp_path / "project.py").write_text(_PROJECT)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    shuffled = permute_state(  # the same function, its hidden units reordered
        model.state_dict(), permutation_spec(model), {"0": torch.tensor([3, 5, 0, 1, 4, 2])}
    )
    a = save_checkpoint(model, tmp_path / "a.pt")
    b = save_checkpoint(shuffled, tmp_path / "b.pt")
    out = tmp_path / "c.h5"
    args = ["connect", str(a), str(b), "--model", f"{tmp_path}/project.py:model", "--data",
            f"{tmp_path}/project.py:data", "--curve", "line", "--num-points", "5",
            "--align", "weights", "--repair", "repair", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "line" in printed and "unaligned" in printed
    paths = load_paths(out)
    assert list(paths) == ["line", "unaligned"]
    line, before = paths["line"], paths["unaligned"]
    assert line.barrier == 0.0 and before.barrier > 0  # the aligned end is the start
    assert line.settings["barrier_unaligned"] == before.barrier
    assert line.settings["align"] == "weights" and line.settings["repair"] == "repair"
    assert line.settings["permutations"]["0"].tolist() == [2, 3, 5, 0, 4, 1]
    assert main(args) == 0 and "complete" in capsys.readouterr().out  # the same command
    assert main([*args[:-2], "--align", "activations", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    both = [*args[:-2], "--bn-reestimate", "--overwrite", "--out", str(out)]
    assert main(both) == 2
    assert "expected --bn-reestimate or --repair repair, got both" in capsys.readouterr().err
    figure = tmp_path / "c.png"
    assert main(["plot", str(out), "--kind", "paths", "-o", str(figure)]) == 0
    assert figure.stat().st_size > 0
