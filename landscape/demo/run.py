"""The demo job behind ``make demo``: :func:`run_demo`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .data import digits_data, digits_mlp
from .readme import update_readme_table
from .training import train_demo_pair

__all__ = ["run_demo"]


def _demo_figures(surfaces: dict, label: str, out_dir: str) -> list[str]:
    from matplotlib.figure import Figure

    from .. import plotting

    draw: dict[str, Callable[..., Any]] = {
        "line": plotting.plot_line,
        "contour": plotting.plot_contour,
        "contourf": plotting.plot_contourf,
        "heatmap": plotting.plot_heatmap,
        "surface3d": plotting.plot_surface3d,
    }
    written = []
    with plotting.landscape_style():
        for kind, plot in draw.items():
            fig = Figure(figsize=(4.2, 3.3), layout="constrained")
            ax = fig.add_subplot(projection="3d" if kind == "surface3d" else None)
            surface = surfaces["line" if kind == "line" else "plane"]
            plot(surface, ("loss", "accuracy") if kind == "line" else "loss", ax)
            fig.suptitle(f"digits MLP, {label}")
            written.append(str(plotting.save_figure(fig, f"{out_dir}/demo_{label}_{kind}.png")))
    return written


def run_demo(
    out_dir: str = "figures",
    *,
    num_points: int = 51,
    seed: int = 0,
    progress: bool = True,
    readme: str | None = None,
) -> dict[str, object]:
    """The main job behind ``make demo``: train, compute, store, plot, compare, summarize.

    Training runs on one thread (see :func:`train_classifier`), so the weights, the table
    and the figures are the same whatever the thread count; the rest uses torch's threads
    (sampled measures then differ in the sixth or seventh digit, below what is printed).

    Trains the small-batch and large-batch digits MLPs (:func:`train_demo_pair`), saves their
    checkpoints, computes for each a 1D line and a ``num_points`` x ``num_points`` plane of
    filter-normalized random directions on the training data (resumable HDF5 files), draws
    the line, contour, filled contour, heatmap and 3D figures, and compares the two minima
    on sharpness measures with the test data for the generalization gap.

    Args:
        out_dir: where every file goes (``build/demo`` for ``make demo``, ``figures`` for
            ``make readme-table``).
        num_points: points per axis of the lines and planes.
        seed: seed of training and of the directions.
        progress: show progress bars.
        readme: a README whose demo table (see :func:`update_readme_table`) gets the
            comparison's table; untouched when the table is unchanged.

    Returns:
        ``{"surfaces": {label: {"line": Surface, "plane": Surface}}, "comparison": ...}``.
    """
    import dataclasses
    import os

    from ..checkpoint import save_checkpoint
    from ..compare import compare_checkpoints, plot_comparison, write_tables
    from ..directions import random_directions
    from ..surface import compute_surface

    os.makedirs(out_dir, exist_ok=True)
    train, test = digits_data("train"), digits_data("test")
    models = train_demo_pair(seed=seed, progress=progress)
    grid = np.linspace(-1, 1, num_points)  # float64: the centre is exactly 0
    surfaces: dict[str, dict] = {}
    for label, model in models.items():
        save_checkpoint(model, f"{out_dir}/demo_{label}.pt")
        line_dirs = random_directions(model, num_directions=1, seed=seed)
        plane_dirs = random_directions(model, num_directions=2, seed=seed)
        attrs = {"model": "digits-mlp", "data": "digits"}
        surfaces[label] = {
            "line": compute_surface(model, train, line_dirs, grid, progress=progress,
                                    path=f"{out_dir}/demo_{label}_line.h5", attrs=attrs),
            "plane": compute_surface(model, train, plane_dirs, grid, grid, progress=progress,
                                     path=f"{out_dir}/demo_{label}_plane.h5", attrs=attrs),
        }  # fmt: skip
        _demo_figures(surfaces[label], label, out_dir)

    comparison = compare_checkpoints(
        digits_mlp(), models, train, test_data=test, line=tuple(grid), seed=seed,
        path=f"{out_dir}/compare.h5", progress=progress,
    )  # fmt: skip
    planes = {label: s["plane"] for label, s in surfaces.items()}
    comparison = dataclasses.replace(comparison, planes=planes)
    write_tables(comparison, out_dir)
    plot_comparison(comparison, out_dir)
    print(f"\nlandscape demo: figures and HDF5 files in {out_dir}/\n")
    print(comparison.to_markdown())
    if readme is not None and update_readme_table(readme, comparison.to_markdown()):
        print(f"updated the demo table in {readme}")
    return {"surfaces": surfaces, "comparison": comparison}
