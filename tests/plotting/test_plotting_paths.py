"""Tests of landscape.plotting.paths: inspect the artists (data, labels), never images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _plotting_helpers import surface2d

from landscape.directions import Directions
from landscape.paths import PathResult, _plane_xy
from landscape.plotting import (
    plot_path_plane,
    plot_paths,
    plot_projection_error,
    plot_trajectory,
)
from landscape.trajectory import Trajectory

pytestmark = pytest.mark.usefixtures("figures_closed_rc_unchanged")


def _paths():
    t = np.linspace(0, 1, 9)
    coords = np.array([[0.0, 0.0], [1.5, 0.0], [0.7, 0.4]])
    line = PathResult("line", t, {"loss": 1 + 4 * t * (1 - t)}, 1.0, 0.5,
                      {"xy": _plane_xy("line", coords, t), "plane_coords": coords})  # fmt: skip
    curve = PathResult("bezier", t, {"loss": 1 + 0.1 * t * (1 - t)}, 0.025, 0.5,
                       {"xy": _plane_xy("bezier", coords, t), "plane_coords": coords})  # fmt: skip
    return {"line": line, "bezier": curve}


def test_plot_paths_draws_each_path_and_its_barrier(ax):
    paths = _paths()
    plot_paths(paths, ax=ax)
    drawn = [line for line in ax.lines if not line.get_label().startswith("_")]
    assert [line.get_label() for line in drawn] == ["line (barrier 1)", "bezier (barrier 0.025)"]
    np.testing.assert_array_equal(drawn[0].get_ydata(), paths["line"].loss)
    barrier_marks = [line for line in ax.lines if line.get_label() == "_barrier"]
    assert [m.get_xdata()[0] for m in barrier_marks] == [0.5, 0.5]
    with pytest.raises(ValueError, match="no 'accuracy'"):
        plot_paths(paths, "accuracy", ax=ax)


def test_plot_path_plane_puts_the_curve_through_its_points(ax):
    paths = _paths()
    surface = surface2d()
    plot_path_plane(surface, paths, ax=ax)
    curve = next(line for line in ax.lines if line.get_label() == "bezier")
    xy = np.column_stack([curve.get_xdata(), curve.get_ydata()])
    np.testing.assert_allclose(xy[0], [0.0, 0.0])
    np.testing.assert_allclose(xy[-1], [1.5, 0.0])
    np.testing.assert_allclose(
        xy[4], 0.25 * 0 + 0.5 * np.array([0.7, 0.4]) + 0.25 * np.array([1.5, 0])
    )
    assert [t.get_text() for t in ax.texts] == ["a", "b", "bend"]


def _trajectory(with_surface: bool) -> Trajectory:
    coords = np.array([[1.5, 0.4], [0.8, 0.2], [0.3, -0.1], [0.0, 0.0]])
    return Trajectory(
        directions=Directions({"w": torch.ones(1)}, {"w": torch.ones(1)}, kind="pca"),
        explained_variance=np.array([0.8, 0.15]),
        coords=coords,
        steps=np.array([0.0, 10.0, 20.0, 30.0]),
        true={"loss": np.array([2.0, 1.0, 0.5, 0.2])},
        projected={"loss": np.array([2.5, 1.2, 0.6, 0.2])},
        surface=surface2d() if with_surface else None,
    )


def test_plot_trajectory_labels_steps_and_variance(ax):
    trajectory = _trajectory(with_surface=True)
    plot_trajectory(trajectory, ax=ax)
    path = next(line for line in ax.lines if line.get_label() == "trajectory")
    np.testing.assert_array_equal(path.get_xdata(), trajectory.coords[:, 0])
    assert [t.get_text() for t in ax.texts] == ["0", "10", "20", "30"]
    assert ax.get_xlabel() == "PC1 (80.0% of the variance)"
    assert ax.get_ylabel() == "PC2 (15.0% of the variance)"
    assert len(ax.collections) >= 1  # the contour


def test_plot_projection_error_shows_true_and_projected(ax):
    trajectory = _trajectory(with_surface=False)
    plot_projection_error(trajectory, ax=ax)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), trajectory.true["loss"])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), trajectory.projected["loss"])
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), trajectory.steps)
