"""The Hessian schema: ``/hessian/eigen``, ``/hessian/extremes``, ``/hessian/trace`` and
``/hessian/density`` groups of a landscape file (the layout of version 0.1, which still
loads), and ``/hessian/blocks`` (curvature per block, new in 0.2; off-block shares and
densities per block new in 0.3)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..results.base import Result
from ..results.hessian import (
    HVP_FIELDS,
    BlockCurvature,
    DensityResult,
    EigenResult,
    ExtremeEigenvalues,
    HessianResults,
    TraceResult,
)
from .groups import read_group, write_groups
from .registry import Schema, register, result_and_path

__all__ = ["PARTS", "save_hessian", "load_hessian"]

#: The parts of :class:`HessianResults`, each stored as its own group (and kind
#: ``hessian.<part>`` of :func:`landscape.storage.registry.load`).
PARTS: dict[str, type[Result]] = {
    "eigen": EigenResult,
    "trace": TraceResult,
    "density": DensityResult,
    "extremes": ExtremeEigenvalues,
    "blocks": BlockCurvature,
}

_EIGEN, _TRACE, _DENSITY = "hessian/eigen", "hessian/trace", "hessian/density"
_EXTREMES = "hessian/extremes"
_BLOCKS = "hessian/blocks"


def save_hessian(
    results: HessianResults | Result | None = None,
    path: str | os.PathLike | None = None,
    *,
    eigen: EigenResult | None = None,
    trace: TraceResult | None = None,
    density: DensityResult | None = None,
    extremes: ExtremeEigenvalues | None = None,
    blocks: BlockCurvature | None = None,
    overwrite: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Store Hessian results in a landscape HDF5 file (created if needed) under ``/hessian``:
    ``save_hessian(results, path)`` with a :class:`HessianResults` or one of its parts (an
    :class:`EigenResult`, ...), or the parts as keywords (``save_hessian(path=p, eigen=e)``,
    the 0.2 form; the 0.2 order ``save_hessian(p, eigen=e)`` still works, with a
    DeprecationWarning).

    Layout: ``/hessian/eigen`` (datasets ``eigenvalues``, ``eigenvectors``, ``residuals``),
    ``/hessian/trace`` (dataset ``samples``; attrs ``value``, ``stderr``, ``method``),
    ``/hessian/density`` (datasets ``grid``, ``density``, ``nodes``, ``weights``),
    ``/hessian/extremes`` (dataset ``residuals``; attrs ``lambda_max``, ``lambda_min``,
    ``ratio``; and each of these four ``hvp`` and ``hvp_error``, see
    :data:`~landscape.results.hessian.HVP_FIELDS`), ``/hessian/blocks`` (attrs: the
    settings, ``num_hvps`` and ``blocks``, the block names in order; with off-block shares
    also ``off_block_share`` and
    ``off_block_stderr`` of the whole Hessian, with densities the dataset ``js_distance``)
    with a group ``/hessian/blocks/<block>`` a block (attrs ``lambda_max``, ``trace``,
    ``trace_stderr``, ``converged``, ``num_params``, ``names``; with off-block shares also
    ``off_block_share``, ``off_block_stderr`` and the dataset ``off_block_samples``; with
    densities a group ``/hessian/blocks/<block>/density`` laid out as ``/hessian/density``);
    every group's attrs also hold ``num_hvps`` and every setting, provenance
    included (``model``, ``checkpoint_sha256``, ``data_sha256``, ``num_examples``,
    ``loss_name``, ...; ``eigen`` and ``extremes`` also ``converged``; ``eigen`` also
    ``names`` and ``shapes``). :func:`load_hessian` gives back results equal to these.
    ``attrs`` (e.g. the import strings of the model and data) are added to every group's
    attrs, over the settings of the same name, and are read back as settings.
    The groups are written together (:func:`~landscape.storage.groups.write_groups`): a
    run killed while saving leaves none of them, or each one whole.

    Raises:
        ValueError: nothing to save, a part given twice, a group exists and ``overwrite`` is
            false, or the file is not a landscape file.
        TypeError: no path, or ``results`` of another class.
    """
    results, path = result_and_path(results, path, "save_hessian")
    if path is None:
        raise TypeError("expected save_hessian(results, path), got no path")
    given = HessianResults(eigen, trace, density, extremes, blocks)
    parts = _parts(results)
    for part in parts:
        if getattr(given, part) is not None:
            raise ValueError(f"expected {part} once, got it in results and as {part}=")
    given = dataclasses.replace(given, **parts)
    eigen, trace, density = given.eigen, given.trace, given.density
    extremes, blocks = given.extremes, given.blocks
    if all(r is None for r in (eigen, trace, density, extremes, blocks)):
        raise ValueError("nothing to save: give eigen=, trace=, density=, extremes= or blocks=")
    extra = dict(attrs or {})
    groups: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    if eigen is not None:
        arrays = {k: getattr(eigen, k) for k in ("eigenvalues", "eigenvectors", "residuals")}
        group_attrs = {
            **eigen.settings,
            **extra,
            "num_hvps": eigen.num_hvps,
            "converged": eigen.converged,
            "names": list(eigen.names),
            "shapes": {n: list(s) for n, s in eigen.shapes.items()},
            **_hvp_attrs(eigen),
        }
        groups[_EIGEN] = (arrays, group_attrs)
    if trace is not None:
        group_attrs = {
            **trace.settings,
            **extra,
            "value": trace.value,
            "stderr": trace.stderr,
            "method": trace.method,
            "num_hvps": trace.num_hvps,
            **_hvp_attrs(trace),
        }
        arrays = {"samples": trace.samples}
        groups[_TRACE] = (arrays, group_attrs)
    if density is not None:
        groups[_DENSITY] = _density_group(density, extra)
    if extremes is not None:
        names = ("lambda_max", "lambda_min", "ratio", "num_hvps", "converged")
        group_attrs = {
            **extremes.settings,
            **extra,
            **{n: getattr(extremes, n) for n in names},
            **_hvp_attrs(extremes),
        }
        arrays = {"residuals": extremes.residuals}
        groups[_EXTREMES] = (arrays, group_attrs)
    if blocks is not None:
        groups.update(_block_groups(blocks, extra))
    write_groups(path, groups, overwrite=overwrite)


def _hvp_attrs(result: Result) -> dict[str, Any]:
    """The attrs of :data:`~landscape.results.hessian.HVP_FIELDS`."""
    return {name: getattr(result, name) for name in HVP_FIELDS}


def _pop_hvp(attrs: dict[str, Any]) -> dict[str, Any]:
    """The :data:`~landscape.results.hessian.HVP_FIELDS` popped from a group's attrs (none
    in files written before them: the result keeps its defaults, exact products)."""
    return {name: attrs.pop(name) for name in HVP_FIELDS if name in attrs}


def _parts(results: HessianResults | Result | None) -> dict[str, Any]:
    """``{part: result}`` of a HessianResults or of one of its parts (each value of the
    class ``PARTS`` names)."""
    if results is None:
        return {}
    if isinstance(results, HessianResults):
        return {p: r for p in PARTS if (r := getattr(results, p)) is not None}
    for part, cls in PARTS.items():
        if isinstance(results, cls):
            return {part: results}
    raise TypeError(
        f"expected HessianResults or one of {[c.__name__ for c in PARTS.values()]}, "
        f"got {type(results).__name__}"
    )


def _density_group(
    density: DensityResult, extra: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A density's ``(arrays, attrs)``, as :func:`write_groups` takes them."""
    arrays = {k: getattr(density, k) for k in ("grid", "density", "nodes", "weights")}
    attrs = {**density.settings, **extra, "num_hvps": density.num_hvps, **_hvp_attrs(density)}
    return arrays, attrs


def _density_result(found: tuple[dict[str, np.ndarray], dict[str, Any]]) -> DensityResult:
    """The density that :func:`_density_group` stored."""
    arrays, attrs = found
    num_hvps = attrs.pop("num_hvps")
    hvp = _pop_hvp(attrs)
    grid, density, nodes, weights = (arrays[k] for k in ("grid", "density", "nodes", "weights"))
    return DensityResult(grid, density, nodes, weights, num_hvps, attrs, **hvp)


def _block_groups(
    blocks: BlockCurvature, extra: dict[str, Any]
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """``/hessian/blocks`` and a group a block, as :func:`write_groups` takes them."""
    bad = [b for b in blocks.values if not b or "/" in b]
    if bad:
        raise ValueError(f"block names must be non-empty and hold no '/', got {bad}")
    group_attrs = {
        **blocks.settings,
        **extra,
        "num_hvps": blocks.num_hvps,
        "blocks": list(blocks.values),
    }
    if blocks.off_block is not None:
        group_attrs.update({f"off_block_{k}": v for k, v in blocks.off_block.items()})
    arrays = {} if blocks.js_distance is None else {"js_distance": blocks.js_distance}
    groups: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {_BLOCKS: (arrays, group_attrs)}
    for block, values in blocks.values.items():
        block_attrs = {
            **values,
            "converged": blocks.converged[block],
            "num_params": blocks.num_params[block],
            "names": list(blocks.names[block]),
        }
        samples = blocks.off_block_samples
        arrays = {} if samples is None else {"off_block_samples": samples[block]}
        groups[f"{_BLOCKS}/{block}"] = (arrays, block_attrs)
        if blocks.densities is not None:
            groups[f"{_BLOCKS}/{block}/density"] = _density_group(blocks.densities[block], {})
    return groups


def _load_blocks(path: str | os.PathLike) -> BlockCurvature | None:
    if (found := _read(path, _BLOCKS)) is None:
        return None
    arrays, settings = found
    order, num_hvps = settings.pop("blocks"), settings.pop("num_hvps")
    extra: dict[str, Any] = {}
    if "off_block_share" in settings:  # new in 0.3, with the samples and each block's share
        extra["off_block"] = {k: settings.pop(f"off_block_{k}") for k in ("share", "stderr")}
        extra["off_block_samples"] = {}
    if "js_distance" in arrays:  # new in 0.3, with each block's density
        extra["js_distance"], extra["densities"] = arrays["js_distance"], {}
    values, names, num_params, converged = {}, {}, {}, {}
    keys = ("lambda_max", "trace", "trace_stderr")
    for block in order:
        block_arrays, attrs = read_group(path, f"{_BLOCKS}/{block}")
        names[block] = tuple(attrs.pop("names"))
        num_params[block] = attrs.pop("num_params")
        converged[block] = attrs.pop("converged")
        values[block] = {k: attrs[k] for k in keys}
        if "off_block_samples" in extra:
            extra["off_block_samples"][block] = block_arrays["off_block_samples"]
            values[block].update({k: attrs[k] for k in ("off_block_share", "off_block_stderr")})
        if "densities" in extra:
            found = read_group(path, f"{_BLOCKS}/{block}/density")
            extra["densities"][block] = _density_result(found)
    return BlockCurvature(values, names, num_params, converged, num_hvps, settings, **extra)


def _read(
    path: str | os.PathLike, name: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    try:
        return read_group(path, name)
    except KeyError:
        return None


def load_hessian(path: str | os.PathLike) -> HessianResults:
    """Read back what :func:`save_hessian` stored (also from files of version 0.1).

    Raises:
        FileNotFoundError: no file; ValueError: not a landscape file;
        KeyError: the file holds no Hessian results.
    """
    eigen = trace = density = extremes = None
    blocks = _load_blocks(path)
    if (found := _read(path, _EIGEN)) is not None:
        arrays, attrs = found
        names = tuple(attrs.pop("names"))
        shapes = {n: tuple(s) for n, s in attrs.pop("shapes").items()}
        num_hvps, converged = attrs.pop("num_hvps"), attrs.pop("converged")
        hvp = _pop_hvp(attrs)
        eigen = EigenResult(
            arrays["eigenvalues"],
            arrays["eigenvectors"],
            arrays["residuals"],
            num_hvps,
            converged,
            names,
            shapes,
            attrs,
            **hvp,
        )
    if (found := _read(path, _TRACE)) is not None:
        arrays, attrs = found
        value, stderr = attrs.pop("value"), attrs.pop("stderr")
        method, num_hvps = attrs.pop("method"), attrs.pop("num_hvps")
        hvp = _pop_hvp(attrs)
        trace = TraceResult(value, stderr, num_hvps, method, arrays["samples"], attrs, **hvp)
    if (found := _read(path, _DENSITY)) is not None:
        density = _density_result(found)
    if (found := _read(path, _EXTREMES)) is not None:
        arrays, attrs = found
        lambda_max, lambda_min, ratio = (
            attrs.pop(n) for n in ("lambda_max", "lambda_min", "ratio")
        )
        num_hvps, converged = attrs.pop("num_hvps"), attrs.pop("converged")
        hvp = _pop_hvp(attrs)
        extremes = ExtremeEigenvalues(
            lambda_max, lambda_min, ratio, arrays["residuals"], num_hvps, converged, attrs, **hvp
        )
    if all(r is None for r in (eigen, trace, density, extremes, blocks)):
        raise KeyError(f"{os.fspath(path)} holds no Hessian results (no /hessian group)")
    return HessianResults(
        eigen=eigen, trace=trace, density=density, extremes=extremes, blocks=blocks
    )


def _load_part(part: str) -> Callable[[str | os.PathLike], Result]:
    """The reader of one part (kind ``hessian.<part>``)."""

    def read(path: str | os.PathLike) -> Result:
        found = getattr(load_hessian(path), part)
        if found is None:
            raise KeyError(f"{os.fspath(path)} holds no /hessian/{part}")
        return found

    return read


register(Schema(
    "hessian", (HessianResults,), save_hessian, load_hessian, lambda f: "hessian" in f,
    parts=tuple(f"hessian.{p}" for p in PARTS),
))  # fmt: skip


def _holds(group: str) -> Callable[[Any], bool]:
    """Whether a file holds ``group``."""
    return lambda f: group in f


for _part, _cls in PARTS.items():
    register(Schema(
        f"hessian.{_part}", (_cls,), save_hessian, _load_part(_part), _holds(f"hessian/{_part}")
    ))  # fmt: skip
