"""One round trip per registered kind: a small real result, ``landscape.save``d and
``landscape.load``ed back, equals the one computed field by field; and every result class
the library returns has a schema (or a stated reason to have none).

A new result type without a schema, or whose schema does not read back what it wrote, fails
here: the test is parametrized over the registry itself.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
import warnings

import numpy as np
import pytest
import torch
from _shared import gaussian_data, gaussian_mlp

import landscape
from landscape import io
from landscape.results import Result, values_equal

# Result classes with no schema of their own, and why (kept short on purpose: a new one
# should get a schema instead).
NOT_STORED = {
    "Comparison": "its own format, landscape.compare, written and resumed label by label",
    "Correlation": "written as CSV and Markdown tables by write_correlation",
    "CheckpointPlane": "its directions are stored (kind 'directions'); origin is a checkpoint",
    "ChanceCurvature": "a few numbers printed beside a surface; no file",
    "Curve": "a fitted curve's loss is stored (kind 'paths'); its bend is model weights",
    "Connection": "its paths are stored (kind 'paths')",
    "TraceEstimate": "returned inside TraceResult (kind 'hessian.trace') by the workflows",
    "Quadrature": "returned inside DensityResult (kind 'hessian.density') by the workflows",
    "Eigenpairs": "returned inside EigenResult (kind 'hessian.eigen') by the workflows",
    "Alignment": "its permutations are stored with the aligned path (kind 'paths'); the "
    "aligned model is rebuilt from them",
    "BarrierMatrix": "a K x K table of barriers, each the barrier of a line that "
    "connect_checkpoints gives (kind 'paths'); no file of its own yet",
    "MergeResult": "its merged state is saved as a checkpoint (MergeResult.save); its losses "
    "are a few numbers",
}


def _objective():
    return landscape.Objective(gaussian_mlp((3, 4, 2), seed=0).double(), gaussian_data(12, 3, 2))


def _surface():
    model = gaussian_mlp((3, 4, 2), seed=0).double()
    directions = landscape.random_directions(model, seed=1)
    return landscape.compute_surface(
        model, gaussian_data(12, 3, 2), directions, [-1, 0, 1], [0, 0.5], progress=False
    )


def _directions():
    return landscape.random_directions(gaussian_mlp((3, 4, 2), seed=0), seed=2)


def _trajectory():
    from landscape.trajectory import trajectory_plane

    objective = _objective()
    g = torch.Generator().manual_seed(3)
    final = objective.base_state
    run = [
        {
            n: t + 0.1 * k * torch.randn(t.shape, generator=g, dtype=t.dtype)
            for n, t in final.items()
        }
        for k in (3, 2, 1)
    ]
    return trajectory_plane(objective, [*run, final], num_points=3)


def _tracking():
    model = gaussian_mlp((3, 4, 2), seed=0).double()
    tracker = landscape.Tracker(
        gaussian_data(12, 3, 2), measures=["loss", "slice"], slice_x=[-0.5, 0.0, 0.5]
    )
    for step in range(2):
        tracker.log(model, step)
    return tracker.run


@functools.cache  # one computation for the five parts
def _hessian():
    objective = _objective()
    budget = {"seed": 0, "progress": False}
    return landscape.HessianResults(
        eigen=landscape.hessian_eigenpairs(objective, k=2, **budget),
        trace=landscape.hessian_trace(objective, num_probes=3, method="hutchinson", **budget),
        density=landscape.spectral_density(
            objective, num_probes=2, num_steps=4, num_grid=20, **budget
        ),
        extremes=landscape.extreme_eigenvalues(objective, **budget),
        blocks=landscape.block_curvature(objective, num_probes=4, **budget),
    )


def _sharpness():
    return landscape.sharpness(_objective(), ["avg_l2", "rise"], num_samples=3, progress=False)


def _paths():
    from landscape.paths import connect_checkpoints

    objective = _objective()
    end = {n: t + 0.1 for n, t in objective.base_state.items()}
    return connect_checkpoints(objective, objective.base_state, end, curve="line", t=3).paths


def _optim(kind: str):
    from landscape import optim

    def build():
        objective = _objective()
        if kind == "batch_sharpness":
            return optim.batch_sharpness(objective, lr=0.1)
        if kind == "gradient_alignment":
            return optim.gradient_alignment(objective, num_eigenpairs=2)
        opt = torch.optim.Adam(objective.model.parameters(), lr=0.01)
        x, y = gaussian_data(12, 3, 2)
        torch.nn.functional.cross_entropy(objective.model(x), y).backward()
        opt.step()
        return optim.preconditioned_sharpness(objective, opt)

    return build


def _part(name: str):
    return lambda: getattr(_hessian(), name)


# One small real result a registered kind (a mapping for a collection kind).
BUILDERS = {
    "surface": _surface,
    "directions": _directions,
    "trajectory": _trajectory,
    "tracking": _tracking,
    "hessian": _hessian,
    **{f"hessian.{part}": _part(part) for part in ("eigen", "trace", "density", "extremes")},
    "hessian.blocks": _part("blocks"),
    "sharpness": _sharpness,
    "paths": _paths,
    **{
        f"optim.{kind}": _optim(kind)
        for kind in ("preconditioned_sharpness", "batch_sharpness", "gradient_alignment")
    },
}


def _all_result_classes() -> set[type]:
    """Every :class:`Result` subclass defined in the package (every module imported)."""
    for module in pkgutil.walk_packages(landscape.__path__, "landscape."):
        if module.name != "landscape.__main__" and ".integrations." not in module.name:
            importlib.import_module(module.name)
    found, todo = set(), [Result]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("landscape.") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def test_every_registered_kind_has_a_round_trip_case():
    assert sorted(BUILDERS) == sorted(io.schemas())


def test_every_result_class_has_a_schema_or_a_reason():
    stored = {cls for entry in io.schemas().values() for cls in entry.types}
    missing = sorted(
        cls.__name__
        for cls in _all_result_classes() - stored
        if cls.__name__ not in NOT_STORED and not cls.__name__.startswith("_")
    )
    assert missing == [], f"expected a schema (landscape.storage.registry) for {missing}"
    assert len(stored) >= 12 and not {c.__name__ for c in stored} & set(NOT_STORED)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_every_registered_kind_reads_back_equal(tmp_path, kind):
    result = BUILDERS[kind]()
    path = tmp_path / "r.h5"
    landscape.save(result, path)
    loaded = landscape.load(path, kind)
    assert type(loaded) is type(result)
    pairs = loaded.items() if isinstance(loaded, dict) else [(kind, loaded)]
    for key, value in pairs:  # field by field, naming those that differ
        fields = [f.name for f in dataclasses.fields(value) if f.compare]
        differ = [
            n
            for n in fields
            if not values_equal(
                getattr(value, n), getattr(result if key == kind else result[key], n)
            )
        ]
        assert differ == [], f"{key}: {differ}"
    assert loaded == result
    contained = any(kind in entry.parts for entry in io.schemas().values())
    if not contained:  # the file records its kind: no kind= needed
        assert io.kinds_in(path) == [kind]
        assert landscape.load(path) == result


def test_one_result_of_a_collection_saves_under_its_name(tmp_path):
    results = _sharpness()
    landscape.save(results["rise"], tmp_path / "s.h5")
    assert landscape.load(tmp_path / "s.h5") == {"rise": results["rise"]}


def test_load_names_the_kinds_when_a_file_holds_several(tmp_path):
    path = tmp_path / "r.h5"
    landscape.save(_paths(), path)
    landscape.save(_sharpness(), path)
    assert io.kinds_in(path) == ["paths", "sharpness"]
    with pytest.raises(ValueError, match=r"pass kind= one of \['paths', 'sharpness'\]"):
        landscape.load(path)
    with pytest.raises(ValueError, match="expected a kind in"):
        landscape.load(path, "nonsense")
    with pytest.raises(TypeError, match="expected a result of a registered class"):
        landscape.save(np.zeros(3), path)


def test_the_old_path_first_order_still_works_with_a_warning(tmp_path):
    from landscape.hessian import load_hessian, save_hessian
    from landscape.sharpness import load_sharpness, save_sharpness
    from landscape.storage.paths import load_paths, save_paths
    from landscape.trajectory import load_trajectory, save_trajectory

    hessian, sharp, paths = _hessian(), _sharpness(), _paths()
    with pytest.warns(DeprecationWarning, match=r"save_sharpness\(path, result\) is deprecated"):
        save_sharpness(tmp_path / "s.h5", sharp)
    with pytest.warns(DeprecationWarning, match="save_paths"):
        save_paths(tmp_path / "p.h5", paths)
    with pytest.warns(DeprecationWarning, match="save_hessian"):
        save_hessian(tmp_path / "h.h5", eigen=hessian.eigen, trace=hessian.trace)
    trajectory = _trajectory()
    with pytest.warns(DeprecationWarning, match="save_trajectory"):
        save_trajectory(str(tmp_path / "t.h5"), trajectory)
    assert load_sharpness(tmp_path / "s.h5") == sharp
    assert load_paths(tmp_path / "p.h5") == paths
    assert load_hessian(tmp_path / "h.h5") == landscape.HessianResults(
        eigen=hessian.eigen, trace=hessian.trace
    )
    assert load_trajectory(tmp_path / "t.h5") == trajectory
    with warnings.catch_warnings():  # the documented order and keywords warn nothing
        warnings.simplefilter("error")
        save_sharpness(sharp, tmp_path / "s2.h5")
        save_hessian(path=tmp_path / "h2.h5", density=hessian.density)
        save_hessian(hessian.extremes, tmp_path / "h2.h5")
    assert load_hessian(tmp_path / "h2.h5").extremes == hessian.extremes
    with pytest.raises(ValueError, match="expected eigen once"):
        save_hessian(hessian, tmp_path / "h3.h5", eigen=hessian.eigen)


def test_a_kind_or_a_class_gets_one_schema():
    from landscape.storage.registry import Schema, register, schema

    surface = schema("surface")
    assert register(surface) is surface  # registering the same schema again is harmless
    twin = Schema("surface", (dict,), surface.write, surface.read, surface.holds)
    with pytest.raises(ValueError, match="one schema per kind"):
        register(twin)
    other = Schema("surface2", surface.types, surface.write, surface.read, surface.holds)
    with pytest.raises(ValueError, match=r"one schema per class, got \['Surface'\]"):
        register(other)
