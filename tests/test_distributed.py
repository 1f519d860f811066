"""Tests for landscape.distributed: grids split across ranks, resume across rank counts,
data split across ranks (surfaces, Hessian products, sharpness measures). Two processes on
the gloo backend, on CPU, through torchrun (``python -m torch.distributed.run``), which talks
over 127.0.0.1 only.

This file is also the worker: ``torchrun ... tests/test_distributed.py TASK OUTDIR``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from _torchrun import launch_once
from _torchrun import torchrun as run_ranks
from torch import nn

from landscape import distributed
from landscape.directions import random_directions
from landscape.evaluate import Objective
from landscape.hessian import HessianOperator
from landscape.sharpness import sharpness
from landscape.surface import compute_surface, load_surface
from landscape.tracking import Tracker, load_tracking

XS, YS = np.linspace(-1, 1, 7), np.linspace(-0.5, 1.0, 5)  # 35 points: 5 chunks of 8, non-square
KILL_AFTER = 1  # rounds a rank completes before the simulated crash
SHARPNESS = [
    "lambda_max",
    "trace",
    "keskar",
    "worst_l2",
    "avg_l2",
    "pacbayes",
    "fisher_rao",
    "relative_flatness",
    "rise",
]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
    return model.eval()


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(70, 2, 4, 4, generator=g), torch.randint(0, 3, (70,), generator=g)


def surface(path=None, **options):
    model = make_model()
    dirs = random_directions(model, seed=5)
    return compute_surface(
        model,
        make_data(),
        dirs,
        XS,
        YS,
        batch_size=16,
        path=path,
        progress=False,
        write_interval=0.0,
        **options,
    )


def sharded_values(shard: bool) -> dict[str, object]:
    model = make_model().double()
    inputs, targets = make_data()
    objective = Objective(model, (inputs.double(), targets), batch_size=9, shard_data=shard)
    dirs = random_directions(model, seed=5)
    points = objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], [[0.3, -0.2]] * 3)
    # What the Hessian and sharpness code does: its own loop over batches, then all_reduce.
    total = torch.zeros(1, dtype=torch.float64)
    for batch in objective.batches():
        sums, _ = objective.batch_sums(objective.base_state, batch)
        total += sums["loss"].detach()
    loop = float(objective.all_reduce(total)) / objective.num_examples
    return {"call": objective(), "points": points, "loop": loop, "n": objective.num_examples}


def sharded_sharpness(shard: bool) -> dict[str, object]:
    """Every kind of sharpness measure, m-sharpness with batches across ranks and batches of
    the objective, and a Hessian-vector product, on a float64 model."""
    model = make_model().double()
    inputs, targets = make_data()
    objective = Objective(model, (inputs.double(), targets), batch_size=9, shard_data=shard)
    results = sharpness(objective, SHARPNESS, seed=3, num_samples=3, num_probes=6)
    results["m_sharpness"] = sharpness(objective, ["worst_l2"], batch_size=16, num_steps=3)[
        "worst_l2"
    ]
    values = {name: (r.value, r.samples) for name, r in results.items()}
    operator = HessianOperator(objective)
    vector = torch.randn(operator.num_params, generator=torch.Generator().manual_seed(4))
    values["hvp"] = operator @ vector.double()
    return values


def make_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def mlp_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(20, 4, generator=g).double(), torch.randint(0, 3, (20,), generator=g)


def layout_errors() -> dict[str, str | None]:
    """What each workflow says of an FSDP2 and a tensor-parallel model: the error, or None
    where it computed."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    mesh = init_device_mesh("cpu", (distributed.world_size(),))
    fsdp, tp = make_mlp(), make_mlp()
    fully_shard(fsdp, mesh=mesh)
    parallelize_module(tp, mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})
    data, dirs = mlp_data(), random_directions(make_mlp(), seed=5)  # unsharded: same names
    errors: dict[str, str | None] = {}
    for layout, model in (("fsdp2", fsdp), ("tp", tp)):
        runs = {
            "objective": lambda model=model: Objective(model, data),
            "surface": lambda model=model: compute_surface(
                model, data, dirs, [0.0, 0.5], [0.5], progress=False
            ),
            "tracker": lambda model=model: Tracker(data, measures=["loss"]).log(model, 0),
            "at": lambda model=model: Objective(make_mlp(), data).at(model.state_dict()),
        }
        for name, run in runs.items():
            try:
                run()
                errors[f"{layout}_{name}"] = None
            except ValueError as err:
                errors[f"{layout}_{name}"] = str(err)
    return errors


def track(model: nn.Module, path, objective: Objective | None = None) -> None:
    """Eleven steps of a deterministic "training" (the same on every rank), logged every 5."""
    data = mlp_data() if objective is None else None
    measures = ["loss", "trace"]  # trace: Hessian products summed over the ranks' shards
    tracker = Tracker(data, objective=objective, path=path, every=5, measures=measures,
                      num_probes=4, trace_every=5)  # fmt: skip
    for step in range(11):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.97)
        tracker.log(model, step)


def lone_and_resumed_logs(out, me: int) -> None:
    """Rank 0 logs the trace alone while rank 1 waits; then the DDP tracking runs again on
    its file (every step recorded), and an FSDP2 model is tracked twice on one file. A
    collective after each shows that the ranks still make the same calls."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel as DDP

    measures = {"measures": ["loss", "trace"], "num_probes": 4, "trace_every": 1}
    lone = Tracker(mlp_data(), **measures).log(make_mlp(), 0) if me == 0 else None
    agreed = [distributed.all_gather_objects(("lone", me))]
    track(DDP(make_mlp()), os.path.join(out, "ddp.h5"))  # a rerun: rank 0 skips every step
    agreed.append(distributed.all_gather_objects(("ddp", me)))
    fsdp2 = make_mlp()
    fully_shard(fsdp2, mesh=init_device_mesh("cpu", (distributed.world_size(),)))
    for _ in range(2):  # the second run finds every step in the file
        tracker = Tracker(mlp_data(), path=os.path.join(out, "fsdp2.h5"), every=5,
                          measures=["loss"])  # fmt: skip
        for step in range(11):
            tracker.log(fsdp2, step)
        agreed.append(distributed.all_gather_objects(("fsdp2", me)))
    torch.save({"lone": lone, "agreed": agreed}, os.path.join(out, f"lone_rank{me}.pt"))


def recipe_surfaces(out, me: int) -> None:
    """Surface files of an FSDP2 and a tensor-parallel model over recipe directions (made
    again on each rank's pieces, never stored), each computed and then run again (which
    reads the file); a row-parallel weight's recipe refused."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    mesh = init_device_mesh("cpu", (distributed.world_size(),))
    fsdp2, tp, rowwise = make_mlp(), make_mlp(), make_mlp()
    fully_shard(fsdp2, mesh=mesh)
    parallelize_module(tp, mesh, {"0": ColwiseParallel(output_layouts=Replicate())})
    parallelize_module(rowwise, mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})
    found: dict[str, object] = {}
    calls = []
    original = Objective.evaluate_points

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    for name, model in (("fsdp2", fsdp2), ("tp", tp)):
        path = os.path.join(out, f"recipe_{name}.h5")
        first = compute_surface(model, mlp_data(), random_directions(model, seed=5, stored=False),
                                *RECIPE_GRID, path=path, progress=False)  # fmt: skip
        Objective.evaluate_points = counted
        again = compute_surface(model, mlp_data(), random_directions(model, seed=5, stored=False),
                                *RECIPE_GRID, path=path, progress=False)  # fmt: skip
        Objective.evaluate_points = original
        found[name] = (first.metrics["loss"], again.metrics["loss"], len(calls))
    try:
        random_directions(rowwise, stored=False)
        found["rowwise"] = None
    except ValueError as err:
        found["rowwise"] = str(err)
    found["compute_dtype"] = compute_dtypes_recorded(mesh, fsdp2)
    for shape in ((2, 1), (1, 2)):  # HSDP: replicated over one mesh dim, sharded over the other
        hsdp = make_mlp()
        fully_shard(hsdp, mesh=init_device_mesh("cpu", shape, mesh_dim_names=("rep", "shard")))
        dirs = random_directions(hsdp, seed=5, stored=False, **WHOLE_NORMS)
        surface = compute_surface(hsdp, mlp_data(), dirs, *RECIPE_GRID, progress=False)
        found[f"hsdp{shape}"] = surface.metrics["loss"]
    torch.save(found, os.path.join(out, f"recipes_rank{me}.pt"))


def compute_dtypes_recorded(mesh, fsdp2: nn.Module) -> tuple:
    """What a surface and the provenance of a result record of FSDP2's mixed precision
    (bfloat16 forward of float64 weights), and of a model without it."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from landscape._provenance import provenance

    mixed = make_mlp()
    fully_shard(mixed, mesh=mesh, mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16))
    surface = compute_surface(mixed, mlp_data(), random_directions(mixed, seed=5), [0.5],
                              progress=False)  # fmt: skip
    recorded = [provenance(Objective(m, mlp_data())) for m in (mixed, fsdp2)]
    return (surface.attrs.get("compute_dtype"), recorded[0].get("compute_dtype"),
            recorded[1].get("compute_dtype"), recorded[1]["layout"])  # fmt: skip


RECIPE_GRID = ([-0.5, 0.0, 0.5, 1.0], [-1.0, 0.5])
WHOLE_NORMS = {"norm": "layer", "ignore": "none"}  # norms summed over the shards


def tracking_files(out, me: int) -> None:
    from torch.nn.parallel import DistributedDataParallel

    track(DistributedDataParallel(make_mlp()), os.path.join(out, "ddp.h5"))
    model = make_mlp()
    sharded = Objective(model, mlp_data(), batch_size=3, shard_data=True)
    track(model, os.path.join(out, "sharded.h5"), sharded)
    uncached = Objective(model, mlp_data(), batch_size=3, shard_data=True, cache_data=False)
    digests = [sharded.data_sha256(), uncached.data_sha256()]
    torch.save(digests, os.path.join(out, f"sha_rank{me}.pt"))


# ---------------------------------------------------------------- worker (under torchrun)
def worker(task: str, out: str) -> None:
    distributed.init_from_env()
    me = distributed.rank()
    if task == "kill":
        original = Objective.evaluate_points
        calls = []

        def dying(self, *args, **kwargs):
            if me == 1 and len(calls) == KILL_AFTER:
                os._exit(3)  # a crash with no clean-up at all
            calls.append(1)
            return original(self, *args, **kwargs)

        Objective.evaluate_points = dying
        surface(os.path.join(out, "killed.h5"))
    elif task == "clean":  # the tasks that end cleanly, in one launch
        for k in (1, 3):
            result = surface(os.path.join(out, f"k{k}.h5"), points_per_pass=k)
            np.savez(os.path.join(out, f"k{k}_rank{me}.npz"), **result.metrics)
        torch.save(sharded_values(True), os.path.join(out, f"sharded_rank{me}.pt"))
        torch.save(sharded_sharpness(True), os.path.join(out, f"sharpness_rank{me}.pt"))
        tracking_files(out, me)
        lone_and_resumed_logs(out, me)
        recipe_surfaces(out, me)
        # a launch retried after a C++ abort (see torchrun below) runs again in this folder,
        # where the tracking files exist: before every rank skipped a file's steps alike,
        # that put the ranks out of step (seen once)
        torch.save(layout_errors(), os.path.join(out, f"layouts_rank{me}.pt"))
    else:
        raise ValueError(f"expected the task 'kill' or 'clean', got {task!r}")
    torch.distributed.destroy_process_group()


def torchrun(task: str, out):
    """This file as the worker of ``task`` on 2 ranks; the finished launcher."""
    done = run_ranks(os.path.abspath(__file__), task, str(out))
    if done.returncode != 0 and "terminate called without an active exception" in done.stderr:
        # A rank aborted in C++ (seen once in about 35 runs of the sharpness task, never
        # twice in a row): run the task once more; a failure that repeats still fails.
        done = run_ranks(os.path.abspath(__file__), task, str(out))
    return done


@pytest.fixture(scope="session")
def two_ranks(tmp_path_factory):
    """The folder of one torchrun launch of the tasks that end cleanly (grid, sharpness,
    layouts, tracking), shared by the pytest-xdist workers."""
    return launch_once(tmp_path_factory, "two_ranks", lambda out: torchrun("clean", out))


# ---------------------------------------------------------------- tests
@pytest.mark.slow  # torchrun with two ranks (all clean tasks): 35s on 2 busy cores
def test_two_ranks_equal_one_process_exactly(two_ranks, tmp_path, one_thread):
    for k in (1, 3):
        single = surface(tmp_path / f"single_k{k}.h5", points_per_pass=k)
        stored = load_surface(two_ranks / f"k{k}.h5")
        assert stored.attrs["num_computed"] == XS.size * YS.size
        for name, expected in single.metrics.items():
            np.testing.assert_array_equal(stored.metrics[name], expected)
            for rank in (0, 1):  # every rank returns the complete surface
                got = np.load(two_ranks / f"k{k}_rank{rank}.npz")[name]
                np.testing.assert_array_equal(got, expected)
    # K = 1 and K = 3 agree to float32 rounding (batched kernels sum in another order).
    k1, k3 = load_surface(two_ranks / "k1.h5"), load_surface(two_ranks / "k3.h5")
    np.testing.assert_allclose(k3["loss"], k1["loss"], rtol=1e-5)
    # Data split across ranks: the same values as all the data on one rank.
    plain = sharded_values(False)
    for rank in (0, 1):
        got = torch.load(two_ranks / f"sharded_rank{rank}.pt", weights_only=False)
        assert got["n"] == plain["n"] == 70
        for name, value in plain["call"].items():
            assert got["call"][name] == pytest.approx(value, rel=1e-12, abs=1e-12)
            np.testing.assert_allclose(got["points"][name], plain["points"][name], rtol=1e-12)
        assert got["loop"] == pytest.approx(plain["call"]["loss"], rel=1e-12)


@pytest.mark.slow  # torchrun, killed and resumed: 10s on 2 busy cores
def test_killed_on_one_rank_resumes_with_another_number_of_ranks(tmp_path, one_thread):
    done = torchrun("kill", tmp_path)
    assert done.returncode != 0
    path = tmp_path / "killed.h5"
    partial = load_surface(path)
    assert 0 < partial.attrs["num_computed"] < XS.size * YS.size, done.stderr[-3000:]
    resumed = surface(path)  # one process now, where two were
    never_killed = surface()
    assert load_surface(path).attrs["num_computed"] == XS.size * YS.size
    for name, expected in never_killed.metrics.items():
        np.testing.assert_array_equal(resumed.metrics[name], expected)
        np.testing.assert_array_equal(load_surface(path).metrics[name], expected)


@pytest.mark.slow  # the clean tasks' torchrun, if first
def test_sharpness_and_hessian_on_two_ranks_equal_one_process(two_ranks, one_thread):
    plain = sharded_sharpness(False)
    assert len(plain["m_sharpness"][1]) == 5  # 70 examples in batches of 16, across ranks
    for rank in (0, 1):
        got = torch.load(two_ranks / f"sharpness_rank{rank}.pt", weights_only=False)
        assert set(got) == set(plain)
        torch.testing.assert_close(got.pop("hvp"), plain["hvp"], rtol=1e-10, atol=1e-12)
        for name, (value, samples) in got.items():
            assert value == pytest.approx(plain[name][0], rel=1e-10, abs=1e-12), name
            if samples is not None:
                np.testing.assert_allclose(samples, plain[name][1], rtol=1e-10, atol=1e-12)


@pytest.mark.slow  # the clean tasks' torchrun, if first
def test_fsdp2_and_tensor_parallel_models_evaluated_and_sharded_states_refused_by_at(two_ranks):
    """Surfaces, Objective and Tracker evaluate sharded models (their values are checked in
    tests/objective/test_sharded.py); a sharded state cannot be loaded with .at()."""
    for rank in (0, 1):
        errors = torch.load(two_ranks / f"layouts_rank{rank}.pt", weights_only=False)
        assert len(errors) == 8
        for name, error in errors.items():
            if not name.endswith("_at"):
                assert error is None, f"{name}: {error}"
                continue
            assert error is not None, f"{name} computed on a sharded state"
            assert "\n" not in error and "full_state_dict=True" in error, error
            assert "DTensor" in error, error


@pytest.mark.slow  # the clean tasks' torchrun, if first
def test_tracker_under_torchrun_writes_each_step_once_like_one_process(two_ranks, tmp_path):
    single = tmp_path / "single.h5"
    track(make_mlp(), single)
    expected = load_tracking(single)
    digest = Objective(make_mlp(), mlp_data(), batch_size=3).data_sha256()
    assert expected.steps.tolist() == [0, 5, 10]
    for name in ("ddp", "sharded"):
        got = load_tracking(two_ranks / f"{name}.h5")
        assert got.steps.tolist() == [0, 5, 10], name  # once each, not once per rank
        sha256 = got.settings["data_sha256"]
        assert sha256 == (expected.settings["data_sha256"] if name == "ddp" else digest)
        for measure in ("loss", "trace"):
            np.testing.assert_allclose(got.values[measure], expected.values[measure], rtol=1e-9)
    for rank in (0, 1):  # the whole data's fingerprint, cached or not, on every rank
        assert torch.load(two_ranks / f"sha_rank{rank}.pt") == [digest, digest]


@pytest.mark.slow  # the clean tasks' torchrun, if first
def test_tracker_logs_on_one_rank_alone_and_reruns_skip_on_every_rank(two_ranks, tmp_path):
    """Rank 0 may log alone (its trace makes no collective); a rerun on a finished file,
    DDP or FSDP2, leaves the ranks in step (every rank skips what the file holds)."""
    single = Tracker(mlp_data(), measures=["loss", "trace"], num_probes=4, trace_every=1)
    expected = single.log(make_mlp(), 0)
    for rank in (0, 1):
        saved = torch.load(two_ranks / f"lone_rank{rank}.pt", weights_only=False)
        names = ("lone", "ddp", "fsdp2", "fsdp2")
        assert saved["agreed"] == [[(name, 0), (name, 1)] for name in names]
        if rank == 0:
            assert saved["lone"] == pytest.approx(expected, rel=1e-12)
    fsdp2 = load_tracking(two_ranks / "fsdp2.h5")
    assert fsdp2.steps.tolist() == [0, 5, 10]  # written once, by the first run
    assert load_tracking(two_ranks / "ddp.h5").steps.tolist() == [0, 5, 10]


@pytest.mark.slow  # the clean tasks' torchrun, if first
def test_sharded_models_surface_files_over_recipe_directions(two_ranks, tmp_path):
    """FSDP2 and tensor-parallel surfaces over recipe directions equal one process's, their
    files hold the same directions fingerprint, and a rerun reads the file (no point
    evaluated); a weight sharded along its columns cannot take a recipe."""
    single = compute_surface(make_mlp(), mlp_data(), random_directions(make_mlp(), seed=5,
                             stored=False), *RECIPE_GRID, path=tmp_path / "one.h5",
                             progress=False)  # fmt: skip
    digest = load_surface(tmp_path / "one.h5").attrs["directions_sha256"]
    recipes = random_directions(make_mlp(), seed=5, stored=False, **WHOLE_NORMS)
    layer = compute_surface(make_mlp(), mlp_data(), recipes, *RECIPE_GRID, progress=False)
    for rank in (0, 1):
        found = torch.load(two_ranks / f"recipes_rank{rank}.pt", weights_only=False)
        for name in ("fsdp2", "tp"):
            first, again, calls = found[name]
            np.testing.assert_allclose(first, single.metrics["loss"], rtol=1e-13, atol=0)
            np.testing.assert_array_equal(again, first)
            assert calls == 0, name  # the rerun found every point in the file
        assert "expected DTensors placed Shard(0) or Replicate() on every" in found["rowwise"]
        assert found["compute_dtype"] == ("bfloat16", "bfloat16", None, "FSDP2")
        for shape in ((2, 1), (1, 2)):
            np.testing.assert_allclose(found[f"hsdp{shape}"], layer.metrics["loss"], rtol=1e-13)
    for name in ("fsdp2", "tp"):
        assert load_surface(two_ranks / f"recipe_{name}.h5").attrs["directions_sha256"] == digest


def test_shard_chunks_deal_every_point_once():
    items = list(range(23))
    for world in (1, 2, 3, 5):
        shards = [distributed.shard_chunks(items, 4, rank_=r, world=world) for r in range(world)]
        dealt = sorted(i for shard in shards for chunk in shard for i in chunk)
        assert dealt == items
    assert distributed.shard_chunks(items, 4, rank_=1, world=2)[0] == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="chunk_size"):
        distributed.shard_chunks(items, 0)


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2])
