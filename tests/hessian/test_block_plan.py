"""The memory plan of ``block_curvature`` (issue 21, item 2): every job planned before any
product, a job that fits nowhere refused, the densities three-term where the
reorthogonalized basis does not fit; ``landscape hessian --per-block --plan`` prints it."""

from __future__ import annotations

import pytest
import torch
from test_planner_cli import common
from torch import nn

from landscape.cli import main
from landscape.hessian import HessianOperator, block_curvature
from landscape.hessian.block_plan import plan_blocks
from landscape.linalg import lanczos_quadrature
from landscape.objective import Objective


def objective() -> Objective:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(1)
    data = torch.randn(30, 4, generator=g).double(), torch.randint(0, 3, (30,), generator=g)
    return Objective(model, data)


SIZES = {"0": 30, "2": 21}
DENSITY = {"densities": True, "num_density_probes": 2, "num_lanczos_steps": 12, "num_probes": 9}


def rows(**options) -> dict[str, dict[str, int]]:
    plans = plan_blocks(SIZES, torch.float64, "cpu", 1 << 40, max_hvps=500, num_probes=9,
                        method="hutch++", **options)  # fmt: skip
    return {job: {r.name: r.bytes for r in plan.rows} for job, plan in plans.items()}


def test_densities_are_three_term_where_the_basis_does_not_fit():
    needs = rows(density=(2, 12))
    cap = (needs["density"]["three-term"] + needs["density"]["reorthogonalize"]) // 2
    assert max(needs["eigenpairs"]["two-pass"], needs["trace"]["hutch++"]) < cap
    found = block_curvature(objective(), max_memory=cap, progress=False, **DENSITY)
    assert found.settings["density_strategy"] == "three-term"
    assert found.settings["max_memory"] == cap
    op = HessianOperator(objective(), params=["0.weight", "0.bias"])
    rule = lanczos_quadrature(op, num_probes=2, num_steps=12, reorthogonalize=False)
    torch.testing.assert_close(torch.as_tensor(found.densities["0"].nodes),
                               torch.as_tensor(rule.nodes))  # fmt: skip
    roomy = block_curvature(objective(), progress=False, **DENSITY)
    assert roomy.settings["density_strategy"] == "reorthogonalize"


def test_a_job_that_fits_nowhere_is_refused_before_any_product(monkeypatch):
    needs = rows(num_off_block_probes=5)
    cap = (needs["trace"]["hutch++"] + needs["off_block"]["hutchinson"]) // 2
    assert needs["off_block"]["hutchinson"] > cap > needs["eigenpairs"]["two-pass"]
    products = []
    original = HessianOperator.matvec
    monkeypatch.setattr(HessianOperator, "matvec",
                        lambda self, v: products.append(1) or original(self, v))  # fmt: skip
    with pytest.raises(RuntimeError, match="^off-block share: expected a strategy"):
        block_curvature(objective(), off_block=True, num_off_block_probes=5, num_probes=9,
                        max_memory=cap,
                        progress=False)  # fmt: skip
    assert products == []


def test_cli_prints_the_block_plans(tmp_path, capsys):
    out = tmp_path / "h.h5"
    args = ["hessian", *common(tmp_path), "--per-block", "--off-block", "--block-density",
            "--out", str(out), "--plan"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "per-block: 2 blocks, the largest '0' (48 weights)" in printed
    assert "off-block: n = 75" in printed and "density: n = 48" in printed
    assert not out.exists()
