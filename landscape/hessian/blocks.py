"""Curvature per block of weights: the top eigenvalue and the trace of each diagonal block
``H_bb`` of the Hessian (a transformer layer, the embeddings, the head, ...), and, on
request, what lies beyond the diagonal: each block's off-block share
(:mod:`~landscape.hessian.block_offdiag`) and the blocks' spectral densities with the
Jensen-Shannon distances between them (:mod:`~landscape.hessian.block_density`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._progress import progress_bar
from ..checks import check_choice, check_count, check_flag
from ..linalg import Quadrature, SigmaUnits, TraceMethod, lanczos_quadrature
from ..objective import Objective
from ..params import ParamSelection, model_device_dtype, select_params, selection_attr
from .block_density import common_densities, js_distances
from .block_offdiag import off_block_samples, off_block_share
from .block_plan import plan_blocks
from .eigen import hessian_eigenpairs
from .operator import HessianOperator
from .results import BlockCurvature
from .trace import hessian_trace

__all__ = ["block_curvature", "default_blocks"]

_CONTAINERS = (nn.ModuleList, nn.Sequential, nn.ModuleDict)
# Settings of one block's operator, which differ between blocks (kept in `names` instead).
_PER_BLOCK = ("num_params", "state_sha256", "params")


def _has_container(module: nn.Module) -> bool:
    return any(isinstance(m, _CONTAINERS) for m in module.modules())


def default_blocks(model: nn.Module) -> dict[str, list[str]]:
    """The model's blocks of weights: each member of a container (``nn.ModuleList``,
    ``nn.Sequential``, ``nn.ModuleDict``, e.g. each ``transformer.h.{i}``; a member that is
    a container is opened in turn), and each other top-level module (the embeddings, the
    head); modules that hold a container are opened, and a weight held directly by an
    opened module is a block of its own.

    A tied weight (a head sharing the embedding's matrix) belongs to the block that
    ``model.named_parameters()`` names it in first; modules without weights give no block.

    Returns:
        ``{block: parameter names}``, in the order of ``model.named_parameters()``.

    Example:
        >>> model = nn.ModuleDict({"emb": nn.Embedding(5, 2),
        ...     "h": nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)]), "head": nn.Linear(2, 5)})
        >>> list(default_blocks(model))
        ['emb', 'h.0', 'h.1', 'head']
    """
    owner: dict[str, str] = {}

    def take(module: nn.Module, block: str) -> None:  # every weight under module
        for name, _ in module.named_parameters(prefix=block):
            owner.setdefault(name, block)

    def members(container: nn.Module, prefix: str) -> None:
        for name, child in container.named_children():
            if isinstance(child, _CONTAINERS):
                members(child, f"{prefix}{name}.")
            else:
                take(child, prefix + name)

    def open_module(module: nn.Module, prefix: str) -> None:
        for name, _ in module.named_parameters(recurse=False):
            owner.setdefault(prefix + name, prefix + name)
        for name, child in module.named_children():
            if isinstance(child, _CONTAINERS):
                members(child, f"{prefix}{name}.")
            elif _has_container(child):
                open_module(child, f"{prefix}{name}.")
            else:
                take(child, prefix + name)

    if isinstance(model, _CONTAINERS):
        members(model, "")
    else:
        open_module(model, "")
    blocks: dict[str, list[str]] = {}
    for name, _ in model.named_parameters():
        blocks.setdefault(owner[name], []).append(name)
    return blocks


def _resolve_blocks(
    model: nn.Module,
    blocks: Mapping[str, ParamSelection] | Sequence[str] | None,
    params: ParamSelection,
) -> dict[str, list[str]]:
    """``{block: names}`` from ``blocks`` (or the default ones), within ``params``."""
    if blocks is None:
        found = default_blocks(model)
    elif isinstance(blocks, Mapping):
        found = {str(b): select_params(model, s) for b, s in blocks.items()}
    elif isinstance(blocks, Sequence) and not isinstance(blocks, str):
        found = {str(p): select_params(model, p) for p in blocks}
    else:
        raise TypeError(
            "blocks must be None, a mapping {name: pattern} or a list of patterns, "
            f"got {blocks!r}"
        )
    if not found:
        raise ValueError("blocks is empty: expected at least one block")
    bad = [b for b in found if not b or "/" in b]
    if bad:
        raise ValueError(f"block names must be non-empty and hold no '/', got {bad}")
    keep = set(select_params(model, params))
    found = {b: [n for n in names if n in keep] for b, names in found.items()}
    found = {b: names for b, names in found.items() if names}
    if not found:
        raise ValueError(f"params {params!r} selects no weight of any block")
    return found


def block_curvature(
    objective: Objective,
    blocks: Mapping[str, ParamSelection] | Sequence[str] | None = None,
    *,
    params: ParamSelection = None,
    num_probes: int = 99,
    method: TraceMethod = "hutch++",
    tol: float | None = None,
    max_hvps: int = 500,
    seed: int = 0,
    state: Mapping[str, torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
    off_block: bool = False,
    num_off_block_probes: int = 50,
    densities: bool = False,
    num_density_probes: int = 10,
    num_lanczos_steps: int = 80,
    sigma: float = 0.01,
    sigma_units: SigmaUnits = "width",
    num_grid: int = 1000,
    max_memory: int | None = None,
) -> BlockCurvature:
    """The top eigenvalue and the trace of each block's diagonal Hessian block ``H_bb``;
    optionally how much of the Hessian lies off the blocks, and each block's spectrum.

    For each block ``b`` the :class:`HessianOperator` restricted to its weights (the others
    held fixed) gives ``lambda_max(H_bb)`` by :func:`hessian_eigenpairs` (``k=1``, verified
    in float64) and ``tr(H_bb)`` by :func:`hessian_trace`, with its standard error. The
    traces of a partition of the weights add up to the trace of the whole Hessian; the top
    eigenvalues say which block is sharpest on its own.

    ``off_block=True``: per block, the off-block share ``||H_{-b,b}||_F / ||H_{:,b}||_F``
    (the part of the block's columns of ``H`` that a block-diagonal approximation drops,
    in Frobenius norm; 0 for a block-diagonal Hessian) with its standard error, estimated
    with Gaussian probes ``v`` supported on the block as
    ``sqrt(mean ||H_{-b,b} v||^2 / mean ||H_{:,b} v||^2)``, since
    ``E ||A v||^2 = ||A||_F^2`` (:func:`~landscape.hessian.block_offdiag.off_block_share`);
    and the same for the whole Hessian, ``||H - blockdiag(H)||_F / ||H||_F``. "Off" means in
    the other blocks: weights in no block are held fixed. Cost: ``num_off_block_probes``
    products a block with the Hessian of every block's weights together (one more
    operator). The blocks must not overlap.

    ``densities=True``: the spectral density of each ``H_bb`` by stochastic Lanczos
    quadrature (``num_density_probes`` random-sign probes of ``num_lanczos_steps`` steps;
    cost: their product a block, with the block's operator), all on one grid with one
    Gaussian width (``sigma``, ``sigma_units``, ``num_grid`` as in :func:`spectral_density`,
    the width measured over every block's nodes), and the Jensen-Shannon distance between
    every two blocks' densities (Zhang et al. 2024; log base 2, in ``[0, 1]``, see
    :func:`~landscape.hessian.block_density.js_distances`).

    Args:
        objective: the loss and data; its model is never changed.
        blocks: ``None`` for :func:`default_blocks` (each ``transformer.h.{i}``, the
            embeddings, the head, ...), a mapping ``{name: selection}`` (a pattern, names, a
            predicate, see :func:`landscape.params.select_names`), or a list of patterns,
            each a block named by itself.
        params: keep only these weights of every block (blocks left empty are dropped).
        num_probes, method: as in :func:`hessian_trace` (exact for blocks of at most
            ``num_probes // 3`` weights with Hutch++).
        tol, max_hvps: as in :func:`hessian_eigenpairs`.
        seed: seeds the Lanczos start, the trace and density probes of every block (the
            same draws in each), and the off-block probes (drawn block after block).
        state, dtype: as in :class:`HessianOperator`.
        progress: show a tqdm bar of each block's products.
        off_block, num_off_block_probes: estimate the off-block shares, with this many
            Gaussian probes a block (seeded by ``seed``).
        densities, num_density_probes, num_lanczos_steps, sigma, sigma_units, num_grid:
            estimate each block's spectral density and the distances between them.
        max_memory: bytes each job may hold (default: the device's free memory). Every
            job is planned before any product
            (:func:`~landscape.hessian.block_plan.plan_blocks`): a job that fits nowhere is
            refused in one line with the numbers; the densities are three-term Lanczos
            where the reorthogonalized basis does not fit (``settings["density_strategy"]``).

    Returns:
        a :class:`BlockCurvature` (``off_block_samples``, ``off_block``, ``densities`` and
        ``js_distance`` are ``None`` unless asked for).

    Raises:
        ValueError: a pattern that matches no weight, no block left, a block name with '/',
            overlapping blocks with ``off_block=True``, a count below 1.
        TypeError: ``blocks`` of another type, a flag that is not a bool.
        RuntimeError: a job that fits in ``max_memory`` with no strategy (before any HVP).

    Example:
        >>> x = torch.randn(20, 3, dtype=torch.float64)
        >>> model = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1)).double()
        >>> objective = Objective(model, (x, x.sum(1, keepdim=True)), loss="mse")
        >>> result = block_curvature(objective, progress=False)
        >>> list(result.values), result["2"]["trace_stderr"]
        (['0', '2'], 0.0)
    """
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a landscape Objective, got {type(objective).__name__}")
    off_block, densities = check_flag(off_block, "off_block"), check_flag(densities, "densities")
    found = _resolve_blocks(objective.model, blocks, params)
    if off_block:
        check_count(num_off_block_probes, "num_off_block_probes")
        every = [n for names in found.values() for n in names]
        shared = sorted(n for n, count in Counter(every).items() if count > 1)
        if shared:
            raise ValueError(
                f"expected disjoint blocks for off_block=True, got blocks that share {shared}"
            )
    if densities:
        check_count(num_density_probes, "num_density_probes")
        check_count(num_lanczos_steps, "num_lanczos_steps")
        check_count(num_grid, "num_grid", 2)
        check_choice(sigma_units, ("width", "absolute"), "sigma_units")
        if not sigma > 0:
            raise ValueError(f"expected sigma > 0, got {sigma}")
    if max_memory is not None:
        max_memory = check_count(max_memory, "max_memory")
    device, model_dtype = model_device_dtype(objective.model)
    weights = dict(objective.model.named_parameters())
    plans = plan_blocks(
        {block: sum(weights[n].numel() for n in names) for block, names in found.items()},
        dtype or model_dtype, device, max_memory, max_hvps=max_hvps, num_probes=num_probes,
        method=method, density=(num_density_probes, num_lanczos_steps) if densities else None,
        num_off_block_probes=num_off_block_probes if off_block else None,
    )  # fmt: skip
    values, converged, num_params = {}, {}, {}
    rules: dict[str, Quadrature] = {}
    settings: dict[str, Any] = {}
    num_hvps = 0
    for i, (block, names) in enumerate(found.items()):
        op = HessianOperator(
            objective, state=state, params=names, dtype=dtype, check_deterministic=i == 0
        )
        eigen = hessian_eigenpairs(
            op, k=1, which="LA", tol=tol, max_hvps=max_hvps, seed=seed, progress=progress,
            max_memory=max_memory,
        )  # fmt: skip
        trace = hessian_trace(
            op, num_probes=num_probes, method=method, seed=seed, progress=progress,
            max_memory=max_memory,
        )  # fmt: skip
        values[block] = {
            "lambda_max": float(eigen.eigenvalues[0]),
            "trace": float(trace.value),
            "trace_stderr": float(trace.stderr),
        }
        converged[block] = bool(eigen.converged)
        num_params[block] = op.num_params
        num_hvps += eigen.num_hvps + trace.num_hvps
        if densities:  # the rules now, the densities once every block's nodes are known
            total = num_density_probes * num_lanczos_steps
            with progress_bar(progress, desc=f"density {block}", unit="HVP", total=total) as bar:
                rules[block] = lanczos_quadrature(
                    op, num_probes=num_density_probes, num_steps=num_lanczos_steps, seed=seed,
                    callback=bar.update,
                    reorthogonalize=plans["density"].choice == "reorthogonalize",
                )  # fmt: skip
            num_hvps += rules[block].num_matvecs
        if i == 0:
            settings = {k: v for k, v in op.settings.items() if k not in _PER_BLOCK}
            settings.update(tol=eigen.settings["tol"], max_hvps=max_hvps)
    settings.update(num_probes=num_probes, method=method, seed=seed)
    if max_memory is not None:
        settings["max_memory"] = max_memory
    if params is not None:
        used = [n for names in found.values() for n in names]
        settings["params"] = selection_attr(used, dict(objective.model.named_parameters()))
    names_out = {b: tuple(n) for b, n in found.items()}
    extra: dict[str, Any] = {}
    if off_block:
        samples = _off_block(objective, found, state, dtype, num_off_block_probes, seed, progress)
        for block, block_samples in samples.items():
            share, stderr = off_block_share(block_samples)
            values[block].update(off_block_share=share, off_block_stderr=stderr)
        share, stderr = off_block_share(np.stack(list(samples.values())))
        extra.update(off_block_samples=samples, off_block={"share": share, "stderr": stderr})
        settings["num_off_block_probes"] = num_off_block_probes
        num_hvps += num_off_block_probes * len(found)
    if densities:
        spectra = common_densities(rules, sigma=sigma, sigma_units=sigma_units, num_grid=num_grid)
        extra.update(densities=spectra, js_distance=js_distances(spectra))
        settings.update(num_density_probes=num_density_probes, num_lanczos_steps=num_lanczos_steps,
                        sigma=sigma, sigma_units=sigma_units, num_grid=num_grid,
                        density_strategy=plans["density"].choice)  # fmt: skip
    return BlockCurvature(values, names_out, num_params, converged, num_hvps, settings, **extra)


def _off_block(
    objective: Objective,
    found: dict[str, list[str]],
    state: Mapping[str, torch.Tensor] | None,
    dtype: torch.dtype | None,
    num_probes: int,
    seed: int,
    progress: bool,
) -> dict[str, np.ndarray]:
    """``{block: (num_probes, 2) samples}`` of :func:`off_block_samples` with the Hessian of
    every block's weights together."""
    every = [n for names in found.values() for n in names]
    op = HessianOperator(objective, state=state, params=every, dtype=dtype,
                         check_deterministic=False)  # fmt: skip
    start, offset = {}, 0
    for name in op.names:
        start[name], offset = offset, offset + int(np.prod(op.shapes[name]))
    index = [
        torch.cat([torch.arange(start[n], start[n] + int(np.prod(op.shapes[n]))) for n in names])
        for names in found.values()
    ]
    total = num_probes * len(found)
    with progress_bar(progress, desc="off-block share", unit="HVP", total=total) as bar:
        samples = off_block_samples(op, index, num_probes=num_probes, seed=seed,
                                    callback=bar.update)  # fmt: skip
    return dict(zip(found, samples, strict=True))
