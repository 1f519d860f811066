"""``landscape plot`` for files other than surfaces: Hessian results (``--kind density``,
``eigenvalues``, ``blocks``), trajectories and paths, and a Tracker's run."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import UserError

__all__ = ["plot_hessian_file", "plot_paths_file", "plot_tracking_file"]


def plot_hessian_file(args: argparse.Namespace) -> None:
    from matplotlib.figure import Figure

    from .. import plotting
    from ..hessian import load_hessian

    results = load_hessian(args.file)
    fig = Figure(figsize=(5, 4), layout="constrained")
    with plotting.landscape_style():
        if args.kind == "density":
            if results.density is None:
                raise UserError(f"{args.file} has no spectral density; run hessian --density")
            plotting.plot_spectral_density(
                results.density.grid, results.density.density, fig.add_subplot()
            )
        elif args.kind == "blocks":
            if results.blocks is None:
                raise UserError(f"{args.file} has no curvature per block; run hessian --per-block")
            _plot_blocks(results.blocks, fig, args.log)
        else:
            if results.eigen is None:
                raise UserError(f"{args.file} has no eigenvalues")
            plotting.plot_eigenvalues(results.eigen.eigenvalues, fig.add_subplot())
        if args.title is not None:
            fig.axes[0].set_title(args.title)
        plotting.save_figure(fig, args.output)
    print(args.output)


def _plot_blocks(blocks: Any, fig: Any, log: bool | None) -> None:
    """Each block's ``lambda_max`` and trace as bars; beside them, where the file holds
    them (``hessian --per-block --block-density``), the blocks' spectral densities and the
    Jensen-Shannon distances between them."""
    from .. import plotting

    width = max(5.0, 2.0 + 0.5 * len(blocks.values))
    if blocks.densities is None:
        fig.set_figwidth(width)
        plotting.plot_block_curvature(blocks, fig.add_subplot(), log=log)
        return
    side = max(4.0, 1.5 + 0.5 * len(blocks.values))  # the distances' square heat map
    fig.set_size_inches(width + 5.0 + side, max(4.0, side - 0.5))
    bars, spectra, distances = fig.subplots(1, 3, width_ratios=(width, 5.0, side))
    plotting.plot_block_curvature(blocks, bars, log=log)
    plotting.plot_block_densities(blocks, spectra)
    plotting.plot_block_js_distance(blocks, distances)


def plot_paths_file(args: argparse.Namespace) -> None:
    from matplotlib.figure import Figure

    from .. import plotting

    fig = Figure(figsize=(9, 3.6) if args.kind == "trajectory" else (5, 4), layout="constrained")
    with plotting.landscape_style():
        if args.kind == "trajectory":
            from ..trajectory import load_trajectory

            try:
                trajectory = load_trajectory(args.file)
            except KeyError:
                raise UserError(
                    f"{args.file} holds no trajectory; run landscape trajectory"
                ) from None
            left, right = fig.subplots(1, 2, width_ratios=(3, 2))
            plotting.plot_trajectory(trajectory, args.metric, left)
            plotting.plot_projection_error(trajectory, args.metric, right)
            ax = left
        else:
            from ..storage.paths import load_paths

            paths = load_paths(args.file)
            if not paths:
                raise UserError(f"{args.file} holds no paths; run landscape connect")
            ax = plotting.plot_paths(paths, args.metric, fig.add_subplot())
        if args.title is not None:
            ax.set_title(args.title)
        plotting.save_figure(fig, args.output)
    print(args.output)


def plot_tracking_file(args: argparse.Namespace) -> None:
    from .. import plotting
    from ..tracking import load_tracking

    try:
        run = load_tracking(args.file)
    except KeyError:
        raise UserError(
            f"{args.file} holds no tracking; log a run with landscape.Tracker"
        ) from None
    with plotting.landscape_style():
        fig = plotting.plot_tracking_run(run)
        if args.title is not None:
            fig.suptitle(args.title)
        plotting.save_figure(fig, args.output)
    print(args.output)
