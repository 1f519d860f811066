"""``landscape info``: a readable summary of a landscape file, checked as it is read."""

from __future__ import annotations

import os

import h5py
import numpy as np

from .checksum import CHECKSUM_ATTR, damaged_groups
from .codec import decode_attrs
from .files import FORMAT, PROVENANCE_ATTRS, STAGING, _text, open_landscape_file

__all__ = ["describe_file"]


def _provenance_lines(group: h5py.Group) -> list[str]:
    """The provenance attributes of ``group``'s subgroups: once when they all agree, else
    subgroup by subgroup (subgroups without any, as version 0.1 wrote, are left out)."""
    found = {}
    for name, child in group.items():
        if isinstance(child, h5py.Group):
            attrs = decode_attrs(child.attrs)
            values = {k: attrs[k] for k in PROVENANCE_ATTRS if k in attrs}
            if values:
                found[name] = values
    distinct = {repr(sorted(v.items())) for v in found.values()}
    blocks = [("", next(iter(found.values())))] if len(distinct) == 1 else list(found.items())
    lines = []
    for name, values in blocks:
        indent = "    "
        if name:
            lines.append(f"    /{group.name.lstrip('/')}/{name}:")
            indent = "      "
        width = max(map(len, values))
        lines += [f"{indent}{key:<{width}}  {value}" for key, value in values.items()]
    return lines


def describe_file(path: str | os.PathLike) -> str:
    """A readable summary of a landscape file: attributes, grid, completeness, groups, and
    where each group of results came from (:data:`PROVENANCE_ATTRS`)."""
    from .surface import check_surface_schema, load_surface_arrays

    lines = [os.fspath(path)]
    with open_landscape_file(path) as f:
        if _text(f.attrs["format"]) == FORMAT:
            check_surface_schema(f, os.fspath(path))
            load_surface_arrays(path)  # checks the computed values against their checksum
        damaged = damaged_groups(f)
        if damaged:
            raise ValueError(
                f"{os.fspath(path)} is damaged: /{damaged[0]} does not match its checksum "
                f"{CHECKSUM_ATTR}"
            )
        attrs = decode_attrs(f.attrs)
        width = max(map(len, attrs), default=0)
        lines += [f"  {key:<{width}}  {value}" for key, value in sorted(attrs.items())]
        if "coords" in f and "computed" in f and "metrics" in f:
            shape = " x ".join(str(len(f["coords"][a])) for a in ("x", "y") if a in f["coords"])
            done = f["computed"][()]
            lines.append(f"  grid: {shape} points, {int(done.sum())} of {done.size} computed")
            for name, ds in f["metrics"].items():
                values = ds[()]
                values = values[done] if values.shape == done.shape else values
                finite = values[np.isfinite(values)]
                span = f"{finite.min():.6g} .. {finite.max():.6g}" if finite.size else "none finite"
                lines.append(f"  metric {name}: {span}")
        for name in f:
            if name not in ("coords", "metrics", "computed", "directions", STAGING):
                obj = f[name]
                children = ", ".join(sorted(obj)) if isinstance(obj, h5py.Group) else ""
                lines.append(f"  /{name}: {children}")
                if isinstance(obj, h5py.Group):
                    lines += _provenance_lines(obj)
    return "\n".join(lines)
