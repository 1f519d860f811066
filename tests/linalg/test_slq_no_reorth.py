"""Stochastic Lanczos quadrature without reorthogonalization (issue 21, item 2): three
vectors a probe, ghost copies counted, and the density of the reference within reach."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from landscape.linalg import MatvecOperator, lanczos_quadrature, quadrature_bound

f64 = torch.float64
N = 2000


def hessian_like(n: int = N, seed: int = 0) -> tuple[MatvecOperator, np.ndarray]:
    """``Q diag(d) Q^T`` with ``Q`` three random Householder reflections: a bulk of small
    eigenvalues near zero (some negative) and five outliers, as a trained network's
    Hessian has."""
    g = torch.Generator().manual_seed(seed)
    d = 0.02 * torch.randn(n, generator=g, dtype=f64) ** 3
    d[:5] = torch.tensor([40.0, 25.0, 12.0, 6.0, -3.0], dtype=f64)
    u = torch.randn(3, n, generator=g, dtype=f64)
    u /= u.norm(dim=1, keepdim=True)

    def reflect(x: torch.Tensor, order) -> torch.Tensor:
        for i in order:
            x = x - 2 * u[i] * (u[i] @ x)
        return x

    def matvec(x: torch.Tensor) -> torch.Tensor:
        return reflect(d * reflect(x, (2, 1, 0)), (0, 1, 2))

    return MatvecOperator(matvec, n), d.numpy()


def test_no_reorth_density_is_within_w1_of_the_reference_and_moments_cover():
    op, eigenvalues = hessian_like()
    probes, steps = 10, 80
    reference = lanczos_quadrature(op, num_probes=probes, num_steps=steps, seed=1)
    plain = lanczos_quadrature(
        op, num_probes=probes, num_steps=steps, seed=1, reorthogonalize=False
    )
    assert plain.finite and plain.settings["reorthogonalize"] is False
    assert reference.num_ghosts == 0 and plain.num_ghosts > 0  # ghosts appeared, and stay
    np.testing.assert_allclose(plain.weights.sum(1), 1, atol=1e-12)
    width = eigenvalues.max() - eigenvalues.min()

    def mixture(rule):
        found = ~np.isnan(rule.nodes)
        return rule.nodes[found], rule.weights[found]

    (ref_nodes, ref_weights), (nodes, weights) = mixture(reference), mixture(plain)
    w1 = scipy.stats.wasserstein_distance(ref_nodes, nodes, ref_weights, weights)
    assert w1 <= 0.02 * width, w1 / width
    for j in range(1, 7):
        per_probe = np.nansum(plain.weights * np.nan_to_num(plain.nodes) ** j, axis=1)
        exact = np.mean(eigenvalues**j)
        stderr = per_probe.std(ddof=1) / np.sqrt(probes)
        assert abs(per_probe.mean() - exact) <= 3 * stderr, (j, per_probe.mean(), exact, stderr)
        # and each probe's rule integrates t^j exactly as the reference's does (2m - 1 >= j)
        ref = np.nansum(reference.weights * np.nan_to_num(reference.nodes) ** j, axis=1)
        np.testing.assert_allclose(per_probe, ref, rtol=1e-8, atol=1e-12 * width**j)


def test_quadrature_moments_equal_each_probe_quadratic_form():
    """The rule of probe ``z`` integrates ``t^j`` to ``z^T A^j z / n``: ghosts included."""
    op, _ = hessian_like(500, seed=3)
    rule = lanczos_quadrature(op, num_probes=2, num_steps=40, seed=5, reorthogonalize=False)
    assert rule.num_ghosts > 0
    g = torch.Generator().manual_seed(5)
    for p in range(2):
        z = torch.randint(0, 2, (500,), generator=g, dtype=f64) * 2 - 1
        power = z.clone()
        for j in range(1, 20):
            power = op.matvec(power)
            want = float(z @ power) / 500
            got = float(np.nansum(rule.weights[p] * np.nan_to_num(rule.nodes[p]) ** j))
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12 * 40**j), j


def test_no_reorth_quadrature_is_exact_on_a_small_space_and_states_three_vectors():
    matrix = torch.diag(torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0, 3.0], dtype=f64))
    op = MatvecOperator(lambda x: matrix @ x, 6)
    rule = lanczos_quadrature(op, num_probes=2, num_steps=6, reorthogonalize=False)
    assert np.isnan(rule.nodes[:, 3:]).all() and (rule.weights[:, 3:] == 0).all()
    np.testing.assert_allclose(rule.nodes[:, :3], [[1, 2, 3]] * 2, atol=1e-12)
    assert rule.memory_bound_bytes == quadrature_bound(6, 6, 8, reorthogonalize=False) == 144
    nan = MatvecOperator(lambda x: x * float("nan"), 5)
    assert not lanczos_quadrature(nan, num_probes=2, num_steps=3, reorthogonalize=False).finite
