"""Tests of landscape.plotting.spectra: inspect the artists (data, labels, limits), never images."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from _plotting_helpers import bar_container

from landscape.plotting import plot_eigenvalues, plot_spectral_density

pytestmark = pytest.mark.usefixtures("figures_closed_rc_unchanged")


def test_spectral_density_clips_zeros_to_floor(ax):
    grid = np.linspace(-1, 5, 61)
    density = np.exp(-((grid - 1) ** 2))
    density[:10] = 0.0
    density[20] = -1e-9  # quadrature noise
    plot_spectral_density(grid, density, ax=ax, label="model")
    y = ax.lines[0].get_ydata()
    floor = 1e-8 * density.max()
    assert ax.get_yscale() == "log"
    assert np.all(y >= floor)
    np.testing.assert_allclose(y[:10], floor)
    np.testing.assert_allclose(y[30:], density[30:])
    assert ax.get_ylim()[0] == pytest.approx(floor)
    assert ax.get_xlabel() == "eigenvalue"


def test_spectral_density_checks(ax):
    with pytest.raises(ValueError, match="same length"):
        plot_spectral_density(np.arange(3), np.ones(4), ax=ax)
    with pytest.raises(ValueError, match="positive"):
        plot_spectral_density(np.arange(3), np.ones(3), ax=ax, floor=0.0)


def test_eigenvalues_bars_and_errors(ax):
    values = np.array([12.0, 5.0, -0.5])
    errors = np.array([0.5, np.nan, 0.1])
    plot_eigenvalues(values, ax=ax, errors=errors)
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, values)
    np.testing.assert_allclose([p.get_x() + p.get_width() / 2 for p in ax.patches], [1, 2, 3])
    segments = bar_container(ax).errorbar.lines[2][0].get_segments()  # vertical error bars
    half = [np.ptp(seg[:, 1]) / 2 for seg in segments if seg.size]
    np.testing.assert_allclose(half, [0.5, 0.1])
    with pytest.raises(ValueError, match="shape"):
        plot_eigenvalues(values, ax=ax, errors=[1.0])


def test_eigenvalues_log(ax):
    plot_eigenvalues([100.0, 10.0, 1.0], ax=ax, log=True)
    assert ax.get_yscale() == "log"
    _, ax2 = plt.subplots()
    plot_eigenvalues([100.0, -1.0], ax=ax2, log=True)
    assert ax2.get_yscale() == "symlog"
