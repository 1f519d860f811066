"""Block curvature beyond the diagonal: off-block shares against the Frobenius norms of a
dense float64 Hessian (and their standard errors' coverage), per-block densities against
``tr(H_bb^j) / n_b``, and the Jensen-Shannon distances between them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _shared import dense_hessian, gaussian_data, gaussian_mlp
from matplotlib.figure import Figure
from torch import nn

from landscape import Objective
from landscape.hessian import DensityResult, block_curvature, load_hessian, save_hessian
from landscape.hessian.block_density import block_densities, js_distances
from landscape.hessian.block_offdiag import off_block_samples, off_block_share
from landscape.linalg import dense_operator
from landscape.plotting import plot_block_densities, plot_block_js_distance

BLOCKS = {"0": ["0.weight", "0.bias"], "2": ["2.weight", "2.bias"]}  # default_blocks of the MLP


def mlp_objective():
    return Objective(gaussian_mlp((3, 4, 2)), gaussian_data(12, 3, 2))


@pytest.fixture(scope="module")
def dense():
    """The MLP's dense float64 Hessian and each block's rows in it."""
    hessian, index = dense_hessian(gaussian_mlp((3, 4, 2)), gaussian_data(12, 3, 2))
    rows = {b: np.concatenate([index[n] for n in names]) for b, names in BLOCKS.items()}
    return hessian.numpy(), rows


def exact_shares(hessian, rows):
    """``||H_{-b,b}||_F / ||H_{:,b}||_F`` per block and ``||H - blockdiag H||_F / ||H||_F``."""
    shares, inside = {}, np.zeros(hessian.shape, dtype=bool)
    for block, r in rows.items():
        columns = hessian[:, r].copy()
        whole = np.linalg.norm(columns)
        columns[r] = 0
        shares[block] = np.linalg.norm(columns) / whole
        inside[np.ix_(r, r)] = True
    shares["whole"] = np.linalg.norm(np.where(inside, 0, hessian)) / np.linalg.norm(hessian)
    return shares


def estimates(samples):
    found = {b: off_block_share(s) for b, s in zip(BLOCKS, samples, strict=True)}
    found["whole"] = off_block_share(samples)
    return found


@pytest.fixture(scope="module")
def computed():
    """One run of both options on the MLP (its products are the costly part)."""
    return block_curvature(
        mlp_objective(), num_probes=4, progress=False, off_block=True, num_off_block_probes=20,
        densities=True, num_density_probes=10, num_lanczos_steps=2, num_grid=200,
    )  # fmt: skip


def test_off_block_share_with_many_probes_equals_the_frobenius_ratio(dense):
    hessian, rows = dense
    exact = exact_shares(hessian, rows)
    op = dense_operator(torch.from_numpy(hessian))
    index = [torch.from_numpy(r) for r in rows.values()]
    found = estimates(off_block_samples(op, index, num_probes=2000, seed=0))
    for key, (share, stderr) in found.items():
        assert 0 < stderr < 0.01 * share
        assert share == pytest.approx(exact[key], rel=0.03)
        assert abs(share - exact[key]) < 4 * stderr


def test_off_block_stderr_covers_in_about_95_percent_of_seeds(dense):
    hessian, rows = dense
    exact = exact_shares(hessian, rows)
    op = dense_operator(torch.from_numpy(hessian))
    index = [torch.from_numpy(r) for r in rows.values()]
    covered = []
    for seed in range(50):
        found = estimates(off_block_samples(op, index, num_probes=60, seed=seed))
        covered += [abs(s - exact[k]) <= 1.96 * e for k, (s, e) in found.items()]
    assert 0.88 <= np.mean(covered) <= 1.0  # 150 intervals; measured 0.94 over 300 seeds


@pytest.fixture(scope="module")
def plain():
    """The same without the options: the result of version 0.2."""
    return block_curvature(mlp_objective(), num_probes=4, progress=False)


def test_block_curvature_off_block_share_against_the_dense_hessian(dense, computed, plain):
    hessian, rows = dense
    exact = exact_shares(hessian, rows)
    assert list(computed.off_block_samples) == ["0", "2"]
    for block in BLOCKS:
        values = computed[block]
        assert computed.off_block_samples[block].shape == (20, 2)
        assert off_block_share(computed.off_block_samples[block]) == (
            values["off_block_share"], values["off_block_stderr"])  # fmt: skip
        assert abs(values["off_block_share"] - exact[block]) < 4 * values["off_block_stderr"]
    whole = computed.off_block
    assert abs(whole["share"] - exact["whole"]) < 4 * whole["stderr"]
    # eigen and trace (as without the options) + 20 probes a block + 10 x 2 steps a block
    assert computed.num_hvps == plain.num_hvps + 2 * 20 + 2 * 10 * 2
    assert plain.off_block_samples is None and plain.densities is None
    assert computed.settings["num_off_block_probes"] == 20
    assert "off-block share" in computed.table().splitlines()[0]


class ThreeHeads(nn.Module):
    """Three separate tanh heads side by side: a block-diagonal Hessian whose blocks ``a``
    and ``b`` are equal (same weights, same targets) and ``c`` is not."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a, self.b, self.c = (nn.Linear(3, 2).double() for _ in range(3))
        with torch.no_grad():
            for p, q, r in zip(self.a.parameters(), self.b.parameters(), self.c.parameters(),
                               strict=True):  # fmt: skip
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
                q.copy_(p)
                r.copy_(3 * torch.randn(p.shape, generator=g, dtype=torch.float64))

    def forward(self, x):
        return torch.cat([torch.tanh(self.a(x)), torch.tanh(self.b(x)), torch.tanh(self.c(x))], 1)


def direct_js(p, q):
    """The Jensen-Shannon distance in bits, from its definition."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x):
        keep = x > 0
        return np.sum(x[keep] * np.log2(x[keep] / m[keep]))

    return np.sqrt((kl(p) + kl(q)) / 2)


def test_block_diagonal_hessian_gives_share_zero_and_equal_blocks_js_zero():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 3, generator=g, dtype=torch.float64)
    y = torch.randn(10, 2, generator=g, dtype=torch.float64)
    objective = Objective(ThreeHeads(), (x, torch.cat([y, y, y], 1)), loss="mse")
    result = block_curvature(
        objective, num_probes=4, progress=False, off_block=True, num_off_block_probes=3,
        densities=True, num_density_probes=3, num_lanczos_steps=3, num_grid=100,
    )  # fmt: skip
    assert list(result.values) == ["a", "b", "c"]
    for block in "abc":
        assert result[block]["off_block_share"] == 0.0 and result[block]["off_block_stderr"] == 0
        assert (result.off_block_samples[block][:, 1] > 0).all()
    assert result.off_block == {"share": 0.0, "stderr": 0.0}
    js = result.js_distance
    assert js[0, 1] == 0.0 and js[1, 0] == 0.0  # equal blocks, equal probes
    assert np.array_equal(js, js.T) and np.all(np.diag(js) == 0)
    assert 0 < js[0, 2] <= 1 and 0 < js[1, 2] <= 1
    density = {b: d.density for b, d in result.densities.items()}
    assert js[0, 2] == pytest.approx(direct_js(density["a"], density["c"]), rel=1e-12)
    # a dense block-diagonal matrix gives exactly 0 as well
    matrix = torch.block_diag(torch.eye(2), 2 * torch.ones(3, 3)).double()
    samples = off_block_samples(dense_operator(matrix), [torch.arange(2), torch.arange(2, 5)])
    assert off_block_share(samples) == (0.0, 0.0)


def test_block_density_moments_equal_traces_of_powers(dense, computed):
    hessian, rows = dense
    grids = [d.grid for d in computed.densities.values()]
    assert all(np.array_equal(g, grids[0]) for g in grids)  # one grid for every block
    assert computed.js_distance.shape == (2, 2)
    for block, r in rows.items():
        h = hessian[np.ix_(r, r)]
        found = computed.densities[block]
        assert found.nodes.shape == (10, 2)
        assert np.trapezoid(found.density, found.grid) == pytest.approx(1, abs=1e-3)
        for j in (1, 2, 3):  # a 2-node Gauss rule is exact up to degree 3
            per_probe = np.sum(found.weights * found.nodes**j, axis=1)
            exact = np.trace(np.linalg.matrix_power(h, j)) / len(h)
            stderr = per_probe.std(ddof=1) / np.sqrt(len(per_probe))
            assert abs(per_probe.mean() - exact) < 4 * stderr


def test_js_distances_of_dense_blocks_are_a_bounded_symmetric_direct_computation():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    ops = {
        "a": dense_operator(a + a.T),
        "b": dense_operator(a + a.T),
        "c": dense_operator(torch.diag(torch.arange(1.0, 5.0, dtype=torch.float64))),
    }
    found = block_densities(ops, num_probes=4, num_lanczos_steps=6, num_grid=300)
    js = js_distances(found)
    assert js[0, 1] == 0 and np.array_equal(js, js.T) and (js >= 0).all() and (js <= 1).all()
    for i, j in ((0, 2), (1, 2)):
        p, q = (list(found.values())[k].density for k in (i, j))
        assert js[i, j] == pytest.approx(direct_js(p, q), rel=1e-12)
    sigma = {d.settings["sigma_abs"] for d in found.values()}
    assert len(sigma) == 1  # one Gaussian width for every block
    grid = np.arange(3.0)  # a subnormal tail: half of 5e-324 is 0, which made the distance inf
    tails = {b: DensityResult(grid, np.array(d), None, None, 0)
             for b, d in (("p", [1.0, 5e-324, 0.0]), ("q", [0.0, 0.0, 1.0]))}  # fmt: skip
    assert js_distances(tails)[0, 1] == 1.0


def test_stored_loaded_back_equal_and_plotted(computed, plain, tmp_path):
    save_hessian(computed, tmp_path / "h.h5")
    assert load_hessian(tmp_path / "h.h5").blocks == computed
    save_hessian(plain, tmp_path / "plain.h5")  # the 0.2 layout: no new group, no new attr
    assert load_hessian(tmp_path / "plain.h5").blocks == plain
    ax = plot_block_densities(computed, Figure().add_subplot())
    assert [line.get_label() for line in ax.lines] == ["0", "2"]
    assert np.array_equal(ax.lines[0].get_xdata(), computed.densities["0"].grid)
    ax = plot_block_js_distance(computed, Figure().add_subplot())
    assert np.array_equal(ax.images[0].get_array(), computed.js_distance)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "2"] and len(ax.texts) == 4
    with pytest.raises(ValueError, match="densities=True"):
        plot_block_densities(plain, Figure().add_subplot())


def test_off_block_and_density_options_are_checked():
    objective = mlp_objective()
    with pytest.raises(ValueError, match="disjoint blocks"):
        block_curvature(objective, {"x": "0.*", "y": "0.weight"}, off_block=True)
    with pytest.raises(TypeError, match="off_block"):
        block_curvature(objective, off_block="yes")
    with pytest.raises(ValueError, match="num_lanczos_steps"):
        block_curvature(objective, densities=True, num_lanczos_steps=0)
    with pytest.raises(ValueError, match="disjoint"):
        off_block_samples(dense_operator(torch.eye(3)), [torch.arange(2), torch.arange(1, 3)])
