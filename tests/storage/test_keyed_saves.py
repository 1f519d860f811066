"""A lone result of a collection kind (paths, sharpness) saves under its own key, in both
argument orders (result_and_path(..., keyed=...))."""

import numpy as np
import pytest

from landscape.paths import PathResult
from landscape.sharpness import SharpnessResult
from landscape.storage.paths import load_paths, save_paths
from landscape.storage.sharpness import load_sharpness, save_sharpness


def _line() -> PathResult:
    metrics = {"loss": np.array([1.0, 2.0])}
    return PathResult("line", np.array([0.0, 1.0]), metrics, 0.0, 0.0, {"bn_reestimate": False})


def test_one_path_saves_under_its_kind(tmp_path):
    line = _line()
    save_paths(line, tmp_path / "p.h5")
    with pytest.warns(DeprecationWarning, match="save_paths"):
        save_paths(tmp_path / "q.h5", line)
    assert load_paths(tmp_path / "p.h5") == load_paths(tmp_path / "q.h5") == {"line": line}


def test_one_sharpness_result_saves_under_its_name(tmp_path):
    result = SharpnessResult("rise", 0.5, 0.1, {"rho": 0.25, "seed": 0})
    with pytest.warns(DeprecationWarning, match="save_sharpness"):
        save_sharpness(tmp_path / "s.h5", result)
    assert load_sharpness(tmp_path / "s.h5") == {"rise": result}
