"""Views of a landscape file outside matplotlib: ParaView/VTK, interactive HTML, GIF.

- :func:`export_vts`: the surface as a VTK XML structured grid (``.vts``: point ``(x[i],
  y[j], height)``, every metric as point data, float64, NaN kept), and the trajectory or
  curve beside it as a polyline (``<stem>_path.vtu``, written with meshio); ParaView opens
  both. Li et al.'s ``h52vtp`` broke on SciPy >= 1.14; this needs no SciPy.
- :func:`export_html`: one self-contained Plotly page (the library inlined, no network):
  the surface in 3D beside its contour, the trajectory on both; for a file of paths, the
  loss along each path.
- :func:`export_gif`: an animation (matplotlib's animation with Pillow): the trajectory
  moving on the contour; the point moving along each path; or, for a plain plane, the 1D
  slice ``y = y[j]`` sweeping across it.

The formats come from optional extras (``pip install landscape[export]`` for plotly and
meshio; Pillow comes with matplotlib); the core never imports them, and a missing one is
reported with the command that installs it.
"""

from __future__ import annotations

import base64
import importlib
import os
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from .surface import Surface

__all__ = [
    "FORMATS",
    "LandscapeFile",
    "export",
    "export_gif",
    "export_html",
    "export_vts",
    "read_views",
]

FORMATS = ("vts", "html", "gif")


def _require(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(
            f"this export needs {package}, which is not installed; "
            f"pip install {package} (or pip install 'landscape[export]')"
        ) from None


@dataclass(frozen=True)
class LandscapeFile:
    """What a landscape file holds that can be viewed: its surface, trajectory, paths."""

    surface: Surface | None
    trajectory: dict[str, Any] | None
    paths: dict[str, Any]


def read_views(path: str | os.PathLike) -> LandscapeFile:
    """The surface, trajectory and paths of a landscape file (each absent part None/empty).

    Raises:
        FileNotFoundError, ValueError: no file, not a landscape file, or nothing to view.
    """
    from . import storage
    from .storage.paths import load_paths
    from .storage.trajectory import read_trajectory
    from .surface import load_surface

    with storage.open_landscape_file(path) as f:
        has_surface, has_trajectory = "coords" in f and "metrics" in f, "trajectory" in f
    surface = load_surface(path) if has_surface else None
    trajectory = read_trajectory(path) if has_trajectory else None
    paths = load_paths(path)
    if surface is None and not paths:
        raise ValueError(f"{os.fspath(path)} holds no surface and no paths: nothing to export")
    return LandscapeFile(surface, trajectory, paths)


def _views(source: str | os.PathLike | LandscapeFile) -> LandscapeFile:
    return source if isinstance(source, LandscapeFile) else read_views(source)


def _polyline(views: LandscapeFile, metric: str) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """``(points (n, 3), point data)`` of the trajectory or of the fitted curve in its plane."""
    if views.trajectory is not None:
        traj = views.trajectory
        xy = traj["coords"]
        z = traj["projected"].get(metric, traj["projected"]["loss"])
        data = {"step": traj["steps"]}
        data.update({f"true_{k}": v for k, v in traj["true"].items()})
        data.update({f"projected_{k}": v for k, v in traj["projected"].items()})
        return np.column_stack([xy, z]), data
    for result in reversed(list(views.paths.values())):  # the curve before the line
        xy = result.settings.get("xy")
        if xy is not None:
            xy = np.asarray(xy, dtype=np.float64)
            data = {"t": result.t, **result.metrics}
            return np.column_stack([xy, result.metrics.get(metric, result.loss)]), data
    return None


# ---------------------------------------------------------------- VTK
def _data_array(name: str | None, values: np.ndarray, components: int = 1) -> str:
    raw = np.ascontiguousarray(values, dtype="<f8").tobytes()
    payload = base64.b64encode(np.uint64(len(raw)).astype("<u8").tobytes() + raw).decode()
    named = f" Name={quoteattr(name)}" if name is not None else ""
    return (
        f'<DataArray type="Float64"{named} NumberOfComponents="{components}" '
        f'format="binary">{payload}</DataArray>'
    )


def export_vts(
    source: str | os.PathLike | LandscapeFile,
    out: str | os.PathLike,
    *,
    metric: str = "loss",
    flat: bool = False,
) -> list[str]:
    """Write the surface as a VTK XML structured grid, and its path as a polyline.

    The grid has ``nx * ny`` points, x fastest (VTK's order): point ``i + nx * j`` is
    ``(x[i], y[j], z)`` with ``z`` the value of ``metric`` (0 where it is not finite, or
    everywhere with ``flat=True``), and every metric as a float64 point-data array (NaN
    kept). A trajectory (or a fitted curve with plane coordinates) goes to
    ``<stem>_path.vtu`` (needs meshio): points ``(x, y, loss)``, one line cell per step,
    and its values (step, true and projected metrics; or t and the metrics) as point data.

    Args:
        source: a landscape file (or what :func:`read_views` returned).
        out: the ``.vts`` file to write.
        metric: the metric used as the third coordinate (and the polyline's).
        flat: put every point at ``z = 0`` (ParaView's "Warp By Scalar" lifts it).

    Returns:
        The files written.

    Raises:
        ValueError: no surface, or an unknown metric.
        RuntimeError: a polyline is to be written and meshio is not installed.
    """
    views = _views(source)
    surface = views.surface
    if surface is None:
        raise ValueError("a VTK grid needs a surface; this file holds only paths")
    if metric not in surface.metrics:
        raise ValueError(f"metric must be one of {sorted(surface.metrics)}, got {metric!r}")
    x = surface.x
    y = surface.y if surface.y is not None else np.zeros(1)
    nx, ny = len(x), len(y)
    grid = {k: np.asarray(v, dtype=np.float64).reshape(nx, ny) for k, v in surface.metrics.items()}
    z = np.zeros((nx, ny)) if flat else grid[metric]
    z = np.where(np.isfinite(z), z, 0.0)
    gx, gy = np.meshgrid(x, y, indexing="ij")
    points = np.column_stack([gx.T.reshape(-1), gy.T.reshape(-1), z.T.reshape(-1)])
    extent = f"0 {nx - 1} 0 {ny - 1} 0 0"
    arrays = "\n".join(_data_array(k, v.T.reshape(-1)) for k, v in grid.items())
    scalars = quoteattr(metric)
    text = (
        '<?xml version="1.0"?>\n'
        '<VTKFile type="StructuredGrid" version="1.0" byte_order="LittleEndian" '
        'header_type="UInt64">\n'
        f'<StructuredGrid WholeExtent="{extent}">\n<Piece Extent="{extent}">\n'
        f"<PointData Scalars={scalars}>\n{arrays}\n</PointData>\n"
        f"<Points>\n{_data_array(None, points, 3)}\n</Points>\n"
        "</Piece>\n</StructuredGrid>\n</VTKFile>\n"
    )
    out = os.fspath(out)
    with open(out, "w", encoding="ascii") as f:
        f.write(text)
    written = [out]
    line = _polyline(views, metric)
    if line is not None:
        meshio = _require("meshio", "meshio")
        pts, data = line
        cells = [("line", np.column_stack([np.arange(len(pts) - 1), np.arange(1, len(pts))]))]
        pts = np.where(np.isfinite(pts), pts, 0.0)
        mesh = meshio.Mesh(
            pts, cells, point_data={k: np.asarray(v, float) for k, v in data.items()}
        )
        path_out = os.path.splitext(out)[0] + "_path.vtu"
        meshio.write(path_out, mesh, file_format="vtu")
        written.append(path_out)
    return written


# ---------------------------------------------------------------- HTML
def export_html(
    source: str | os.PathLike | LandscapeFile,
    out: str | os.PathLike,
    *,
    metric: str = "loss",
) -> list[str]:
    """Write one self-contained interactive Plotly page (plotly.js inlined).

    For a plane: the 3D surface beside its contour, with the trajectory (or the fitted
    curve) drawn on both; for a line: the metric along it; for a file of paths: the metric
    along each path against ``t``. Traces are named (``surface``, ``contour``, ``path``,
    ``line``, ``bezier``, ...) and hold float64 values.

    Raises:
        ValueError: an unknown metric.
        RuntimeError: plotly is not installed.
    """
    go = _require("plotly.graph_objects", "plotly")
    subplots = _require("plotly.subplots", "plotly")
    views = _views(source)
    surface = views.surface
    line = _polyline(views, metric)
    if surface is not None and surface.is_2d:
        if metric not in surface.metrics:
            raise ValueError(f"metric must be one of {sorted(surface.metrics)}, got {metric!r}")
        z = np.asarray(surface[metric], dtype=np.float64).T  # rows along y
        fig = subplots.make_subplots(
            rows=1, cols=2, specs=[[{"type": "surface"}, {"type": "xy"}]],
            subplot_titles=(f"{metric} surface", f"{metric} contour"),
        )  # fmt: skip
        fig.add_trace(go.Surface(x=surface.x, y=surface.y, z=z, name="surface",
                                 colorscale="Viridis", showscale=False), row=1, col=1)  # fmt: skip
        fig.add_trace(go.Contour(x=surface.x, y=surface.y, z=z, name="contour",
                                 colorscale="Viridis"), row=1, col=2)  # fmt: skip
        if line is not None:
            pts, data = line
            labels = [f"{v:g}" for v in data.get("step", data.get("t", range(len(pts))))]
            path3d = go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], name="path",
                                  mode="lines+markers", text=labels)  # fmt: skip
            fig.add_trace(path3d, row=1, col=1)
            fig.add_trace(go.Scatter(x=pts[:, 0], y=pts[:, 1], name="path",
                                     mode="lines+markers+text", text=labels,
                                     textposition="top center"), row=1, col=2)  # fmt: skip
    else:
        fig = go.Figure()
        if surface is not None:
            fig.add_trace(go.Scatter(x=surface.x, y=surface[metric], name=metric))
            fig.update_layout(xaxis_title=surface.attrs.get("x_label", "x"))
        for kind, result in views.paths.items():
            if metric not in result.metrics:
                raise ValueError(f"metric must be one of {sorted(result.metrics)}, got {metric!r}")
            fig.add_trace(go.Scatter(x=result.t, y=result.metrics[metric], name=kind,
                                     mode="lines+markers"))  # fmt: skip
        if views.paths:
            fig.update_layout(xaxis_title="t", yaxis_title=metric)
    fig.update_layout(title=os.path.basename(os.fspath(getattr(surface, "path", "") or "")))
    out = os.fspath(out)
    fig.write_html(out, include_plotlyjs=True, full_html=True)
    return [out]


# ---------------------------------------------------------------- GIF
def export_gif(
    source: str | os.PathLike | LandscapeFile,
    out: str | os.PathLike,
    *,
    metric: str = "loss",
    fps: int = 4,
    dpi: int = 80,
) -> list[str]:
    """Write an animated GIF (matplotlib's animation, written by Pillow).

    Frames: with a trajectory, one a checkpoint (the path so far on the contour, labelled
    by step); with paths, one a ``t`` (the point moving along each path's metric); with a
    plain plane, one a ``y[j]`` (the slice ``metric[:, j]`` against x).

    Raises:
        ValueError: a file with only a line (nothing to animate) or an unknown metric.
        RuntimeError: Pillow is not installed.
    """
    _require("PIL", "pillow")
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.figure import Figure

    from . import plotting

    views = _views(source)
    surface = views.surface
    fig = Figure(figsize=(5, 4), layout="constrained")
    ax = fig.add_subplot()
    if views.trajectory is not None and surface is not None and surface.is_2d:
        plotting.plot_contour(surface, metric, ax)
        xy, steps = views.trajectory["coords"], views.trajectory["steps"]
        (trail,) = ax.plot([], [], "-o", color="tab:red", markersize=3)
        label = ax.text(0.02, 0.95, "", transform=ax.transAxes, va="top")

        def update(k: int) -> tuple:
            trail.set_data(xy[: k + 1, 0], xy[: k + 1, 1])
            label.set_text(f"step {steps[k]:g}")
            return trail, label

        frames = len(xy)
    elif views.paths:
        kinds = list(views.paths)
        t = views.paths[kinds[0]].t
        markers = []
        for kind in kinds:
            result = views.paths[kind]
            if metric not in result.metrics:
                raise ValueError(f"metric must be one of {sorted(result.metrics)}, got {metric!r}")
            (drawn,) = ax.plot(result.t, result.metrics[metric], label=kind)
            (marker,) = ax.plot([], [], "o", color=drawn.get_color())
            markers.append((marker, result))
        ax.set_xlabel("t")
        ax.set_ylabel(metric)
        ax.legend()

        def update(k: int) -> tuple:
            for marker, result in markers:
                i = min(k, len(result.t) - 1)
                marker.set_data([result.t[i]], [result.metrics[metric][i]])
            return tuple(m for m, _ in markers)

        frames = len(t)
    elif surface is not None and surface.y is not None:  # a plane
        ys = surface.y
        values = np.asarray(surface[metric], dtype=np.float64)
        finite = values[np.isfinite(values)]
        (curve,) = ax.plot(surface.x, values[:, 0])
        if finite.size:
            ax.set_ylim(finite.min(), finite.max())
        ax.set_xlabel(surface.attrs.get("x_label", "x"))
        ax.set_ylabel(metric)
        title = ax.set_title("")

        def update(k: int) -> tuple:
            curve.set_ydata(values[:, k])
            title.set_text(f"y = {ys[k]:.3g}")
            return curve, title

        frames = len(ys)
    else:
        raise ValueError("a GIF needs a plane, a trajectory or paths; this file holds one line")
    animation = FuncAnimation(fig, update, frames=frames, blit=False)
    out = os.fspath(out)
    animation.save(out, writer=PillowWriter(fps=fps), dpi=dpi)
    return [out]


def export(path: str | os.PathLike, out: str | os.PathLike, *, format: str, **options: Any):
    """Export a landscape file as ``"vts"``, ``"html"`` or ``"gif"``; returns the files written.

    Raises:
        ValueError: an unknown format.
    """
    writers = {"vts": export_vts, "html": export_html, "gif": export_gif}
    if format not in writers:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    out = os.fspath(out)
    outputs = [out, os.path.splitext(out)[0] + "_path.vtu"]
    new = [name for name in outputs if not os.path.exists(name)]
    try:
        return writers[format](path, out, **options)
    except OSError as err:  # a full disk: one line, and no half-written output left
        for name in new:
            if os.path.exists(name):
                os.remove(name)
        from .storage import write_error

        raise write_error(err, out) from None
