"""Shared fixtures of the tests. References and builders are plain functions in ``_shared.py``.

Nothing is computed at import; matplotlib is imported only by the tests that draw.
"""

from __future__ import annotations

import importlib.util

import pytest

#: What a doctest that needs the ``demo`` extra (scikit-learn's digits) calls.
DEMO_DATA_CALLS = ("digits_data", "BUILTIN_DATA", "run_demo")


def _needs_demo_data(item: pytest.Item) -> bool:
    if item.get_closest_marker("demo") is not None:
        return True
    test = getattr(item, "dtest", None)  # a doctest: does it load the digits?
    return test is not None and any(
        name in example.source for example in test.examples for name in DEMO_DATA_CALLS
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``demo`` (and doctests loading the digits) skip without scikit-learn."""
    if importlib.util.find_spec("sklearn") is not None:
        return
    skip = pytest.mark.skip(reason="needs scikit-learn: pip install 'landscape[demo]'")
    for item in items:
        if _needs_demo_data(item):
            item.add_marker(skip)


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
