"""Exports read back with each format's own reader and compared with the HDF5 values."""

from __future__ import annotations

import base64
import json
import re
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from _shared import gaussian_data, gaussian_mlp
from torch import nn

from landscape import Objective, compute_surface, random_directions
from landscape.export import export, export_gif, export_html, export_vts
from landscape.paths import connect_checkpoints
from landscape.storage.paths import load_paths, save_paths
from landscape.storage.trajectory import read_trajectory
from landscape.surface import load_surface, save_surface
from landscape.trajectory import trajectory_plane

meshio = pytest.importorskip("meshio")
pytest.importorskip("plotly")
PIL_Image = pytest.importorskip("PIL.Image")


def _model(seed: int = 0) -> nn.Module:
    return gaussian_mlp((3, 4, 2), seed=seed)


def _data():
    return gaussian_data(16, 3, 2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    data = _data()
    objective = Objective(_model(0), data)
    states = []
    model = _model(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(5):
        states.append({n: t.detach().clone() for n, t in model.state_dict().items()})
        loss = nn.functional.cross_entropy(model(data[0]), data[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    trajectory = folder / "trajectory.h5"
    trajectory_plane(objective, states, x=np.linspace(-1, 1, 5), y=np.linspace(-1, 1, 4),
                     path=trajectory)  # fmt: skip
    plane = folder / "plane.h5"
    surface = compute_surface(objective, random_directions(_model(0)), np.linspace(-1, 1, 6),
                              np.linspace(-1, 1, 3), progress=False)  # fmt: skip
    metrics = {k: v.copy() for k, v in surface.metrics.items()}
    metrics["accuracy"][2, 1] = np.nan  # a point not computed: NaN must survive
    save_surface(type(surface)(surface.x, surface.y, metrics, surface.attrs), plane)
    paths = folder / "paths.h5"
    connection = connect_checkpoints(objective, _model(0), _model(1), t=7, num_steps=5, lr=0.05)
    save_paths(paths, connection.paths)
    return {"trajectory": trajectory, "plane": plane, "paths": paths}


def _vtk_array(element: ET.Element) -> np.ndarray:
    raw = base64.b64decode(element.text.strip())
    size = int(np.frombuffer(raw[:8], dtype="<u8")[0])
    return np.frombuffer(raw[8 : 8 + size], dtype="<f8")


def test_vts_grid_holds_every_metric_in_vtk_order(files, tmp_path):
    surface = load_surface(files["plane"])
    written = export_vts(files["plane"], tmp_path / "plane.vts")
    assert written == [str(tmp_path / "plane.vts")]  # no path: no polyline
    root = ET.parse(written[0]).getroot()
    assert root.get("type") == "StructuredGrid"
    nx, ny = len(surface.x), len(surface.y)
    assert root.find("StructuredGrid").get("WholeExtent") == f"0 {nx - 1} 0 {ny - 1} 0 0"
    arrays = {a.get("Name"): _vtk_array(a) for a in root.iter("DataArray") if a.get("Name")}
    assert set(arrays) == set(surface.metrics)
    for name, values in surface.metrics.items():  # VTK: x fastest, point i + nx * j
        for i in range(nx):
            for j in range(ny):
                got, want = arrays[name][i + nx * j], values[i, j]
                assert got == want or (np.isnan(got) and np.isnan(want))
    points = _vtk_array(root.find("StructuredGrid/Piece/Points/DataArray")).reshape(-1, 3)
    assert points[1 + nx * 2].tolist() == [surface.x[1], surface.y[2], surface["loss"][1, 2]]


def test_vts_writes_the_trajectory_as_a_polyline(files, tmp_path):
    written = export(files["trajectory"], tmp_path / "t.vts", format="vts")
    assert written[1] == str(tmp_path / "t_path.vtu")
    mesh = meshio.read(written[1])
    stored = read_trajectory(files["trajectory"])
    np.testing.assert_array_equal(mesh.points[:, :2], stored["coords"])
    np.testing.assert_array_equal(mesh.points[:, 2], stored["projected"]["loss"])
    np.testing.assert_array_equal(mesh.point_data["true_loss"], stored["true"]["loss"])
    np.testing.assert_array_equal(mesh.point_data["step"], stored["steps"])
    assert len(mesh.cells_dict["line"]) == len(stored["coords"]) - 1


def _plotly_traces(path) -> list[dict]:
    text = open(path, encoding="utf-8").read()
    start = text.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    decoder = json.JSONDecoder()
    _, end = decoder.raw_decode(text, start + len(text[start:]) - len(text[start:].lstrip()))
    rest = text[end:]
    offset = end + len(rest) - len(rest.lstrip().lstrip(",").lstrip())
    data, _ = decoder.raw_decode(text, offset)
    return data


def _values(value) -> np.ndarray:
    if isinstance(value, dict) and "bdata" in value:  # plotly's typed-array encoding
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        if shape:
            array = array.reshape([int(s) for s in re.split(r",\s*", str(shape))])
        return array.astype(np.float64)
    return np.asarray(value, dtype=np.float64)


def test_html_is_self_contained_and_holds_the_file_values(files, tmp_path):
    out = tmp_path / "t.html"
    export_html(files["trajectory"], out)
    text = out.read_text(encoding="utf-8")
    assert re.search(r"<script[^>]*\bsrc=", text) is None  # nothing loaded from elsewhere
    assert len(text) > 1_000_000  # plotly.js inlined
    traces = {(t["type"], t.get("name")): t for t in _plotly_traces(out)}
    surface = load_surface(files["trajectory"])
    z = _values(traces[("surface", "surface")]["z"])
    np.testing.assert_array_equal(z, surface["loss"].T)
    np.testing.assert_array_equal(_values(traces[("contour", "contour")]["z"]), surface["loss"].T)
    stored = read_trajectory(files["trajectory"])
    path = traces[("scatter", "path")]
    np.testing.assert_array_equal(_values(path["x"]), stored["coords"][:, 0])
    np.testing.assert_array_equal(_values(path["y"]), stored["coords"][:, 1])


def test_html_of_paths_holds_the_loss_along_each(files, tmp_path):
    out = tmp_path / "p.html"
    export_html(files["paths"], out)
    traces = {t.get("name"): t for t in _plotly_traces(out)}
    for kind, result in load_paths(files["paths"]).items():
        np.testing.assert_array_equal(_values(traces[kind]["y"]), result.loss)
        np.testing.assert_array_equal(_values(traces[kind]["x"]), result.t)


@pytest.mark.parametrize("which", ["trajectory", "paths", "plane"])
def test_gif_has_one_frame_per_step(files, tmp_path, which):
    out = tmp_path / f"{which}.gif"
    export_gif(files[which], out, fps=10, dpi=40)
    expected = {
        "trajectory": len(read_trajectory(files["trajectory"])["steps"]),
        "paths": 7,
        "plane": len(load_surface(files["plane"]).y),
    }[which]
    with PIL_Image.open(out) as image:
        assert image.n_frames == expected


def test_missing_extra_says_how_to_install(files, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(RuntimeError, match="pip install plotly"):
        export_html(files["plane"], tmp_path / "x.html")
    with pytest.raises(ValueError, match="format must be one of"):
        export(files["plane"], tmp_path / "x", format="obj")
