"""Shared fixtures of the tests. References and builders are plain functions in ``_shared.py``.

Nothing is computed at import; matplotlib is imported only by the tests that draw. Under
pytest-xdist (``make test`` runs ``-n auto``) each worker gets its share of the cores, for
torch and for the interpreters the tests start, and the slow tests are dealt first so that
none of them is left running alone at the end.
"""

from __future__ import annotations

import os

import pytest
from _shared import NO_DEMO_EXTRA, has_demo_extra, loads_digits


def _needs_demo_extra(item: pytest.Item) -> bool:
    if item.get_closest_marker("demo") is not None:
        return True
    test = getattr(item, "dtest", None)  # a doctest: does it load the digits?
    return test is not None and any(loads_digits(example.source) for example in test.examples)


def pytest_configure(config: pytest.Config) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the interpreters that tests start
        torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests first (a stable sort); tests marked ``demo`` and doctests that load
    the digits skip without scikit-learn."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    if has_demo_extra():
        return
    skip = pytest.mark.skip(reason=NO_DEMO_EXTRA)
    for item in items:
        if _needs_demo_extra(item):
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


def _torch_on_one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Torch on one thread for a test: tiny matrices (one thread is fastest, and two loaded
    cores are slowest), or a reference run with the torchrun ranks' thread count, so that
    float32 kernels match bit for bit."""
    yield from _torch_on_one_thread()


@pytest.fixture(scope="module")
def one_thread_per_module():
    """:func:`one_thread` for a whole module: ``pytestmark = pytest.mark.usefixtures(...)``."""
    yield from _torch_on_one_thread()


@pytest.fixture(scope="session")
def zygote():
    """One interpreter with torch, scipy, matplotlib and the library imported, that forks a
    fresh-looking interpreter per script (the examples, the README blocks): see ``_zygote``."""
    from _zygote import shared_zygote

    return shared_zygote()


@pytest.fixture
def small_pieces(monkeypatch):
    """Dot products cast pieces of 100 entries to float64, so that a float64 copy of a whole
    vector would show; products with the basis gather 8 KiB at a time, as they gather 16 MiB
    of a large model's vectors."""
    from landscape.linalg import _krylov, operators

    monkeypatch.setattr(operators, "_PIECE", 100)
    monkeypatch.setattr(_krylov, "_PIECE_BYTES", 2**13)  # gathers stay below n entries


@pytest.fixture
def float64_norms(monkeypatch):
    """Hugging Face's ``LlamaRMSNorm`` in the input's dtype (it takes its mean square in
    float32 whatever the model's dtype), so that float64 Llamas agree to 1e-10."""
    import torch

    modeling_llama = pytest.importorskip("transformers.models.llama.modeling_llama")

    def rms_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)
                                             + self.variance_epsilon)  # fmt: skip

    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", rms_norm)
