"""``compare_checkpoints(..., barriers=True, align=...)`` and ``landscape compare --barriers``:
the pairwise barrier matrix of the compared checkpoints, stored in the comparison file,
read back on a rerun, and drawn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape.checkpoint import save_checkpoint
from landscape.cli import main
from landscape.compare import compare_checkpoints
from landscape.objective import Objective
from landscape.paths import barrier_matrix
from landscape.storage.compare import read_compare_barriers


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(24, 3, generator=g, dtype=torch.float64), torch.randint(
        0, 2, (24,), generator=g
    )


def permuted(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model`` with its hidden units reversed: the same function, other weights."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    order = torch.arange(4, -1, -1)
    state["0.weight"], state["0.bias"] = state["0.weight"][order], state["0.bias"][order]
    state["2.weight"] = state["2.weight"][:, order]
    return state


def run(path, **options):
    checkpoints = {"a": mlp(1), "a_permuted": permuted(mlp(1)), "b": mlp(2)}
    return compare_checkpoints(mlp(0), checkpoints, data(), measures=[], line=[0.0, 1.0],
                               num_directions=1, path=path, progress=False, **options)  # fmt: skip


def test_the_barrier_matrix_is_the_pairwise_barriers_stored_and_read_back(tmp_path, monkeypatch):
    found = run(tmp_path / "c.h5", align="weights", barrier_points=5)
    matrix = found.barriers
    assert matrix.labels == ["a", "a_permuted", "b"]
    states = {"a": mlp(1), "a_permuted": permuted(mlp(1)), "b": mlp(2)}
    expected = barrier_matrix(Objective(mlp(0), data()), states, align="weights", t=5)
    np.testing.assert_array_equal(matrix.before, expected.before)
    np.testing.assert_array_equal(matrix.after, expected.after)
    # a permuted copy of a network is in its basin once aligned, not before
    assert matrix.before[0, 1] > 1e-3 and abs(matrix.after[0, 1]) < 1e-12
    arrays, attrs = read_compare_barriers(tmp_path / "c.h5")
    np.testing.assert_array_equal(arrays["after"], matrix.after)
    assert list(attrs["labels"]) == matrix.labels and attrs["align"] == "weights"

    def refuse(*args, **kwargs):
        raise AssertionError("the stored barrier matrix was computed again")

    monkeypatch.setattr("landscape.compare.barrier_matrix", refuse)
    again = run(tmp_path / "c.h5", align="weights", barrier_points=5)
    np.testing.assert_array_equal(again.barriers.after, matrix.after)
    monkeypatch.undo()  # other settings: computed again, the file's matrix replaced
    other = run(tmp_path / "c.h5", barriers=True, barrier_points=3)
    assert other.barriers.after is None and other.barriers.settings["num_points"] == 3
    assert "after" not in read_compare_barriers(tmp_path / "c.h5")[0]
    assert run(tmp_path / "none.h5").barriers is None


def test_bad_barrier_options_are_refused_before_work(tmp_path):
    with pytest.raises(ValueError, match="expected one of"):
        run(None, align="sideways")
    with pytest.raises(ValueError, match="at least two checkpoints"):
        compare_checkpoints(mlp(0), {"a": mlp(1)}, data(), measures=[], barriers=True,
                            progress=False)  # fmt: skip


def test_compare_command_line_draws_the_barrier_matrix(tmp_path):
    code = (
        "import torch\nfrom torch import nn\n"
        "def model():\n    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))\n"
        "def data():\n    g = torch.Generator().manual_seed(0)\n"
        "    return torch.randn(24, 3, generator=g), torch.randint(0, 2, (24,), generator=g)\n"
    )
    (tmp_path / "user.py").write_text(code)
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        save_checkpoint(nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)),
                        tmp_path / f"m{seed}.pt")  # fmt: skip
    args = ["compare", "--model", f"{tmp_path}/user.py:model", "--data",
            f"{tmp_path}/user.py:data", "--quiet", *(str(tmp_path / f"m{s}.pt") for s in (1, 2, 3)),
            "--metric", "fisher_rao", "--x=-1:1:3", "--num-directions", "1", "--align", "weights",
            "--barrier-points", "3", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 0
    arrays, attrs = read_compare_barriers(tmp_path / "out" / "compare.h5")
    assert arrays["before"].shape == arrays["after"].shape == (3, 3)
    assert list(attrs["labels"]) == ["m1", "m2", "m3"] and attrs["num_points"] == 3
    assert (tmp_path / "out" / "compare_barriers.png").stat().st_size > 1000
