"""Reruns are idempotent: a killed creation or save is completed by the same command, the
same command on a finished file exits 0, and a partial file gets only what is missing."""

import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import torch
from _shared import ROOT, user_project

from landscape.checkpoint import save_checkpoint
from landscape.cli import main
from landscape.sharpness import load_sharpness
from landscape.storage.paths import load_paths

# the command line, killed by SIGKILL at the NUM-th call of MODULE.NAME
KILLED_AT = textwrap.dedent(
    """
    import importlib, os, signal, sys
    module, name, num = sys.argv[1], sys.argv[2], int(sys.argv[3])
    target = importlib.import_module(module)
    original, calls = getattr(target, name), []

    def die(*args, **kwargs):
        calls.append(1)
        if len(calls) == num:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(target, name, die)
    from landscape.cli import main

    sys.exit(main(sys.argv[4:]))
    """
)


def killed_at(module, name, num, args):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", KILLED_AT, module, name, str(num), *args],
                          env=env, capture_output=True)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


def project_files(tmp_path):
    model = user_project(tmp_path)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3)
    save_checkpoint(model, tmp_path / "b.pt")
    return ["--model", f"{tmp_path}/user.py:model", "--data", f"{tmp_path}/user.py:data",
            "--quiet"]  # fmt: skip


def test_compare_killed_right_after_creating_its_file_is_completed(tmp_path, capsys):
    common = project_files(tmp_path)
    folder = tmp_path / "cmp"
    args = ["compare", *common, str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out",
            str(folder), "--metric", "rise", "--num-samples", "2", "--x=-1:1:3",
            "--num-directions", "1"]  # fmt: skip
    killed_at("landscape.storage.compare", "encode_attr", 1, args)  # while creating it
    assert not (folder / "compare.h5").exists()
    assert main(args) == 0, capsys.readouterr().err
    with h5py.File(folder / "compare.h5", "r") as f:
        assert sorted(f["compare"]) == ["a", "b"]
        assert all(f[f"compare/{label}"].attrs["complete"] for label in ("a", "b"))
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_connect_killed_between_its_paths_leaves_none_and_the_rerun_makes_both(tmp_path):
    common = project_files(tmp_path)
    out = tmp_path / "c.h5"
    args = ["connect", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), *common, "--curve",
            "polychain", "--num-points", "5", "--num-steps", "2", "--out", str(out)]  # fmt: skip
    killed_at("landscape.storage.groups", "_fill_group", 2, args)  # after line, before polychain
    assert not out.exists()  # all the paths or none (was: line alone, shown as complete)
    assert main(args) == 0
    assert main(args) == 0  # the same command on the finished file: complete, exit 0
    reference = tmp_path / "ref.h5"
    assert main([*args[:-1], str(reference)]) == 0
    paths, expected = load_paths(out), load_paths(reference)
    assert list(paths) == ["line", "polychain"]
    for kind in paths:
        assert np.array_equal(paths[kind].metrics["loss"], expected[kind].metrics["loss"]), kind


def test_sharpness_on_a_partial_file_computes_only_what_is_missing(tmp_path, capsys, monkeypatch):
    common = project_files(tmp_path)
    out = tmp_path / "s.h5"
    args = ["sharpness", *common, "--checkpoint", str(tmp_path / "a.pt"), "--out", str(out),
            "--num-samples", "2", "--metric", "rise"]  # fmt: skip
    assert main(args) == 0
    before = load_sharpness(out)["rise"]
    api = sys.modules["landscape.sharpness"]
    asked, original = [], api.sharpness

    def counted(objective, names, **options):
        asked.append(list(names))
        return original(objective, names, **options)

    monkeypatch.setattr(api, "sharpness", counted)
    assert main([*args, "avg_l2"]) == 0
    assert asked == [["avg_l2"]]  # rise was already there
    results = load_sharpness(out)
    assert sorted(results) == ["avg_l2", "rise"] and results["rise"] == before
    capsys.readouterr()
    assert main([*args, "avg_l2"]) == 0 and asked == [["avg_l2"]]
    assert "complete" in capsys.readouterr().out
