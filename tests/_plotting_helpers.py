"""Shared helpers of the plotting tests: grids, surfaces, fixtures (rcParams checked after each).

Every plotting test module runs :func:`close_figures_and_check_rc` around each test (the
``figures_closed_rc_unchanged`` fixture of conftest): a test closes its figures and must leave
matplotlib's rcParams as it found them.
"""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from landscape.surface import Surface

mpl.use("Agg")  # no display in tests; figures are inspected, never shown


# A non-square grid and a function that is not symmetric in (x, y): a transposed array either
# fails on shapes or puts the lines in the wrong place. Read-only: constants shared by tests.
X = np.linspace(-1.0, 2.0, 7)
Y = np.linspace(-0.5, 0.5, 4)
X.flags.writeable = Y.flags.writeable = False


def asym(x, y):
    return x[:, None] + 10.0 * y[None, :]  # [i, j] = f(x[i], y[j])


def surface2d(z=None, **attrs) -> Surface:
    z = asym(X, Y) if z is None else z
    return Surface(x=X, y=Y, metrics={"loss": z}, attrs=attrs)


def bowl() -> np.ndarray:
    return 0.1 + X[:, None] ** 2 + 3.0 * Y[None, :] ** 2


def rc_snapshot() -> dict:
    return {k: v for k, v in mpl.rcParams.items() if k != "backend"}


def close_figures_and_check_rc() -> Iterator[None]:
    """Body of each plotting test module's autouse fixture: close every figure after the test,
    and check the test leaked no rcParams change."""
    before = rc_snapshot()
    yield
    plt.close("all")
    assert rc_snapshot() == before


def center_markers(ax):
    return [
        line
        for line in ax.lines
        if line.get_marker() == "*" and np.allclose(line.get_xydata(), [[0.0, 0.0]])
    ]


def bar_container(ax):
    return next(c for c in ax.containers if isinstance(c, mpl.container.BarContainer))


def nasty() -> np.ndarray:
    z = bowl().copy()
    z[0, 0] = np.nan
    z[1, 2] = np.inf
    z[3, 1] = -np.inf
    z[6, 3] = np.nan
    return z
