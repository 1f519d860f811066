"""The planner behind the curvature measures (issue 21): ``max_memory=`` makes the trace
Hutchinson where Hutch++'s sketch does not fit, refuses an eigenvalue whose basis does
not fit before any product, and reaches a Tracker's measures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape.hessian import HessianOperator, hessian_trace
from landscape.hessian.planner import plan_for
from landscape.objective import Objective
from landscape.sharpness import sharpness
from landscape.tracking import Tracker


def objective() -> Objective:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(1)
    data = torch.randn(40, 5, generator=g).double(), torch.randint(0, 3, (40,), generator=g)
    return Objective(model, data)


def between(job: str, small: str, large: str, **settings) -> int:
    """A cap that fits ``small``'s plan and not ``large``'s."""
    rows = {r.name: r.bytes for r in plan_for(HessianOperator(objective()), job, 1 << 40,
                                              "auto", **settings).rows}  # fmt: skip
    assert rows[small] < rows[large]
    return (rows[small] + rows[large]) // 2


def test_trace_falls_back_to_hutchinson_under_a_cap():
    cap = between("trace", "hutchinson", "hutch++", num_probes=12)
    found = sharpness(objective(), ["trace"], num_probes=12, seed=2, max_memory=cap,
                      progress=False)["trace"]  # fmt: skip
    assert found.settings["method"] == "hutchinson"
    assert found.settings["strategy"] == "hutchinson" and found.settings["max_memory"] == cap
    plain = hessian_trace(objective(), num_probes=12, seed=2, method="hutchinson",
                          progress=False)  # fmt: skip
    assert found.value == pytest.approx(plain.value, rel=1e-12)
    roomy = sharpness(objective(), ["trace"], num_probes=12, progress=False)["trace"]
    assert roomy.settings["method"] == "hutch++"  # as before when it fits


def test_eigenvalue_that_does_not_fit_is_refused_before_any_product(monkeypatch):
    cap = between("eigenpairs", "two-pass", "thick-restart", k=1, max_hvps=500) // 4
    products = []
    original = HessianOperator.matvec
    monkeypatch.setattr(HessianOperator, "matvec",
                        lambda self, v: products.append(1) or original(self, v))  # fmt: skip
    with pytest.raises(RuntimeError, match="thick-restart") as refused:
        sharpness(objective(), ["lambda_max"], max_memory=cap, progress=False)
    assert products == [] and "\n" not in str(refused.value)
    found = sharpness(objective(), ["lambda_max"], progress=False)["lambda_max"]
    assert found.settings["strategy"] == "thick-restart" and found.settings["planned_bytes"] > 0
    assert len(products) == found.extra["num_hvps"]


def test_tracker_routes_the_cap_to_its_trace():
    cap = between("trace", "hutchinson", "hutch++", num_probes=6)
    tracker = Tracker(objective=objective(), measures=["loss", "trace"], num_probes=6,
                      trace_every=1, max_memory=cap)  # fmt: skip
    logged = tracker.log(objective().model, 0)
    plain = hessian_trace(objective(), num_probes=6, method="hutchinson", progress=False)
    assert logged["trace"] == pytest.approx(plain.value, rel=1e-12)
    assert tracker.settings["max_memory"] == cap
