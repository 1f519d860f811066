"""The storage layer: symmetric attributes, each way of writing a surface or directions read
back equal (every registered kind: tests/storage/test_roundtrip.py), every kind of bad file refused
with a message naming what is wrong, version 0.1 files still read."""

import importlib.util
import os
import re
import shutil

import h5py
import numpy as np
import pytest
import torch
from _shared import TEST_DATA
from torch import nn

import landscape
from landscape import storage
from landscape.directions import load_directions, random_directions, save_directions
from landscape.results import values_equal
from landscape.surface import compute_surface, load_surface, save_surface

DATA = TEST_DATA

# ---------------------------------------------------------------- attributes
ATTR_VALUES = {
    "str": "filter",
    "empty str": "",
    "unicode": "naïve ∂",
    "str with the json prefix": "json:[1]",
    "str that looks like a list": '["loss"]',
    "str that looks like a dict": '{"a": 1}',
    "str null": "null",
    "quoted str": '"x"',
    "str with NUL": "a\x00b",
    "true": True,
    "false": False,
    "numpy bool": np.bool_(True),
    "int": -5,
    "big int": 2**70,
    "float": 0.1,
    "nan": float("nan"),
    "inf": float("-inf"),
    "numpy float32": np.float32(0.1),
    "numpy int8": np.int8(-3),
    "None": None,
    "empty list": [],
    "list of str": ["loss", "accuracy"],
    "list of numbers": [1, 2.5],
    "mixed list": [1, "a", None, True, [2.0]],
    "tuple": (3, 4),
    "empty tuple": (),
    "nested tuple": ((1, 2), ("a",)),
    "dict": {"norm": "filter", "seed": 0, "shape": (2, 3), "tags": ["a"], "none": None},
    "empty dict": {},
    "dict with non-str keys": {1: "a", (1, 2): "b"},
    "dict shaped like a tag": {"__tuple__": [1]},
    "array float64": np.linspace(0, 1, 5),
    "array float32 2d": np.arange(6, dtype=np.float32).reshape(2, 3),
    "array int16": np.arange(4, dtype=np.int16),
    "array bool": np.array([True, False]),
    "array complex": np.array([1 + 2j]),
    "array 0-d": np.array(3.5),
    "array empty": np.zeros((0, 3)),
    "array of str": np.array(["a", "bc"]),
    "dict of arrays": {"w": np.arange(3.0), "n": np.int64(4)},
}


def _python(value):
    """What a value comes back as: numpy scalars as the equal Python number."""
    return value.item() if isinstance(value, np.generic) else value


@pytest.mark.parametrize("name", ATTR_VALUES)
def test_every_attr_kind_reads_back_as_written(tmp_path, name):
    value = ATTR_VALUES[name]
    storage.write_group(tmp_path / "r.h5", "g", arrays={}, attrs={"v": value})
    _, attrs = storage.read_group(tmp_path / "r.h5", "g")
    back, want = attrs["v"], _python(value)
    assert type(back) is type(want), (type(back), type(want))
    assert values_equal(back, want), (back, want)
    if isinstance(want, np.ndarray):
        assert back.dtype == want.dtype and back.shape == want.shape


def test_decoding_is_the_inverse_of_encoding_in_memory_too():
    for value in ATTR_VALUES.values():
        assert values_equal(storage.decode_attr(storage.encode_attr(value)), _python(value))


def test_plain_json_text_of_version_0_1_is_read_as_the_value():
    assert storage.decode_attr('["loss", "accuracy"]') == ["loss", "accuracy"]
    assert storage.decode_attr("null") is None
    assert storage.decode_attr('{"norm": "filter", "seed": 0}') == {"norm": "filter", "seed": 0}
    assert storage.decode_attr("[not json") == "[not json"
    assert storage.decode_attr(b"bytes") == "bytes"


# ---------------------------------------------------------------- results read back equal
def small_model():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()
    data = (torch.randn(20, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (20,)))
    return model, data


def surface_plane_computed_into_a_file(tmp_path):
    model, data = small_model()
    dirs = random_directions(model, seed=1, orthogonalize=True)
    path = tmp_path / "s.h5"
    attrs = {"tags": ["a", "b"], "note": None, "shape": (2, 3)}
    computed = compute_surface(model, data, dirs, [-1, 0, 1], [0, 0.5], path=path, attrs=attrs,
                               progress=False)  # fmt: skip
    return computed, load_surface(path)


def surface_line_saved_after_computing(tmp_path):
    model, data = small_model()
    dirs = random_directions(model, num=1, dir_type="states", ignore="none")
    computed = compute_surface(model, data, dirs, [-0.5, 0, 0.5], progress=False)
    save_surface(computed, tmp_path / "s.h5", directions=dirs)
    return computed, load_surface(tmp_path / "s.h5")


def directions_plane(tmp_path):
    model, _ = small_model()
    dirs = random_directions(model, seed=3, dir_type="states", ignore="none")
    save_directions(dirs, tmp_path / "d.h5")
    return dirs, load_directions(tmp_path / "d.h5")


def directions_stored_with_a_surface(tmp_path):
    model, data = small_model()
    dirs = random_directions(model, num=1, norm="layer", seed=4)
    compute_surface(model, data, dirs, [0, 1], path=tmp_path / "s.h5", progress=False)
    return dirs, load_directions(tmp_path / "s.h5")


# One entry per way of writing a surface or directions: make(tmp_path) -> (computed, loaded).
ROUND_TRIPS = [
    surface_plane_computed_into_a_file,
    surface_line_saved_after_computing,
    directions_plane,
    directions_stored_with_a_surface,
]


@pytest.mark.parametrize("make", ROUND_TRIPS, ids=lambda f: f.__name__)
def test_every_way_of_writing_reads_back_equal(tmp_path, make):
    computed, loaded = make(tmp_path)
    assert type(loaded) is type(computed)
    assert loaded == computed
    assert not (loaded != computed)


def test_a_saved_tracking_run_is_continued_by_a_tracker(tmp_path):
    from landscape.tracking import Tracker, load_tracking

    model, data = small_model()
    first = Tracker(data, measures=["loss", "slice"], slice_x=[-0.5, 0.5])
    first.log(model, 0)
    path = tmp_path / "t.h5"
    landscape.save(first.run, path)
    with pytest.raises(ValueError, match="already has /tracking"):
        landscape.save(first.run, path)
    again = Tracker(data, path=path, measures=["loss", "slice"], slice_x=[-0.5, 0.5])
    again.log(model, 0)  # recorded already: skipped
    again.log(model, 1)
    run = load_tracking(path)
    assert run.steps.tolist() == [0, 1] and run.values["slice"].shape == (2, 2)
    assert np.array_equal(run.values["loss"], [first.run.values["loss"][0]] * 2)


def test_the_directions_schema_is_still_importable_from_storage_surface(tmp_path):
    from landscape.storage import directions, surface

    assert surface.read_directions is directions.read_directions
    assert surface.same_attr is storage.same_attr is storage.codec.same_attr


def test_loaded_surface_attrs_are_the_values_written(tmp_path):
    computed, loaded = surface_plane_computed_into_a_file(tmp_path)
    assert loaded.attrs["metrics"] == ["loss", "accuracy"]
    assert loaded.attrs["direction_settings"]["orthogonalize"] is True
    assert loaded.attrs["shape"] == (2, 3) and loaded.attrs["note"] is None
    assert list(loaded.metrics) == ["loss", "accuracy"]
    assert loaded.provenance["format"] == "landscape.surface"
    assert loaded.provenance["format_version"] == storage.FORMAT_VERSION
    changed = type(loaded)(loaded.x, loaded.y, {**loaded.metrics, "loss": loaded["loss"] + 1},
                           attrs=loaded.attrs)  # fmt: skip
    assert changed != computed


# ---------------------------------------------------------------- bad files
def _surface(path):
    model, data = small_model()
    compute_surface(model, data, random_directions(model), [0, 1], [0, 1], path=path,
                    progress=False)  # fmt: skip


def _edit(path, change):
    _surface(path)
    with h5py.File(path, "a") as f:
        change(f)


def _truncated(path):
    _surface(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 3])


def _replace(name, data):
    def change(f):
        del f[name]
        f[name] = data

    return change


def _results_file(path):
    storage.write_group(path, "g", arrays={"a": np.zeros(2)}, attrs={})


BAD_FILES = {
    "missing": (lambda p: None, FileNotFoundError, "no such file"),
    "directory": (lambda p: p.mkdir(), ValueError, "is a directory"),
    "empty": (lambda p: p.write_bytes(b""), ValueError, "is an empty file"),
    "text": (lambda p: p.write_text("x,y\n1,2\n"), ValueError, "not a readable HDF5 file"),
    "truncated": (_truncated, ValueError, "is a truncated HDF5 file"),
    "foreign HDF5": (
        lambda p: h5py.File(p, "w").close(),
        ValueError,
        "not a landscape file",
    ),
    "newer format_version": (
        lambda p: _edit(p, lambda f: f.attrs.__setitem__("format_version", 99)),
        ValueError,
        "format_version 99, newer",
    ),
    "no format_version": (
        lambda p: _edit(p, lambda f: f.attrs.__delitem__("format_version")),
        ValueError,
        "no integer format_version",
    ),
    "not a surface": (_results_file, ValueError, "not a surface"),
    "computed missing": (
        lambda p: _edit(p, lambda f: f.__delitem__("computed")),
        ValueError,
        "/computed is missing",
    ),
    "computed of another shape": (
        lambda p: _edit(p, _replace("computed", np.zeros(3, bool))),
        ValueError,
        r"/computed should be bool of shape \(2, 2\)",
    ),
    "metric of another shape": (
        lambda p: _edit(p, _replace("metrics/loss", np.zeros((2, 3)))),
        ValueError,
        r"metric 'loss' should be float of shape \(2, 2\)",
    ),
    "metric of another dtype": (
        lambda p: _edit(
            p, _replace("metrics/accuracy", np.array([["a", "b"], ["c", "d"]], dtype="S1"))
        ),
        ValueError,
        "metric 'accuracy' should be float",
    ),  # fmt: skip
    "coordinates not 1D": (
        lambda p: _edit(p, _replace("coords/y", np.zeros((2, 1)))),
        ValueError,
        "coords/y is not a 1D float array",
    ),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_files_are_refused_naming_the_problem(tmp_path, kind):
    make, error, message = BAD_FILES[kind]
    path = tmp_path / "bad.h5"
    make(path)
    with pytest.raises(error, match=message):
        load_surface(path)


def test_missing_groups_and_taken_groups_are_named(tmp_path):
    path = tmp_path / "r.h5"
    storage.write_group(path, "hessian/eigen", arrays={"v": np.ones(2)}, attrs={"k": 1})
    with pytest.raises(KeyError, match="no group /sharpness"):
        storage.read_group(path, "sharpness")
    with pytest.raises(ValueError, match="already has /hessian/eigen"):
        storage.write_group(path, "hessian/eigen", arrays={}, attrs={})
    with pytest.raises(KeyError, match="holds no directions"):
        load_directions(path)
    save_directions(random_directions(nn.Linear(2, 2), num=1), path)
    with pytest.raises(ValueError, match="already holds directions"):
        save_directions(random_directions(nn.Linear(2, 2), num=1), path)


def test_a_resume_names_each_setting_that_differs(tmp_path):
    path = tmp_path / "s.h5"
    _surface(path)
    x, y, _, attrs, _ = storage.load_surface_arrays(path)
    names = tuple(attrs["metrics"])
    storage.check_surface_file(path, x=x, y=y, names=names, attrs=attrs)  # the same run
    cases = {
        "seed: file has 0, run has 1": dict(attrs={**attrs, "seed": 1}),
        "metrics: file has": dict(attrs={**attrs, "metrics": ["loss"]}),
        "new_setting: file has none": dict(attrs={**attrs, "new_setting": 3}),
        "grid x": dict(x=np.array([0.0, 2.0])),
        "grid y": dict(y=None),
        r"metrics missing from the file: \['convexity'\]": dict(names=(*names, "convexity")),
    }
    for message, change in cases.items():
        args = {**dict(x=x, y=y, names=names, attrs=attrs), **change}
        with pytest.raises(ValueError, match=message):
            storage.check_surface_file(path, **args)


def test_a_failed_creation_leaves_no_file(tmp_path):
    path = tmp_path / "new.h5"
    with pytest.raises(RuntimeError, match="stop"):
        with storage.create_file(path):
            raise RuntimeError("stop")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- version 0.1 files
def _fixture():
    spec = importlib.util.spec_from_file_location("make_v0_1", f"{DATA}/make_surface_v0_1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_file_written_by_version_0_1_still_loads():
    fixture = _fixture()
    path = f"{DATA}/surface_v0_1.h5"
    loaded = load_surface(path)
    assert loaded.provenance["landscape_version"] == "0.1.0"
    assert loaded.attrs["metrics"] == ["loss", "accuracy"]
    assert loaded.attrs["tags"] == ["a", "b"] and loaded.attrs["note"] is None
    assert np.array_equal(loaded.attrs["sizes"], [1, 2])
    assert loaded.attrs["direction_settings"] == {"norm": "filter", "ignore": "biasbn",
                                                  "dir_type": "weights", "seed": 0,
                                                  "orthogonalize": True}  # fmt: skip
    assert loaded.attrs["num_computed"] == loaded.attrs["num_points"] == 6

    model, data = fixture.model_and_data()
    dirs = load_directions(path)
    again = random_directions(model, seed=0, orthogonalize=True)
    assert dirs.kind == "random" and dirs.settings["seed"] == 0
    assert all(torch.equal(dirs.x[n], again.x[n]) for n in again.x)
    assert all(torch.equal(dirs.y[n], again.y[n]) for n in again.y)
    assert dirs.settings["cosine"] == pytest.approx(again.cosine, rel=1e-12)
    now = compute_surface(model, data, dirs, fixture.X, fixture.Y, progress=False)
    for name in ("loss", "accuracy"):
        np.testing.assert_allclose(now[name], loaded[name], rtol=1e-12, atol=0)
    summary = storage.describe_file(path)
    assert "grid: 3 x 2 points, 6 of 6 computed" in summary
    assert re.search(r"tags +\['a', 'b'\]", summary)


def test_a_partial_version_0_1_file_resumes(tmp_path):
    fixture = _fixture()
    path = tmp_path / "s.h5"
    shutil.copy(f"{DATA}/surface_v0_1.h5", path)
    full = load_surface(path)
    with h5py.File(path, "a") as f:  # as a 0.1 run killed after four points leaves it
        f["computed"][2, :] = False
        for name in ("loss", "accuracy"):
            f["metrics"][name][2, :] = np.nan
    model, data = fixture.model_and_data()
    resumed = compute_surface(model, data, load_directions(path), fixture.X, fixture.Y,
                              path=path, attrs=fixture.ATTRS, progress=False)  # fmt: skip
    for name in ("loss", "accuracy"):
        np.testing.assert_allclose(resumed[name], full[name], rtol=1e-12, atol=0)
