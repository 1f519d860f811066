"""Thick-restart Lanczos with its basis in host memory (issue 21, item 2): the rows live in
(pinned) host memory and are streamed to the device for each product with the basis, so
the device holds a few vectors and the verification. The same pairs as the basis on the
device, bit for bit; the planner takes it where the device is short and the host is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.hessian.planner import plan_job
from landscape.linalg import dense_operator, eigenpairs_bound, host_basis_bytes, lanczos_eigenpairs


def matrix(n: int, dtype: torch.dtype) -> torch.Tensor:
    """A symmetric matrix with a close pair at the top (2% apart) over a bulk."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    values = torch.cat([torch.tensor([10.0, 9.8, 7.0, 5.0]), torch.rand(n - 4, generator=g)])
    return ((q * values) @ q.T).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_host_basis_gives_the_same_pairs_bit_for_bit(dtype):
    op = dense_operator(matrix(120, dtype))
    device = lanczos_eigenpairs(op, 3, seed=1)
    host = lanczos_eigenpairs(op, 3, seed=1, host_basis=True)
    assert host.converged and host.num_matvecs == device.num_matvecs
    np.testing.assert_array_equal(host.values, device.values)
    torch.testing.assert_close(host.vectors, device.vectors, rtol=0, atol=0)
    # 3k + 5 = 14 rows; a float32 run's float64 refinement: max(2k + 2, 14 // 2) = 8 rows
    per_entry = 14 * 8 if dtype == torch.float64 else max(14 * 4, 8 * 8)
    assert host.settings["host_basis_bytes"] == per_entry * 120
    assert host_basis_bytes(120, 3, 8 if dtype == torch.float64 else 4) == per_entry * 120
    assert "host_basis_bytes" not in device.settings
    assert host.memory_bound_bytes < device.memory_bound_bytes


def test_the_planner_takes_the_host_basis_where_only_the_host_has_room():
    n, k = 10**7, 5
    device = eigenpairs_bound(n, k, 4)
    host = eigenpairs_bound(n, k, 4, host_basis=True)
    assert host < device
    cap = (host + device) // 2
    roomy = plan_job("eigenpairs", n, 4, max_memory=cap, k=k, max_hvps=500,
                     host_memory=2 * host_basis_bytes(n, k, 4))  # fmt: skip
    assert roomy.choice == "host-basis" and roomy.bound_bytes == host
    no_host = plan_job("eigenpairs", n, 4, max_memory=cap, k=k, max_hvps=500)
    assert no_host.choice == "two-pass"  # a CPU device: no separate host memory


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_host_basis_holds_less_on_the_gpu():  # unmeasured until a GPU is lent
    n = 2_000_000
    diagonal = torch.linspace(0, 1, n, device="cuda")

    class Diagonal:
        size, dtype, device = n, torch.float32, torch.device("cuda")

        def matvec(self, x):
            return diagonal * x

    peaks = {}
    for host in (False, True):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        found = lanczos_eigenpairs(Diagonal(), 3, tol=1e-3, host_basis=host)
        peaks[host] = torch.cuda.max_memory_allocated() - before
        assert found.converged
    assert peaks[True] < 0.5 * peaks[False]
