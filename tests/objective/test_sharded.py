"""Sharded models (FSDP2 ``fully_shard``, tensor parallel through ``parallelize_module``):
surfaces equal the unsharded model's in float64, the model's local shards are perturbed in
place and written back bit for bit, and ``functional_call`` paths refuse before any work.

Two processes on the gloo backend, on CPU, through torchrun (as in
tests/test_distributed.py). This file is also the worker:
``torchrun ... tests/objective/test_sharded.py TASK OUTDIR``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from landscape import distributed
from landscape.directions import Directions, random_directions
from landscape.evaluate import Objective
from landscape.surface import compute_surface

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
XS, YS = [-0.6, 0.0, 0.45], [-0.3, 0.8]  # points away from the centre, and the centre
LINE = [-1.0, -0.25, 0.5, 1.5]
# direction options beside the default (filter norm): reductions over the mesh differ
DIRECTION_OPTIONS = {
    "orthogonalize": {"orthogonalize": True},
    "layer": {"norm": "layer"},
    "weight": {"norm": "weight"},
    "ignore_none": {"ignore": "none"},
}


def make_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def mlp_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(20, 4, generator=g).double(), torch.randint(0, 3, (20,), generator=g)


def values(model: nn.Module, directions: Directions | None = None) -> dict[str, object]:
    """The centre's loss, a plane and a line, each by compute_surface (batches of 7)."""
    dirs = random_directions(model, seed=5) if directions is None else directions
    objective = Objective(model, mlp_data(), batch_size=7)
    plane = compute_surface(objective, dirs, XS, YS, progress=False)
    line = compute_surface(objective, Directions(dirs.x), LINE, progress=False)
    return {"centre": objective()["loss"], "plane": plane.metrics, "line": line.metrics}


def drawn(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Both directions of every option in :data:`DIRECTION_OPTIONS`, whole."""
    from landscape.shards import is_dtensor

    out = {}
    for key, options in DIRECTION_OPTIONS.items():
        dirs = random_directions(model, seed=3, **options)
        for axis, d in (("x", dirs.x), ("y", dirs.y)):
            out[f"{key}_{axis}"] = {
                n: t.full_tensor() if is_dtensor(t) else t for n, t in d.items()
            }
    return out


def pieces(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of this rank's pieces of every tensor of the model."""
    from landscape.shards import local

    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    return {n: local(t).detach().clone() for n, t in state.items()}


def sharded_models() -> dict[str, nn.Module]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    mesh = init_device_mesh("cpu", (distributed.world_size(),))
    fsdp, tp = make_mlp(), make_mlp()
    fully_shard(fsdp[0], mesh=mesh)
    fully_shard(fsdp, mesh=mesh)
    parallelize_module(tp, mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})
    return {"fsdp2": fsdp, "tp": tp}


def refusals(model: nn.Module) -> dict[str, object]:
    """What the functional_call paths say of a sharded model, and how many forward passes
    they ran first."""
    from landscape.directions import directional_curvature
    from landscape.hessian import HessianOperator
    from landscape.optim import loss_gradient
    from landscape.paths import fit_curve
    from landscape.sharpness import sharpness

    objective = Objective(model, mlp_data(), batch_size=7)
    dirs = random_directions(model, seed=5)
    calls = []
    handle = model.register_forward_pre_hook(lambda *args: calls.append(1))
    moved = {n: t + 1.0 for n, t in objective.base_state.items()}  # what returned the base's
    batch = next(objective.batches())
    errors: dict[str, object] = {}
    runs = {
        "batch_sums": lambda: objective.batch_sums(objective.full_state(moved), batch),
        "hessian": lambda: HessianOperator(objective),
        "sharpness": lambda: sharpness(objective, ["avg_l2"], num_samples=2),
        "path": lambda: fit_curve(objective, model, model, kind="bezier", num_steps=2),
        "gradient": lambda: loss_gradient(objective),
        "curvature": lambda: directional_curvature(objective, dict(objective.base_state)),
        "convexity": lambda: compute_surface(objective, dirs, [0.5], convexity=True),
        "call_moved": lambda: objective(moved),
    }
    for name, run in runs.items():
        try:
            run()
            errors[name] = None
        except ValueError as err:
            errors[name] = str(err)
    handle.remove()
    errors["forward_calls"] = len(calls)
    try:
        Objective(model, mlp_data(), shard_data=True)
    except ValueError as err:
        errors["shard_data"] = str(err)
    return errors


# ---------------------------------------------------------------- worker (under torchrun)
def worker(task: str, out: str) -> None:
    distributed.init_from_env()
    me = distributed.rank()
    results: dict[str, object] = {}
    for layout, model in sharded_models().items():
        model.train()  # the caller's flag: left as it is
        before = pieces(model)
        results[layout] = values(model)
        # full-shape (plain) directions, drawn from an unsharded twin: sliced like the shards
        results[f"{layout}_plain"] = values(model, random_directions(make_mlp(), seed=5))
        after = pieces(model)
        results[f"{layout}_unchanged"] = all(torch.equal(before[n], after[n]) for n in before)
        results[f"{layout}_training"] = model.training
        results[f"{layout}_refusals"] = refusals(model)
        results[f"{layout}_directions"] = drawn(model)
    torch.save(results, os.path.join(out, f"{task}_rank{me}.pt"))
    torch.distributed.destroy_process_group()


def torchrun(task: str, out, nproc: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, MASTER_ADDR="127.0.0.1")
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    command += ["--master-addr", "127.0.0.1", "--master-port", str(port)]
    command += ["--monitor-interval", "0.1", os.path.abspath(__file__), task, str(out)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)


# ---------------------------------------------------------------- tests
@pytest.mark.slow  # torchrun with two ranks: 35 to 45 s on 2 busy cores
def test_fsdp2_and_tensor_parallel_surfaces_equal_the_unsharded_model(tmp_path):
    done = torchrun("values", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    plain, directions = values(make_mlp()), drawn(make_mlp())
    assert np.ptp(plain["plane"]["loss"]) > 0.01  # the points differ: a moved model counts
    for rank in (0, 1):
        got = torch.load(tmp_path / f"values_rank{rank}.pt", weights_only=False)
        for layout in ("fsdp2", "tp"):
            for case in (layout, f"{layout}_plain"):
                assert got[case]["centre"] == pytest.approx(plain["centre"], rel=1e-10)
                for kind in ("plane", "line"):
                    for name, expected in plain[kind].items():
                        np.testing.assert_allclose(
                            got[case][kind][name], expected, rtol=1e-10, atol=1e-12
                        )
            assert got[f"{layout}_unchanged"], layout  # local shards bit for bit
            for key, expected in directions.items():
                for name, t in got[f"{layout}_directions"][key].items():
                    torch.testing.assert_close(t, expected[name], rtol=1e-12, atol=1e-15)
            assert got[f"{layout}_training"] is True, layout
            refused = got[f"{layout}_refusals"]
            assert refused.pop("forward_calls") == 0, layout  # refused before any work
            assert "expected shard_data=False" in refused.pop("shard_data", ""), layout
            for name, error in refused.items():
                assert error is not None, f"{layout} {name} computed"
                assert "\n" not in error and "full_state_dict=True" in error, error
                expected = "the model's own state" if name == "call_moved" else layout.upper()
                assert expected.replace("TP", "tensor parallel") in error, error


@pytest.fixture
def one_rank(tmp_path):
    """A one-rank gloo group and a one-device CPU mesh, destroyed after the test."""
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no group already")
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0,
                            world_size=1)  # fmt: skip
    from torch.distributed.device_mesh import init_device_mesh

    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


def test_fsdp2_on_one_rank_equals_the_unsharded_model_and_leaves_it_as_it_was(one_rank):
    model = sharded_models()["fsdp2"]
    model.train()
    before = pieces(model)
    got, plain = values(model), values(make_mlp())
    assert pieces(model).keys() == before.keys()
    assert all(torch.equal(t, before[n]) for n, t in pieces(model).items())
    assert model.training and all(m.training for m in model.modules())
    assert got["centre"] == plain["centre"]
    for kind in ("plane", "line"):
        for name, expected in plain[kind].items():
            np.testing.assert_allclose(got[kind][name], expected, rtol=1e-12, atol=1e-14)


def test_sharded_directions_are_laid_out_like_the_parameters(one_rank):
    from torch.distributed.tensor import DTensor

    tp = sharded_models()["tp"]
    dirs = random_directions(tp, seed=5)
    plain = random_directions(make_mlp(), seed=5)
    for name, d in dirs.x.items():
        assert isinstance(d, DTensor) and d.placements == tp.get_parameter(name).placements
        torch.testing.assert_close(d.full_tensor(), plain.x[name], rtol=1e-14, atol=0)
    assert dirs.cosine == pytest.approx(plain.cosine, rel=1e-12)


def test_options_a_sharded_model_cannot_take_refused_in_one_line(one_rank, tmp_path):
    model = sharded_models()["fsdp2"]
    objective = Objective(model, mlp_data())
    dirs = random_directions(model, seed=5)
    refused = {
        "train_mode=False": lambda: Objective(model, mlp_data(), train_mode=True),
        "recipe directions": lambda: compute_surface(
            objective, dirs, [0.5], path=tmp_path / "s.h5"
        ),  # fmt: skip
        "no interpolation end": lambda: objective.evaluate_points(
            objective.base_state, [dirs.x], [[0.5]], ends=[dirs.x]
        ),
    }
    for expected, run in refused.items():
        with pytest.raises(ValueError, match=f"expected {expected}.*FSDP2") as caught:
            run()
        assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=r"expected DTensors placed Shard\(0\) or Replicate"):
        random_directions(sharded_models()["tp"], seed=5, stored=False)  # a row-parallel weight


def test_recipe_directions_of_a_sharded_model_are_made_on_its_pieces(one_rank):
    model = sharded_models()["fsdp2"]
    for norm, ignore in (("filter", "biasbn"), ("layer", "none"), ("filter", "none")):
        recipes = random_directions(model, seed=5, norm=norm, ignore=ignore, stored=False)
        plain = random_directions(make_mlp(), seed=5, norm=norm, ignore=ignore, stored=False)
        for got, expected in ((recipes.x, plain.x), (recipes.y, plain.y)):
            for name in expected:
                torch.testing.assert_close(got[name].full_tensor(), expected[name], rtol=1e-14,
                                           atol=1e-16)  # fmt: skip


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2])
