"""The Hessian result dataclasses (compared by value, see :class:`landscape.results.Result`);
also importable from :mod:`landscape.hessian.results`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .base import Result, format_estimate

__all__ = [
    "HVP_FIELDS",
    "EigenResult",
    "ExtremeEigenvalues",
    "TraceResult",
    "DensityResult",
    "HessianResults",
    "BlockCurvature",
]


#: The fields that say how the Hessian-vector products of a result were computed (stored as
#: attrs of the same names; files written before them load with the defaults):
#: ``hvp``, the backend (``"exact"``, double backward, or ``"fd"``, central differences of
#: gradients; see :class:`~landscape.hessian.HessianOperator`), and ``hvp_error``, the
#: measured relative error ``||H_fd v - H v|| / ||H v||`` of the products on one probe
#: (0.0 for ``exact``), or a sentence saying why it could not be measured.
HVP_FIELDS = ("hvp", "hvp_error")


@dataclass(frozen=True, eq=False)
class EigenResult(Result):
    """Eigenpairs of the Hessian, verified with float64 Hessian-vector products.

    Attributes:
        eigenvalues: shape ``(k,)``, float64 Rayleigh quotients of the returned vectors from
            float64 products: descending for "LA", "BE" (largest first, then the smallest),
            ascending for "SA", by descending magnitude for "LM".
        eigenvectors: float64 array ``(k, n)``, orthonormal rows in the order of
            :attr:`names`; the sign is fixed so that each row's largest-magnitude entry is
            positive.
        residuals: ``||H v_i - lambda_i v_i||`` from explicit float64 products.
        num_hvps: Hessian-vector products spent, checks (and float64 ones) included.
        converged: every residual is at most ``tol * ||H||`` (see
            :func:`~landscape.hessian.hessian_eigenpairs`).
        names: the differentiated weights; shapes: their shapes.
        settings: every option and the operator's settings (dtype, point fingerprint, ...).
        hvp, hvp_error: see :data:`HVP_FIELDS`; with ``fd`` products the residuals are
            widened by the error of the products that verified them (see
            :func:`~landscape.hessian.hessian_eigenpairs`).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray
    num_hvps: int
    converged: bool
    names: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    settings: dict[str, Any] = field(default_factory=dict)
    hvp: str = "exact"
    hvp_error: float | str = 0.0

    def as_state(self, i: int) -> dict[str, torch.Tensor]:
        """Eigenvector ``i`` as a state ``{name: float64 CPU tensor}`` shaped like the weights."""
        vector = torch.from_numpy(self.eigenvectors[i].copy())
        sizes = [math.prod(self.shapes[n]) for n in self.names]
        if vector.numel() != sum(sizes):
            raise ValueError(f"expected a vector of {sum(sizes)} entries, got {vector.numel()}")
        parts = torch.split(vector, sizes)
        return {n: p.reshape(self.shapes[n]) for n, p in zip(self.names, parts, strict=True)}

    def as_states(self) -> list[dict[str, torch.Tensor]]:
        """Every eigenvector as a state (see :meth:`as_state`)."""
        return [self.as_state(i) for i in range(len(self.eigenvalues))]


@dataclass(frozen=True, eq=False)
class ExtremeEigenvalues(Result):
    """The largest and smallest Hessian eigenvalues, and Li et al.'s convexity measure.

    Attributes:
        lambda_max, lambda_min: the extreme eigenvalues.
        ratio: ``|lambda_min / lambda_max|`` (NaN if ``lambda_max`` is 0).
        residuals: explicit float64 residual norms of the two eigenpairs, ``(max, min)``.
        num_hvps, converged, settings, hvp, hvp_error: as in :class:`EigenResult`.
    """

    lambda_max: float
    lambda_min: float
    ratio: float
    residuals: np.ndarray
    num_hvps: int
    converged: bool
    settings: dict[str, Any] = field(default_factory=dict)
    hvp: str = "exact"
    hvp_error: float | str = 0.0


@dataclass(frozen=True, eq=False)
class TraceResult(Result):
    """A stochastic estimate of the Hessian trace.

    Attributes:
        value: the estimate, ``samples.mean()``.
        stderr: its standard error, from an unbiased estimate of the variance of one
            random-sign quadratic form (see :func:`landscape.linalg.estimate_trace`);
            ``value +- 1.96 stderr`` covers the trace in about 95% of seeds.
        num_hvps: Hessian-vector products spent.
        method: "hutchinson" or "hutch++".
        samples: for Hutchinson, ``z^T H z`` per probe; for Hutch++, the exact trace on the
            sketched subspace plus ``g^T P H P g`` per residual probe (``P`` projects out the
            sketch), so that the mean is the Hutch++ estimate.
        settings: every option and the operator's settings; with ``fd`` products also
            ``hvp_bias_bound``, a bound on what their error adds to the estimate (see
            :func:`~landscape.hessian.hessian_trace`).
        hvp, hvp_error: see :data:`HVP_FIELDS`.
    """

    value: float
    stderr: float
    num_hvps: int
    method: str
    samples: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    hvp: str = "exact"
    hvp_error: float | str = 0.0


@dataclass(frozen=True, eq=False)
class DensityResult(Result):
    """A smoothed spectral density from stochastic Lanczos quadrature.

    Attributes:
        grid: eigenvalue axis, shape ``(num_grid,)``.
        density: the density on ``grid``; it integrates to about 1.
        nodes: Ritz values, ``(num_probes, num_steps)``; NaN where a probe's Krylov space was
            exhausted early.
        weights: quadrature weights for ``nodes`` (0 where NaN); each row sums to 1.
        num_hvps: Hessian-vector products spent.
        settings: every option (``sigma_abs`` is the Gaussian width used) and the operator's;
            with ``fd`` products also ``hvp_node_bound``, a bound on how far their error
            moves the nodes (see :func:`~landscape.hessian.spectral_density`).
        hvp, hvp_error: see :data:`HVP_FIELDS`.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    num_hvps: int
    settings: dict[str, Any] = field(default_factory=dict)
    hvp: str = "exact"
    hvp_error: float | str = 0.0


@dataclass(frozen=True, eq=False)
class BlockCurvature(Result):
    """The curvature of each block of weights: the top eigenvalue and the trace of the
    block's diagonal Hessian block ``H_bb`` (the others held fixed).

    Attributes:
        values: ``{block: {"lambda_max": float, "trace": float, "trace_stderr": float}}``, in
            the order of the blocks; ``trace_stderr`` is 0 where the trace is exact (Hutch++
            with ``num_probes >= 3 n``).
        names: ``{block: parameter names}``.
        num_params: ``{block: number of weights}``.
        converged: ``{block: whether lambda_max met its tolerance}``.
        num_hvps: Hessian-vector products spent, all blocks together.
        settings: every option and the provenance (``model``, ``checkpoint_sha256``, ...).
        off_block_samples: ``{block: (num_probes, 2)}``, ``||H_{-b,b} v||^2`` and
            ``||H_{:,b} v||^2`` per Gaussian probe ``v`` on the block (``None`` when not
            computed); ``values[block]`` then also holds ``off_block_share``
            (``||H_{-b,b}||_F / ||H_{:,b}||_F`` estimated) and ``off_block_stderr``.
        off_block: ``{"share", "stderr"}`` of the whole Hessian over the blocks,
            ``||H - blockdiag(H)||_F / ||H||_F`` estimated from the same samples.
        densities: ``{block: DensityResult}``, the spectral density of each ``H_bb``, all
            on one grid with one Gaussian width (``None`` when not computed).
        js_distance: ``(blocks, blocks)``, the Jensen-Shannon distance (log base 2, in
            ``[0, 1]``) between every two blocks' densities, in the order of ``values``.
    """

    values: dict[str, dict[str, float]]
    names: dict[str, tuple[str, ...]]
    num_params: dict[str, int]
    converged: dict[str, bool]
    num_hvps: int
    settings: dict[str, Any] = field(default_factory=dict)
    off_block_samples: dict[str, np.ndarray] | None = None
    off_block: dict[str, float] | None = None
    densities: dict[str, DensityResult] | None = None
    js_distance: np.ndarray | None = None

    def __getitem__(self, block: str) -> dict[str, float]:
        try:
            return self.values[block]
        except KeyError:
            raise KeyError(f"no block {block!r}; the blocks are {list(self.values)}") from None

    def table(self) -> str:
        """The blocks as a Markdown table: size, ``lambda_max`` and ``trace ± stderr`` (and
        the off-block share ``± stderr`` where it was computed).

        Example:
            >>> r = BlockCurvature({"fc": {"lambda_max": 2.0, "trace": 3.0, "trace_stderr": 0.0}},
            ...                    {"fc": ("fc.weight",)}, {"fc": 4}, {"fc": True}, 10)
            >>> print(r.table())
            | block | params | lambda_max | trace |
            |---|---|---|---|
            | fc | 4 | 2 | 3 |
        """
        share = self.off_block_samples is not None
        rows = ["| block | params | lambda_max | trace |" + (" off-block share |" if share else "")]
        rows.append("|---" * (5 if share else 4) + "|")
        for block, v in self.values.items():
            top = format_estimate(v["lambda_max"], None)
            trace = format_estimate(v["trace"], v["trace_stderr"])
            row = f"| {block} | {self.num_params[block]} | {top} | {trace} |"
            if share:
                row += f" {format_estimate(v['off_block_share'], v['off_block_stderr'])} |"
            rows.append(row)
        return "\n".join(rows)

    to_markdown = table


@dataclass(frozen=True, eq=False)
class HessianResults(Result):
    """What :func:`~landscape.hessian.load_hessian` found in a file (``None`` for a result
    not stored)."""

    eigen: EigenResult | None = None
    trace: TraceResult | None = None
    density: DensityResult | None = None
    extremes: ExtremeEigenvalues | None = None
    blocks: BlockCurvature | None = None
