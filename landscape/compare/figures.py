"""A comparison's figures (lines, planes, measures, barriers) and tables (Markdown, CSV)."""

from __future__ import annotations

import os

from .result import Comparison

__all__ = ["plot_comparison", "write_tables"]


def plot_comparison(comparison: Comparison, out_dir: str | os.PathLike) -> list[str]:
    """Write the comparison figures (lines, planes, measures, and the barrier matrix when
    there is one) as PNG and PDF into ``out_dir``.

    Returns:
        The paths written.
    """
    from matplotlib.figure import Figure

    from .. import plotting

    os.makedirs(out_dir, exist_ok=True)
    written = []
    with plotting.landscape_style():
        fig = Figure(figsize=(4.5, 3.2), layout="constrained")
        curves = {
            label: (s.x, s["loss"].mean(axis=0), s["loss"].std(axis=0))
            for label, s in comparison.lines.items()
        }
        first = next(iter(comparison.lines.values()))
        band = f"±1 standard deviation over {first['loss'].shape[0]} random directions"
        plotting.plot_lines_compare(curves, fig.add_subplot(), x_label=first.attrs["x_label"],
                                    band=band)  # fmt: skip
        figures = {"compare_lines": fig}
        if comparison.planes:
            figures["compare_planes"] = plotting.plot_contours_compare(
                comparison.planes, fig=Figure(figsize=(3.2 * len(comparison.planes) + 1, 3),
                                             layout="constrained"),
            )  # fmt: skip
        table = {
            label: {n: (r.value, r.stderr) for n, r in results.items()}
            for label, results in comparison.measures.items()
        }
        if any(table.values()):
            figures["compare_measures"] = plotting.plot_measures(
                table, fig=Figure(figsize=(8, 4), layout="constrained")
            )
        if comparison.barriers is not None:
            size = 2.0 + 0.6 * len(comparison.barriers.labels)
            fig = Figure(figsize=(size + 1.0, size), layout="constrained")
            plotting.plot_barrier_matrix(comparison.barriers, fig.add_subplot())
            figures["compare_barriers"] = fig
        for name, figure in figures.items():
            for suffix in ("png", "pdf"):
                written.append(
                    os.fspath(plotting.save_figure(figure, f"{out_dir}/{name}.{suffix}"))
                )
    return written


def write_tables(comparison: Comparison, out_dir: str | os.PathLike) -> list[str]:
    """Write ``compare.md`` and ``compare.csv`` into ``out_dir``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "compare.md"), os.path.join(out_dir, "compare.csv")]
    with open(paths[0], "w") as f:
        f.write(comparison.to_markdown() + "\n")
    with open(paths[1], "w") as f:
        f.write(comparison.to_csv())
    return paths
