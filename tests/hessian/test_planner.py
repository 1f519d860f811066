"""The memory planner (issue 21, item 2): each strategy's stated bound is above the peak
measured by tracking every allocation and within 1.5 times of it, and a job that fits
nowhere is refused before the first HVP."""

from __future__ import annotations

import pytest
import torch
from _live_vectors import LiveVectors, N, diagonal
from torch import nn

from landscape.evaluate import Objective
from landscape.hessian import (
    HessianOperator,
    hessian_eigenpairs,
    hessian_trace,
    spectral_density,
)
from landscape.hessian.planner import available_memory, plan_job
from landscape.linalg import (
    _krylov,
    bounds,
    estimate_trace,
    lanczos_eigenpairs,
    lanczos_quadrature,
    quadrature,
    two_pass_eigenpairs,
)

pytestmark = pytest.mark.usefixtures("small_pieces")

PRODUCT = 4 * N  # a float32 product of the diagonal operator
TWIN = 2 * 8 * N  # its float64 twin's product: the input cast, the output


@pytest.fixture(autouse=True)
def small_gathers(monkeypatch):
    """Products with the basis gather 8 KiB at a time, and the bounds count that."""
    for module in (_krylov, bounds, quadrature):
        monkeypatch.setattr(module, "_PIECE_BYTES", 2**13)


def measured(call) -> tuple[int, object]:
    with LiveVectors(N) as live:
        result = call()
    return live.peak_bytes, result


CASES = {
    # job, strategy, plan settings, the call at its worst case (a refinement in float64,
    # a basis that fills, a density of many steps), the bytes of its largest product
    "thick-restart": ("eigenpairs", {"k": 3, "max_hvps": 150}, TWIN,
                      lambda op: lanczos_eigenpairs(op, 3, max_matvecs=150, tol=1e-6)),
    "full-basis": ("eigenpairs", {"k": 3, "max_hvps": 40}, TWIN,
                   lambda op: lanczos_eigenpairs(op, 3, max_matvecs=40, max_basis=40, tol=0,
                                                 refine=False)),
    "two-pass": ("eigenpairs", {"k": 3, "max_hvps": 1000}, TWIN,
                 lambda op: two_pass_eigenpairs(op, 3, tol=1e-6)),
    "hutch++": ("trace", {"num_probes": 30}, PRODUCT,
                lambda op: estimate_trace(op, num_probes=30)),
    "hutchinson": ("trace", {"num_probes": 30}, PRODUCT,
                   lambda op: estimate_trace(op, num_probes=30, method="hutchinson")),
    "reorthogonalize": ("density", {"num_probes": 2, "num_steps": 40}, PRODUCT,
                        lambda op: lanczos_quadrature(op, num_probes=2, num_steps=40)),
    "three-term": ("density", {"num_probes": 2, "num_steps": 40}, PRODUCT,
                   lambda op: lanczos_quadrature(op, num_probes=2, num_steps=40,
                                                 reorthogonalize=False)),
}  # fmt: skip


@pytest.mark.parametrize("strategy", list(CASES))
def test_each_strategy_bound_is_above_the_peak_and_within_one_and_a_half(strategy):
    job, settings, product, call = CASES[strategy]
    op = diagonal(1e-2) if strategy == "thick-restart" else diagonal()
    plan = plan_job(job, N, 4, max_memory=2**40, hvp=product, strategy=strategy, **settings)
    peak, result = measured(lambda: call(op))
    if strategy == "thick-restart":
        assert result.num_matvecs64 > 3  # refined in float64: its worst case
    assert plan.choice == strategy
    assert peak <= plan.bound_bytes <= 1.5 * peak, plan.bound_bytes / peak


def test_auto_prefers_the_reference_and_falls_back_to_what_fits():
    k = {"k": 5, "max_hvps": 500}
    rows = plan_job("eigenpairs", 10**6, 4, max_memory=2**40, **k).rows
    bytes_of = {r.name: r.bytes for r in rows}
    assert bytes_of["two-pass"] < bytes_of["thick-restart"] < bytes_of["full-basis"]
    assert plan_job("eigenpairs", 10**6, 4, max_memory=2**40, **k).choice == "thick-restart"
    tight = bytes_of["thick-restart"] - 1
    assert plan_job("eigenpairs", 10**6, 4, max_memory=tight, **k).choice == "two-pass"
    steps = {"num_probes": 10, "num_steps": 80}
    assert plan_job("density", 10**6, 4, max_memory=2**40, **steps).choice == "reorthogonalize"
    assert plan_job("density", 10**6, 4, max_memory=10**8, **steps).choice == "three-term"
    assert plan_job("trace", 10**6, 4, max_memory=10**8, num_probes=99).choice == "hutchinson"
    with pytest.raises(RuntimeError, match=r"two-pass needs .* MB.*n = 1000000"):
        plan_job("eigenpairs", 10**6, 4, max_memory=10**6, **k)
    with pytest.raises(ValueError, match="strategy"):
        plan_job("eigenpairs", 10, 4, max_memory=10**6, strategy="lobpcg", **k)
    assert available_memory("cpu") > 0
    assert "* thick-restart" in plan_job("eigenpairs", 10**6, 4, max_memory=2**40, **k).table()


def mlp(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    x = torch.randn(12, 6, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (12,), generator=g)
    return Objective(model, (x, y))


def test_a_job_that_fits_nowhere_is_refused_before_the_first_hvp():
    op = HessianOperator(mlp())
    jobs = [
        lambda: hessian_eigenpairs(op, num_eigenpairs=2, max_memory=100, progress=False),
        lambda: hessian_trace(op, num_probes=9, max_memory=100, progress=False),
        lambda: spectral_density(op, num_probes=2, max_memory=100, progress=False),
        lambda: spectral_density(op, reorthogonalize=True, max_memory=2000, progress=False),
    ]
    for job in jobs:
        with pytest.raises(RuntimeError, match="max_memory"):
            job()
    assert op.num_hvps == 0


def test_the_hessian_jobs_record_their_plan_and_give_the_reference_answers():
    op = HessianOperator(mlp())
    n = op.size
    small = 30 * 8 * n  # fits two-pass and a three-term density, not their references
    auto = hessian_eigenpairs(op, num_eigenpairs=2, progress=False)
    two = hessian_eigenpairs(op, num_eigenpairs=2, max_memory=small, progress=False)
    assert auto.settings["strategy"] == "thick-restart" and "max_memory" not in auto.settings
    assert two.settings["strategy"] == "two-pass" and two.settings["max_memory"] == small
    assert two.settings["planned_bytes"] <= small and two.converged
    torch.testing.assert_close(
        torch.as_tensor(two.eigenvalues), torch.as_tensor(auto.eigenvalues), rtol=0, atol=1e-8
    )
    dense = spectral_density(op, num_probes=2, num_lanczos_steps=60, progress=False)
    plain = spectral_density(
        op, num_probes=2, num_lanczos_steps=60, max_memory=small, progress=False
    )
    assert (dense.settings["strategy"], plain.settings["strategy"]) == (
        "reorthogonalize", "three-term",
    )  # fmt: skip
    assert hessian_trace(op, num_probes=60, progress=False).settings["strategy"] == "hutch++"
    assert hessian_trace(op, num_probes=60, max_memory=small, progress=False).method == (
        "hutchinson"
    )
