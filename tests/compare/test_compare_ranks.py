"""``landscape compare`` under torchrun: the checkpoints dealt to 2 gloo ranks, rank 0 alone
writes, and the file equals the one-process file; an error on a rank names the rank."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from _shared import user_project
from _torchrun import torchrun

from landscape.checkpoint import save_checkpoint
from landscape.cli import main


@pytest.fixture
def project(tmp_path):
    model = user_project(tmp_path)
    for name in ("b.pt", "c.pt"):  # three checkpoints: two ranks get unequal shares
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn_like(p))
        save_checkpoint(model, tmp_path / name)
    return tmp_path


def compare_args(project, out, *extra):
    return ["compare", "--model", f"{project}/user.py:model", "--data",
            f"{project}/user.py:data", "--quiet", "--device", "cpu",
            *(str(project / f"{c}.pt") for c in "abc"), "--out", str(out),
            "--metric", "avg_l2", "fisher_rao", "--num-samples", "2", "--x=-1:1:3",
            "--num-directions", "2", "--y=-1:1:2", *extra]  # fmt: skip


def contents(path) -> dict[str, object]:
    """Every dataset and attribute of a file, by path (the creation stamp left out)."""
    found: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        for key, value in f.attrs.items():
            if key not in ("created", "landscape_version"):
                found[f"/@{key}"] = value

        def visit(name, obj):
            for key, value in obj.attrs.items():
                found[f"{name}@{key}"] = value
            if isinstance(obj, h5py.Dataset):
                found[name] = obj[()]

        f.visititems(visit)
    return found


@pytest.mark.slow  # torchrun with two ranks and a one-process run: 16 s (40 s on a loaded machine)
def test_compare_on_two_ranks_writes_the_one_process_file(project, one_thread):
    extra = ("--barriers", "--align", "weights", "--barrier-points", "3")
    assert main(compare_args(project, project / "single", *extra)) == 0
    done = torchrun("-m", "landscape", *compare_args(project, project / "ranks", *extra))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "lock" not in done.stderr and "error" not in done.stderr, done.stderr[-3000:]
    assert done.stdout.count("| checkpoint |") == 1  # the table, printed once
    single = contents(project / "single" / "compare.h5")
    ranks = contents(project / "ranks" / "compare.h5")
    assert set(ranks) == set(single)
    assert {"compare/c/line/loss", "compare/a/plane/loss", "barriers/after"} <= set(single)
    for key, value in single.items():
        if key.endswith("@checksum") or key.endswith("@" + "created"):
            continue
        got = ranks[key]
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert value.dtype == np.float64, key
            np.testing.assert_array_equal(got, value, err_msg=key)
        else:
            assert np.array_equal(got, value) if isinstance(value, np.ndarray) else got == value, (
                key
            )
    assert (project / "ranks" / "compare_barriers.png").stat().st_size > 1000


LOSS = """
import os
import torch.nn.functional as F

def loss(outputs, targets):
    if os.environ.get("RANK") == "1":
        raise ValueError("expected finite outputs, got a failing loss on this rank")
    return F.cross_entropy(outputs, targets, reduction="sum")
"""


@pytest.mark.slow  # torchrun with two ranks: 7 s (20 s on a loaded machine), mostly start-up
def test_an_error_on_rank_1_is_printed_with_its_rank(project):
    (project / "failing.py").write_text(LOSS)
    loss = ["--loss", f"{project}/failing.py:loss", "--loss-reduction", "sum"]
    done = torchrun("-m", "landscape", *compare_args(project, project / "out", *loss), timeout=90)
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("landscape compare:")]
    # raised while rank 1 computed its checkpoint: every rank stops, the line comes once
    assert ours == ["landscape compare: error on rank 1: expected finite outputs, got a "
                    "failing loss on this rank"], done.stderr[-3000:]  # fmt: skip
