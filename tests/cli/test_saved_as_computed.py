"""``landscape hessian`` and ``landscape sharpness`` save each result as it comes: a run
stopped after the eigenpairs (or after one measure) keeps them, and the same command again
computes only what is missing, giving what an uninterrupted run gives."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from _shared import user_project

from landscape.cli import main
from landscape.hessian import load_hessian
from landscape.sharpness import load_sharpness


@pytest.fixture
def project(tmp_path):
    user_project(tmp_path)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only cost on a busy machine
    yield tmp_path
    torch.set_num_threads(saved)


def common(project):
    return ["--model", f"{project}/user.py:model", "--data", f"{project}/user.py:data",
            "--checkpoint", str(project / "a.pt"), "--quiet"]  # fmt: skip


def stopped(*args, **kwargs):
    raise KeyboardInterrupt  # Ctrl-C (or a kill) while this job runs


def refused(*args, **kwargs):
    raise AssertionError("a saved result was computed again")


@pytest.mark.slow  # three Hessian command lines on a tiny model: 5 s on 2 busy cores
def test_hessian_stopped_after_the_eigenpairs_keeps_them_and_resumes(project, monkeypatch):
    import landscape.hessian as hessian

    def args(out):
        return ["hessian", *common(project), "--num-eigenpairs", "1", "--trace", "--float64",
                "--num-probes", "4", "--out", str(out)]  # fmt: skip

    assert main(args(project / "whole.h5")) == 0
    out = project / "h.h5"
    with monkeypatch.context() as patch:
        patch.setattr(hessian, "hessian_trace", stopped)
        assert main(args(out)) == 130
    kept = load_hessian(out)
    assert kept.eigen is not None and kept.extremes is not None and kept.trace is None
    with monkeypatch.context() as patch:
        patch.setattr(hessian, "hessian_eigenpairs", refused)
        patch.setattr(hessian, "extreme_eigenvalues", refused)
        assert main(args(out)) == 0  # the trace alone
    whole, resumed = load_hessian(project / "whole.h5"), load_hessian(out)
    np.testing.assert_array_equal(resumed.eigen.eigenvalues, whole.eigen.eigenvalues)
    assert resumed.extremes.lambda_max == whole.extremes.lambda_max
    assert resumed.trace.value == whole.trace.value and resumed.trace.stderr == whole.trace.stderr


def test_sharpness_stopped_after_one_measure_keeps_it_and_resumes(project, monkeypatch):
    sharpness_module = sys.modules["landscape.sharpness"]  # the package, not the function
    original = sharpness_module.sharpness

    def args(out):
        return ["sharpness", *common(project), "--metric", "fisher_rao", "avg_l2",
                "--num-samples", "2", "--out", str(out)]  # fmt: skip

    def stop_at_avg_l2(objective, names, **kwargs):
        if list(names) == ["avg_l2"]:
            raise KeyboardInterrupt
        return original(objective, names, **kwargs)

    assert main(args(project / "whole.h5")) == 0
    out = project / "s.h5"
    with monkeypatch.context() as patch:
        patch.setattr(sharpness_module, "sharpness", stop_at_avg_l2)
        assert main(args(out)) == 130
    assert set(load_sharpness(out)) == {"fisher_rao"}

    def only_avg_l2(objective, names, **kwargs):
        assert list(names) == ["avg_l2"], "a saved measure was computed again"
        return original(objective, names, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(sharpness_module, "sharpness", only_avg_l2)
        assert main(args(out)) == 0
    whole, resumed = load_sharpness(project / "whole.h5"), load_sharpness(out)
    for name in ("fisher_rao", "avg_l2"):
        assert resumed[name].value == whole[name].value
        assert resumed[name].stderr == whole[name].stderr or np.isnan(whole[name].stderr)
