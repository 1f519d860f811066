"""The command line keeps the user's files safe: a run holds its output for the whole run,
``--out`` is never an input, ``--overwrite`` replaces only landscape files, user files
import their neighbours, and each mistake is named in one line."""

import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from _shared import ROOT, held_by_a_writer, one_line_error, user_project

from landscape.checkpoint import save_checkpoint
from landscape.cli import main
from landscape.paths import PathResult
from landscape.storage.compare import read_compare_results
from landscape.storage.paths import save_paths
from landscape.storage.trajectory import write_trajectory


@pytest.fixture
def project(tmp_path):
    model = user_project(tmp_path, delay=0.0)  # SLOW_DELAY slows a run down
    for name, shift in (("b.pt", 0.3), ("c.pt", 0.6)):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(shift)
        save_checkpoint(model, tmp_path / name)
    return tmp_path


def common(project, *checkpoint):
    return ["--model", f"{project}/user.py:model", "--data", f"{project}/user.py:data",
            *(["--checkpoint", str(checkpoint[0])] if checkpoint else []), "--quiet"]  # fmt: skip


def compare_args(project, out, *extra):
    return ["compare", *common(project), str(project / "a.pt"), str(project / "b.pt"),
            "--out", str(out), "--metric", "fisher_rao", "--x=-1:1:3", *extra]  # fmt: skip


# ---------------------------------------------------------------- user files
def test_a_model_and_data_file_import_the_modules_beside_them(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # undo the folder's insertion
    names = ("safety_neighbour_net", "safety_neighbour_data")
    (tmp_path / f"{names[0]}.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Linear(4, 3)\n"
    )
    (tmp_path / f"{names[1]}.py").write_text(
        "import torch\n\ndef make():\n    g = torch.Generator().manual_seed(0)\n"
        "    return torch.randn(12, 4, generator=g), torch.randint(0, 3, (12,), generator=g)\n"
    )
    (tmp_path / "model_file.py").write_text(
        f"from {names[0]} import build\nfrom {names[1]} import make\n\n"
        "def model():\n    return build()\n\ndef data():\n    return make()\n"
    )
    torch.manual_seed(0)
    save_checkpoint(torch.nn.Linear(4, 3), tmp_path / "w.pt")
    try:
        code = main(["surface", "--model", f"{tmp_path}/model_file.py:model", "--data",
                     f"{tmp_path}/model_file.py:data", "--checkpoint", str(tmp_path / "w.pt"),
                     "--out", str(tmp_path / "s.h5"), "--x=-1:1:3", "--quiet"])  # fmt: skip
    finally:
        for name in names:
            sys.modules.pop(name, None)
    assert code == 0
    assert (tmp_path / "s.h5").exists()


def test_a_model_file_that_is_not_python_is_named_in_one_line(project, capsys):
    # 0.2 passed importlib's None spec on and failed with an internal AttributeError
    (project / "model.txt").write_text("def model(): pass\n")
    args = ["surface", "--model", f"{project}/model.txt:model", "--data",
            f"{project}/user.py:data", "--checkpoint", str(project / "a.pt"), "--out",
            str(project / "s.h5"), "--quiet"]  # fmt: skip
    assert main(args) == 2
    one_line_error(capsys, f"--model: expected a Python file (.py), got '{project}/model.txt'")


# ---------------------------------------------------------------- two writers
@pytest.mark.slow  # two command lines, one holding the file the other wants: 66s on 2 busy cores
def test_a_second_compare_is_refused_while_the_first_holds_its_file(project, capsys):
    out = project / "cr"
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", SLOW_DELAY="0.05")
    first = subprocess.Popen(
        [sys.executable, "-m", "landscape", *compare_args(project, out, "--num-directions", "2")],
        env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not held_by_a_writer(out / "compare.h5") and time.monotonic() < deadline:
        time.sleep(0.01)  # the first run holds compare.h5 from its creation to its end
    assert held_by_a_writer(out / "compare.h5"), "the first run should hold compare.h5 by now"
    for extra in (("--num-directions", "1", "--overwrite"), ("--num-directions", "2")):
        assert main(compare_args(project, out, *extra)) == 2
        one_line_error(capsys, "open for writing by another process")
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()
    settings, results = read_compare_results(out / "compare.h5")
    assert settings["num_directions"] == 2 and sorted(results) == ["a", "b"]
    with h5py.File(out / "compare.h5", "r") as f:
        assert all(f[f"compare/{k}/line/loss"].shape == (2, 3) for k in ("a", "b"))


@pytest.mark.slow  # a slowed-down command line in a subprocess: 32s on 2 busy cores
def test_a_results_command_holds_an_existing_output_until_it_ends(project, capsys):
    out = project / "r.h5"
    sharp = ["sharpness", *common(project, project / "a.pt"), "--metric", "fisher_rao",
             "--out", str(out)]  # fmt: skip
    assert main(sharp) == 0
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", SLOW_DELAY="0.1")
    args = [*sharp[:-3], "rise", "--num-samples", "4", "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "landscape", *args], env=env,
                             stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while not held_by_a_writer(out) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert held_by_a_writer(out), "the sharpness run should hold its --out while it computes"
    surface = ["surface", *common(project, project / "a.pt"), "--x=-1:1:3", "--overwrite"]
    assert main([*surface, "--out", str(out)]) == 2
    one_line_error(capsys, "open for writing by another process")
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()
    with h5py.File(out, "r") as f:
        assert sorted(f["sharpness"]) == ["fisher_rao", "rise"]


# ---------------------------------------------------------------- inputs are safe
def test_overwrite_never_replaces_an_input(project, capsys):
    before = {name: (project / name).read_bytes() for name in ("a.pt", "b.pt", "c.pt")}
    same_file = str(project / "sub" / ".." / "a.pt")  # another spelling, the same inode
    (project / "sub").mkdir()
    surface = ["surface", *common(project, project / "a.pt"), "--x=-1:1:3", "--overwrite"]
    assert main([*surface, "--out", same_file]) == 2
    one_line_error(capsys, "is the input --checkpoint")
    interp = [*surface, "--directions", "interp", "--target", str(project / "b.pt")]
    assert main([*interp, "--out", str(project / "b.pt")]) == 2
    one_line_error(capsys, "is the input --target")
    checkpoints = [str(project / n) for n in ("a.pt", "b.pt", "c.pt")]
    trajectory = ["trajectory", *common(project), *checkpoints, "--num-points", "3",
                  "--out", checkpoints[2], "--overwrite"]  # fmt: skip
    assert main(trajectory) == 2
    one_line_error(capsys, "is the input")
    sharp = ["sharpness", *common(project, project / "a.pt"), "--metric", "fisher_rao"]
    assert main([*sharp, "--out", str(project / "user.py"), "--overwrite"]) == 2
    one_line_error(capsys, "is the input --model")
    assert {name: (project / name).read_bytes() for name in before} == before


def test_overwrite_replaces_only_files_that_landscape_wrote(project, capsys):
    dataset = project / "images.h5"
    with h5py.File(dataset, "w") as f:
        f["images"] = np.arange(12.0).reshape(3, 4)
    kept = dataset.read_bytes()
    surface = ["surface", *common(project, project / "a.pt"), "--x=-1:1:3", "--overwrite"]
    assert main([*surface, "--out", str(dataset)]) == 2
    err = one_line_error(capsys, "is not a file landscape wrote")
    assert "pass --overwrite" not in err and "or --overwrite" not in err
    folder = project / "cr"
    folder.mkdir()
    shutil.copy(dataset, folder / "compare.h5")
    assert main(compare_args(project, folder, "--overwrite")) == 2
    one_line_error(capsys, "is not a file landscape wrote")
    assert dataset.read_bytes() == kept == (folder / "compare.h5").read_bytes()
    # a landscape file is replaced, and so is an empty one
    assert main([*surface, "--out", str(project / "s.h5")]) == 0
    (project / "empty.h5").write_bytes(b"")
    for out in ("s.h5", "empty.h5"):
        assert main([*surface, "--out", str(project / out), "--x=-2:2:3"]) == 0, out


def test_refusals_under_overwrite_do_not_advise_overwrite(project, capsys):
    out = project / "r.h5"
    sharp = ["sharpness", *common(project, project / "a.pt"), "--metric", "fisher_rao",
             "--out", str(out)]  # fmt: skip
    assert main(sharp) == 0
    out.write_bytes(out.read_bytes()[:-100])  # a cut copy
    for args in (sharp, [*sharp, "--overwrite"]):
        assert main(args) == 2
        err = one_line_error(capsys, str(out))
        assert "overwrite=True" not in err and "or --overwrite" not in err, err


# ---------------------------------------------------------------- messages
def _hessian_file(path):
    from landscape.hessian import EigenResult, ExtremeEigenvalues, save_hessian

    eigen = EigenResult(np.array([2.0]), np.eye(1, 3), np.zeros(1), 9, True, ("w",),
                        {"w": (3,)}, {"seed": 0})  # fmt: skip
    extremes = ExtremeEigenvalues(2.0, -1.0, 0.5, np.zeros(2), 9, True, {"seed": 0})
    save_hessian(path, eigen=eigen, extremes=extremes)


def _paths_file(path):
    line = PathResult("line", np.array([0.0, 1.0]), {"loss": np.array([1.0, 2.0])}, 0.0, 0.0,
                      {"bn_reestimate": False})  # fmt: skip
    save_paths(path, {"line": line})


def _trajectory_file(path):
    write_trajectory(path, coords=np.zeros((3, 2)), steps=np.arange(3.0),
                     true={"loss": np.ones(3)}, projected={"loss": np.ones(3)},
                     explained_variance=np.array([0.6, 0.3]), settings={})  # fmt: skip


@pytest.mark.parametrize(
    ("write", "removed", "kind", "expected"),
    [
        (
            _hessian_file,
            "hessian/eigen/residuals",
            "eigenvalues",
            "/hessian/eigen has no residuals",
        ),
        (_paths_file, "paths/line/t", "paths", "/paths/line has no t"),
        (_trajectory_file, "trajectory/coords", "trajectory", "/trajectory has no coords"),
    ],
)
@pytest.mark.parametrize("checksum", [False, True])
def test_a_damaged_result_names_the_file_and_what_is_missing(
    tmp_path, capsys, write, removed, kind, expected, checksum
):
    path = tmp_path / "r.h5"
    write(path)
    group = expected.split()[0].lstrip("/")
    with h5py.File(path, "a") as f:
        del f[removed]
        if not checksum:  # as version 0.2 wrote it: the missing key is named
            del f[group].attrs["values_sha256"]
    assert main(["plot", str(path), "--kind", kind, "-o", str(tmp_path / "f.png")]) == 2
    if checksum:  # the checksum finds it first, and names the group
        expected = f"/{group} does not match its checksum values_sha256"
    one_line_error(capsys, f"{path} is damaged: {expected}")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def test_checkpoints_that_hold_code_or_are_not_files_are_named(project, capsys):
    evil = project / "evil.pt"
    torch.save({"0.weight": torch.zeros(2), "payload": _RunsCode()}, evil)
    surface = ["surface", *common(project), "--x=-1:1:3", "--out", str(project / "s.h5")]
    assert main([*surface, "--checkpoint", str(evil)]) == 2
    err = one_line_error(capsys, "holds code")
    assert "weights_only=False" in err and "truncated" not in err
    fifo = project / "pipe.pt"
    os.mkfifo(fifo)
    for path, kind in (
        (project, "a directory"),
        (fifo, "a FIFO"),
        ("/dev/zero", "a character device"),
    ):
        assert main([*surface, "--checkpoint", str(path)]) == 2
        one_line_error(capsys, f"{path} is not a regular file ({kind}")
        compare = ["compare", *common(project), str(project / "a.pt"), str(path), "--out",
                   str(project / "cr")]  # fmt: skip
        assert main(compare) == 2
        one_line_error(capsys, f"{path} is not a regular file ({kind}")


def test_a_range_of_equal_coordinates_is_refused(project, capsys):
    surface = ["surface", *common(project, project / "a.pt"), "--out", str(project / "s.h5")]
    assert main([*surface, "--x=1:1:5"]) == 2
    one_line_error(capsys, "START != STOP")
    assert main([*surface, "--x=1:1:1"]) == 0  # one point is fine


@pytest.mark.slow  # a whole compare run: 16s on 2 busy cores
def test_a_comparison_value_that_is_not_a_number_is_named(project, capsys):
    out = project / "cr"
    assert main(compare_args(project, out)) == 0
    capsys.readouterr()
    with h5py.File(out / "compare.h5", "a") as f:
        f["compare/a"].attrs["train_loss"] = "low"
    assert main(compare_args(project, out)) == 2
    one_line_error(capsys, "is damaged: /compare/a has train_loss = 'low'; expected a number")
