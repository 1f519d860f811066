"""``landscape hessian --plan`` and ``--max-memory`` (issue 21, item 2)."""

from __future__ import annotations

import textwrap

import torch
from torch import nn

from landscape.checkpoint import save_checkpoint
from landscape.cli import main

USER = textwrap.dedent(
    """
    import torch
    from torch import nn

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))

    def data():
        g = torch.Generator().manual_seed(0)
        return torch.randn(30, 5, generator=g), torch.randint(0, 3, (30,), generator=g)
    """
)


def common(tmp_path) -> list[str]:
    (tmp_path / "user.py").write_text(USER)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    save_checkpoint(model, tmp_path / "a.pt")
    return ["--model", f"{tmp_path}/user.py:model", "--data", f"{tmp_path}/user.py:data",
            "--checkpoint", str(tmp_path / "a.pt"), "--quiet"]  # fmt: skip


def test_plan_prints_the_tables_and_computes_nothing(tmp_path, capsys):
    out = tmp_path / "h.h5"
    args = ["hessian", *common(tmp_path), "--trace", "--density", "--out", str(out)]
    assert main([*args, "--plan", "--max-memory", "20000"]) == 0
    printed = capsys.readouterr().out
    assert "eigenpairs: n = 75, 4-byte entries" in printed and "* three-term" in printed
    assert "* two-pass" in printed and "* hutchinson" in printed
    assert not out.exists()
    assert main([*args, "--max-memory", "100"]) != 0  # refused: nothing fits
    assert "max_memory" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--max-memory", "1e9"]) == 0
    from landscape.hessian import load_hessian

    found = load_hessian(out)
    assert found.density.settings["strategy"] == "reorthogonalize"
    assert found.eigen.settings["max_memory"] == 10**9
