"""Hessian curvature of an FSDP2 model on each rank's local shards (issues 20 and 21):
finite-difference HVPs by the model's own backward, the solvers' dot products all-reduced.
Under two gloo ranks, the top-3 eigenpairs and a Hutchinson trace equal the dense float64
Hessian's of the unsharded model, the model's shards and gradients are left bit for bit,
and exact products are refused in one line.

One torchrun launch for the whole file (a session fixture shared by the pytest-xdist
workers); this file is also the worker: ``torchrun ... tests/hessian/test_sharded_hessian.py
OUTDIR``.
"""

from __future__ import annotations

import functools
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

from landscape import distributed
from landscape.hessian import HessianOperator, hessian_eigenpairs, hessian_trace
from landscape.hessian.sharded import Pieces
from landscape.linalg import MatvecOperator, estimate_trace, two_pass_eigenpairs
from landscape.objective import Objective
from landscape.sharpness import sharpness
from landscape.tracking import Tracker

K, PROBES, SEED = 3, 6, 3
NOISE = {"stored": False, "num_samples": 3, "seed": 2}  # recipe draws
RECIPE_MEASURES = ["rise", "avg_l2", "pacbayes"]
# fd products in float64: relative error about 7e-11 (hvp_error); measured: eigenvalues
# within 1.4e-11, quadratic forms within 7e-10, eigenvectors within 2.2e-9 of the dense ones
RTOL = 1e-8


def make_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(24, 6, generator=g).double(), torch.randint(0, 3, (24,), generator=g)


def objective(model: nn.Module) -> Objective:
    return Objective(model, data(), batch_size=12)  # two batches, summed


@functools.cache
def dense_hessian() -> tuple[torch.Tensor, list[str], list[torch.Size]]:
    """The unsharded model's mean cross-entropy Hessian, dense, float64 (autograd)."""
    model = make_mlp()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    x, y = data()

    def loss(w: torch.Tensor) -> torch.Tensor:
        parts = w.split([s.numel() for s in shapes])
        state = {n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)}
        out = torch.func.functional_call(model, state, (x,))
        return nn.functional.cross_entropy(out, y)

    return torch.autograd.functional.hessian(loss, flat), names, shapes


# ---------------------------------------------------------------- worker (under torchrun)
def pieces(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of this rank's pieces of every parameter and gradient."""
    from landscape.shards import local

    found = {n: local(p).detach().clone() for n, p in model.named_parameters()}
    found.update({f"{n}.grad": local(p.grad).clone() for n, p in model.named_parameters()})
    return found


def worker(out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    distributed.init_from_env()
    me = distributed.rank()
    model = make_mlp()
    mesh = init_device_mesh("cpu", (distributed.world_size(),))
    fully_shard(model[0], mesh=mesh)
    fully_shard(model, mesh=mesh)
    x, y = data()
    nn.functional.cross_entropy(model(x[:5]), y[:5]).backward()  # gradients held by the caller
    model.train()
    before = pieces(model)
    obj = objective(model)
    eigen = hessian_eigenpairs(obj, num_eigenpairs=K, hvp="fd", progress=False)
    trace = hessian_trace(obj, hvp="fd", num_probes=PROBES, seed=SEED, progress=False)
    measured = sharpness(obj, ["lambda_max", "trace"], hvp="fd", num_probes=PROBES, seed=SEED,
                         progress=False)  # fmt: skip
    noise = sharpness(obj, RECIPE_MEASURES, **NOISE, progress=False)  # recipes on shards
    tracker = Tracker(objective=obj, measures=["loss", "lambda_max"], hvp="fd")
    logged = [tracker.log(model, step) for step in range(2)]  # the second warm-started
    after = pieces(model)
    tp = parallelize_module(make_mlp(), mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})
    summed = fully_shard(make_mlp(), mesh=mesh)
    summed.set_gradient_divide_factor(1.0)  # gradients summed over the ranks, not averaged
    refusals = {}
    for name, run in {
        "eigen_exact": lambda: hessian_eigenpairs(obj, num_eigenpairs=K, progress=False),
        "trace_exact": lambda: hessian_trace(obj, hvp="exact", num_probes=4, progress=False),
        "operator": lambda: HessianOperator(obj, hvp="auto"),
        "hutch++": lambda: hessian_trace(obj, hvp="fd", method="hutch++", progress=False),
        "tp": lambda: hessian_eigenpairs(objective(tp), hvp="fd", progress=False),
        "summed": lambda: hessian_trace(objective(summed), hvp="fd", progress=False),
        "sharpness_exact": lambda: sharpness(obj, ["lambda_max"], progress=False),
        "sharpness_rise": lambda: sharpness(obj, ["trace", "rise"], hvp="fd", progress=False),
        "adaptive": lambda: sharpness(obj, ["adaptive_avg_l2"], stored=False, progress=False),
        "magnitude": lambda: sharpness(obj, ["pacbayes_mag"], stored=False, progress=False),
    }.items():
        try:
            run()
            refusals[name] = None
        except ValueError as err:
            refusals[name] = str(err)
    results = {
        "eigen": eigen,
        "trace": trace,
        "sharpness": measured,
        "noise": noise,
        "logged": logged,
        "unchanged": {n: torch.equal(t, after[n]) for n, t in before.items()},
        "training": model.training and all(m.training for m in model.modules()),
        "refusals": refusals,
    }
    torch.save(results, os.path.join(out, f"rank{me}.pt"))
    torch.distributed.destroy_process_group()


# ---------------------------------------------------------------- tests
@pytest.fixture(scope="session")
def ranks(tmp_path_factory) -> list[dict]:
    """Both ranks' results from one torchrun launch, shared by the pytest-xdist workers."""
    from _torchrun import launch_once, torchrun  # on the path under pytest, not in the worker

    out = launch_once(
        tmp_path_factory,
        "sharded_hessian",
        lambda out: torchrun(os.path.abspath(__file__), str(out)),
    )
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def whole(results: list[dict], i: int, names: list[str]) -> np.ndarray:
    """Eigenvector ``i`` put together from both ranks' pieces (Shard(0): rows in order)."""
    parts = [r["eigen"].as_state(i) for r in results]
    return np.concatenate([torch.cat([p[n] for p in parts]).reshape(-1).numpy() for n in names])


@pytest.mark.slow  # one torchrun launch with two ranks: about 15 s on 2 busy cores
def test_fsdp2_top_eigenpairs_equal_the_dense_hessian(ranks):
    hessian, names, _ = dense_hessian()
    values, vectors = torch.linalg.eigh(hessian)
    top = values.flip(0)[:K].numpy()
    for r, got in enumerate(ranks):
        eigen = got["eigen"]
        assert eigen.hvp == "fd" and eigen.converged, r
        assert isinstance(eigen.hvp_error, float) and eigen.hvp_error < 1e-7, eigen.hvp_error
        np.testing.assert_allclose(eigen.eigenvalues, top, rtol=RTOL)
        assert eigen.settings["layout"] == "FSDP2" and eigen.settings["ranks"] == 2
    for i in range(K):
        v = vectors[:, -1 - i].numpy()
        v = v * np.sign(v[np.abs(v).argmax()])  # the largest entry positive, as the result's
        np.testing.assert_allclose(whole(ranks, i, names), v, atol=1e-7)


@pytest.mark.slow
def test_fsdp2_trace_equals_the_dense_hessian_on_the_same_probes(ranks):
    hessian, names, shapes = dense_hessian()
    plain = [torch.empty(s, dtype=torch.float64) for s in shapes]
    draws = Pieces(plain, group=None)  # whole tensors: the whole probes every rank slices
    g = torch.Generator().manual_seed(SEED)
    probes = [draws.rademacher(g, torch.float64, "cpu") for _ in range(PROBES)]
    forms = np.array([float(z @ hessian @ z) for z in probes])
    for got in ranks:
        trace = got["trace"]
        assert trace.method == "hutchinson" and trace.settings["ranks"] == 1
        np.testing.assert_allclose(trace.samples, forms, rtol=RTOL)
        assert trace.value == pytest.approx(forms.mean(), rel=RTOL)
        assert abs(trace.value - float(hessian.trace())) < 4 * trace.stderr
    assert ranks[0]["trace"].value == ranks[1]["trace"].value


@pytest.mark.slow
def test_fsdp2_model_left_bit_for_bit_and_exact_products_refused(ranks):
    for got in ranks:
        assert all(got["unchanged"].values()), got["unchanged"]
        assert got["training"]
        refused = got["refusals"]
        for name in ("eigen_exact", "trace_exact", "operator"):
            assert "expected hvp='fd' with a model sharded by FSDP2" in refused[name], name
            assert "\n" not in refused[name]
        assert "expected an operator with whole vectors" in refused["hutch++"]
        assert "got one sharded by tensor parallel" in refused["tp"]
        assert "full_state_dict=True" in refused["tp"] and "\n" not in refused["tp"]
        assert "expected FSDP2's gradients averaged over the 2 ranks" in refused["summed"]


@pytest.mark.slow
def test_fsdp2_sharpness_and_tracker_curvature_with_fd_products(ranks):
    """``sharpness(..., hvp="fd")``'s lambda_max and trace, and a Tracker's lambda_max,
    equal the dense Hessian's; the other measures and exact products are refused."""
    hessian, _, shapes = dense_hessian()
    top = float(torch.linalg.eigvalsh(hessian)[-1])
    draws = Pieces([torch.empty(s, dtype=torch.float64) for s in shapes], group=None)
    g = torch.Generator().manual_seed(SEED)
    forms = [float(z @ hessian @ z) for z in (draws.rademacher(g, torch.float64, "cpu")
                                              for _ in range(PROBES))]  # fmt: skip
    x, y = data()
    with torch.no_grad():
        loss = float(nn.functional.cross_entropy(make_mlp()(x), y))
    for got in ranks:
        lam, trace = got["sharpness"]["lambda_max"], got["sharpness"]["trace"]
        assert lam.value == pytest.approx(top, rel=RTOL) and lam.extra["converged"] == 1.0
        assert lam.settings["hvp"] == "fd" and lam.settings["hvp_error"] < 1e-7
        assert trace.settings["method"] == "hutchinson" and trace.settings["hvp"] == "fd"
        np.testing.assert_allclose(trace.samples, forms, rtol=RTOL)
        for log in got["logged"]:
            assert log["lambda_max"] == pytest.approx(top, rel=RTOL)
            assert log["loss"] == pytest.approx(loss, rel=1e-12)
        refused = got["refusals"]
        assert "expected hvp='fd' with a model sharded by FSDP2" in refused["sharpness_exact"]
        assert "functional_call" in refused["sharpness_rise"], refused["sharpness_rise"]
        assert "lambda_max and trace with hvp='fd'" in refused["sharpness_rise"]


@pytest.mark.slow
def test_fsdp2_noise_measures_from_recipes_equal_the_unsharded_model(ranks):
    """Each rank makes its pieces of every recipe draw and writes them into its shards:
    the same rises as one process's ``stored=False`` measures; adaptive noise refused."""
    plain = sharpness(objective(make_mlp()), RECIPE_MEASURES, **NOISE, progress=False)
    for got in ranks:
        assert got["noise"]["pacbayes"].value == pytest.approx(plain["pacbayes"].value, 1e-9)
        for name in RECIPE_MEASURES:
            np.testing.assert_allclose(got["noise"][name].samples, plain[name].samples,
                                       rtol=1e-9, atol=1e-15)  # fmt: skip
            assert got["noise"][name].settings["layout"] == "FSDP2"
        assert "expected avg_l2 (a scale of rho)" in got["refusals"]["adaptive"]
        assert "expected pacbayes (a noise scale sigma)" in got["refusals"]["magnitude"]


def test_solvers_that_hold_whole_vectors_refuse_split_ones():
    class Split(MatvecOperator):
        space = object()  # any space: a sharded operator's pieces

    op = Split(lambda x: x, 4)
    with pytest.raises(ValueError, match="expected an operator with whole vectors for two-pass"):
        two_pass_eigenpairs(op, 1)
    with pytest.raises(ValueError, match="whole vectors for method 'hutch\\+\\+'"):
        estimate_trace(op, num_probes=6)


if __name__ == "__main__":
    worker(sys.argv[1])
