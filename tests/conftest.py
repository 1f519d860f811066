"""Shared fixtures of the tests. References and builders are plain functions in ``_shared.py``.

Nothing is computed at import; matplotlib is imported only by the tests that draw.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def figures_closed_rc_unchanged():
    """Close every figure after the test and check it left matplotlib's rcParams as it found
    them. Plotting modules use it for each test: ``pytestmark = pytest.mark.usefixtures(...)``."""
    from _plotting_helpers import close_figures_and_check_rc

    yield from close_figures_and_check_rc()


@pytest.fixture
def ax(figures_closed_rc_unchanged):
    """A fresh matplotlib axes, closed after the test."""
    import matplotlib.pyplot as plt

    return plt.figure().add_subplot()
