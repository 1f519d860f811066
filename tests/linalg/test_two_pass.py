"""Two-pass Lanczos (issue 21, item 2): the eigenpairs of the full-basis solver in ``k + 4``
vectors, clusters and repeated eigenvalues included, every pair verified in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_linalg import CLUSTER64, REPEATED, check_pairs, expected, rotated

from landscape.linalg import (
    MatvecOperator,
    dense_operator,
    lanczos_eigenpairs,
    two_pass_bound,
    two_pass_eigenpairs,
)

f64 = torch.float64


def full_basis(matrix: torch.Tensor, k: int, which: str, seed: int):
    """The reference: Lanczos with full reorthogonalization in a basis that never restarts."""
    return lanczos_eigenpairs(
        dense_operator(matrix), k, which=which, seed=seed, max_basis=len(matrix)
    )


@pytest.mark.parametrize("spectrum", [CLUSTER64, REPEATED], ids=["cluster", "repeated"])
@pytest.mark.parametrize("which,k", [("LA", 3), ("SA", 3), ("LM", 5), ("LM", 6), ("BE", 4)])
def test_two_pass_matches_the_full_basis_solver_on_clusters_and_copies(spectrum, which, k):
    """Pass 1 keeps no basis, so a converged eigenvalue comes back as ghost copies, and a
    single start vector sees one copy of a repeated eigenvalue: both must be handled."""
    for seed in range(2):
        matrix = rotated(spectrum, seed)
        result = two_pass_eigenpairs(dense_operator(matrix), k, which=which, seed=seed)
        reference = full_basis(matrix, k, which, seed)
        assert result.converged and reference.converged, seed
        np.testing.assert_allclose(result.values, reference.values, rtol=0, atol=1e-8)
        if which != "BE":
            want = np.sort(expected(spectrum, k, which))
            np.testing.assert_allclose(np.sort(result.values), want, rtol=0, atol=1e-8)
        check_pairs(matrix, result, 1e-8)
        assert result.settings["strategy"] == "two-pass" and result.settings["pass2_drift"] == 0


@pytest.mark.parametrize("which", ["LA", "SA", "LM", "BE"])
def test_two_pass_on_random_matrices_matches_eigh(which):
    g = torch.Generator().manual_seed(1)
    for seed in range(2):
        a = torch.randn(80, 80, generator=g, dtype=f64)
        matrix = (a + a.T) / 2
        eig = np.linalg.eigvalsh(matrix.numpy())
        result = two_pass_eigenpairs(dense_operator(matrix), 4, which=which, seed=seed)
        assert result.converged
        np.testing.assert_allclose(result.values, full_basis(matrix, 4, which, seed).values,
                                   rtol=0, atol=1e-8 * np.abs(eig).max())  # fmt: skip
        check_pairs(matrix, result, 1e-8)


def test_ghosts_appear_on_a_long_run_and_are_not_returned():
    """A well-separated top eigenvalue over a wide spectrum: pass 1 runs long enough for
    ghost copies of it, which must not come back as a second eigenvalue."""
    spectrum = [100.0, *np.linspace(0, 1, 300)]
    matrix = rotated(spectrum, 3)
    result = two_pass_eigenpairs(dense_operator(matrix), 2, which="LA", tol=1e-10)
    assert result.converged
    np.testing.assert_allclose(result.values, [100.0, 1.0], atol=1e-8)
    check_pairs(matrix, result, 1e-10)


def test_exhausted_space_float32_budget_and_bad_options():
    matrix = torch.diag(torch.tensor([4.0, 4.0, 1.0, 1.0, 1.0, 0.0], dtype=f64))
    result = two_pass_eigenpairs(dense_operator(matrix), 5, which="LA")
    assert result.converged
    np.testing.assert_allclose(result.values, [4, 4, 1, 1, 1], atol=1e-12)
    single = dense_operator(rotated([3.0, 1.0, 0.5, -1.0], 1), dtype=torch.float32)
    low = two_pass_eigenpairs(single, 1)
    assert low.converged and low.settings["verify_dtype"] == "float64"
    assert low.values[0] == pytest.approx(3.0, abs=1e-4) and low.num_matvecs64 == 1
    slow = dense_operator(rotated([1 / (i + 1) for i in range(200)], 3))
    short = two_pass_eigenpairs(slow, 5, which="SA", max_matvecs=20)
    assert not short.converged and short.num_matvecs <= 20
    nan = two_pass_eigenpairs(MatvecOperator(lambda x: x * math.nan, 5), 2)
    assert np.isnan(nan.values).all() and not nan.converged
    assert two_pass_bound(1000, 5, 4) == 1000 * 5 * (4 + 8)  # the verification's copies
    with pytest.raises(ValueError, match="k must be"):
        two_pass_eigenpairs(dense_operator(torch.eye(3, dtype=f64)), 4)
    with pytest.raises(ValueError, match="max_matvecs"):
        two_pass_eigenpairs(dense_operator(torch.eye(3, dtype=f64)), 2, max_matvecs=7)
    with pytest.raises(ValueError, match="which"):
        two_pass_eigenpairs(dense_operator(torch.eye(3, dtype=f64)), 1, which="XX")
