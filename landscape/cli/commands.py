"""The subcommands: one ``cmd_<name>(args)`` each, over the public API."""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np
import torch

from .. import demo as demo_module
from .. import distributed
from ..limits import MAX_DRAWS, check_limit
from ..results import format_estimate
from ._common import (
    UserError,
    _check_out,
    _checkpoint_objective,
    _data,
    _holding_out,
    _loss_options,
    _measure_settings,
    _model,
    _objective,
    _print,
    _sources,
    _surface_directions,
    _warn_nonfinite,
    resolve_callable,
)
from ._plots import plot_hessian_file, plot_paths_file, plot_tracking_file
from ._resume import command_identity, groups_to_compute
from .compare import cmd_compare  # noqa: F401  (found here by the parser's _command)


def cmd_surface(args: argparse.Namespace) -> None:
    from ..surface import compute_surface, parse_range

    _check_out(args, args.out)  # before any work: a directory, read-only folder, held file
    xs = parse_range(args.x)
    ys = parse_range(args.y) if args.y else None
    if args.dir_type is None:
        args.dir_type = "states" if args.directions == "interp" else "weights"
    model = _model(args, args.checkpoint)
    data = _data(args.data)
    directions = _surface_directions(args, model, data, 1 if ys is None else 2)
    surface = compute_surface(
        model, data, directions, xs, ys,
        **_loss_options(args), batch_size=args.batch_size, path=args.out,
        overwrite=args.overwrite, progress=not args.quiet, precision=args.precision,
        points_per_pass=args.points_per_pass, convexity=args.convexity,
        cache_data=not args.no_cache_data, train_mode=args.train_mode, params=args.params,
        attrs=_sources(args), allow_nonfinite=args.allow_nonfinite,
    )  # fmt: skip
    if not args.quiet:
        loss = surface["loss"]
        span = (
            f"loss {np.nanmin(loss):.4g} .. {np.nanmax(loss):.4g}"
            if np.isfinite(loss).any()
            else ""
        )
        _print(f"{surface.path}: {loss.size} points, {span}")
    _warn_nonfinite("surface", surface.metrics)


def cmd_plot(args: argparse.Namespace) -> None:
    from matplotlib.figure import Figure

    from .. import plotting
    from ..surface import load_surface

    if args.kind in ("density", "eigenvalues", "blocks"):
        return plot_hessian_file(args)
    if args.kind in ("trajectory", "paths"):
        return plot_paths_file(args)
    if args.kind == "tracking":
        return plot_tracking_file(args)
    surface = load_surface(args.file)
    if args.kind != "line" and not surface.is_2d:
        raise UserError(f"{args.file} holds a line; use --kind line")
    if args.kind == "line" and surface.is_2d:
        raise UserError(
            f"{args.file} holds a plane; use --kind contour, contourf, heatmap or surface3d"
        )
    options: dict[str, Any] = {"log": args.log}
    if args.kind != "line":
        options.update(vmin=args.vmin, vmax=args.vmax)
    if args.levels is not None and args.kind in ("contour", "contourf"):
        options["levels"] = args.levels
    fig = Figure(figsize=(5, 4), layout="constrained")
    with plotting.landscape_style():
        if args.kind == "surface3d":
            ax = plotting.plot_surface3d(
                surface, args.metric, fig.add_subplot(projection="3d"), **options
            )
        elif args.kind == "line":
            ax = plotting.plot_line(
                surface, (args.metric, "accuracy"), fig.add_subplot(), **options
            )
        else:
            draw = {"contour": plotting.plot_contour, "contourf": plotting.plot_contourf,
                    "heatmap": plotting.plot_heatmap}[args.kind]  # fmt: skip
            ax = draw(surface, args.metric, fig.add_subplot(), **options)
        if args.title is not None:
            ax.set_title(args.title)
        plotting.save_figure(fig, args.output)
    print(args.output)


def cmd_info(args: argparse.Namespace) -> None:
    from ..storage import describe_file

    print(describe_file(args.file))


@_holding_out
def cmd_hessian(args: argparse.Namespace) -> None:
    from .. import hessian

    wanted = ["eigen", "extremes"] + ["trace"] * args.trace + ["density"] * args.density
    wanted += ["blocks"] * args.per_block
    check_limit("trace probes", args.num_probes, MAX_DRAWS)  # before any work
    check_limit("density probes", args.density_probes, MAX_DRAWS)
    block_options = _block_options(args)
    if args.plan:
        from ._plan import print_plans

        print_plans(args)
        return
    todo = groups_to_compute(args, args.out, [f"hessian/{name}" for name in wanted])
    if not todo:
        return
    todo = [name.removeprefix("hessian/") for name in todo]
    objective = _objective(args)
    dtype = torch.float64 if args.float64 else None
    common = dict(seed=args.seed, dtype=dtype, progress=not args.quiet, params=args.params)
    source = objective
    hvp: Any = getattr(args, "hvp", "exact")  # absent unless given: files of 0.2 still resume
    if hvp != "exact":
        source = hessian.HessianOperator(objective, params=args.params, dtype=dtype, hvp=hvp)
        _print(f"Hessian-vector products: {source.hvp} (relative error {source.hvp_error})")
    one = dict(common, dtype=None, params=None) if source is not objective else common
    eigen = extremes = trace = density = blocks = None

    def save(**part: Any) -> None:  # each result as it comes: a kill loses the job in flight
        if distributed.rank() == 0:
            (name,) = part
            hessian.save_hessian(path=args.out, overwrite=args.overwrite, **part,
                                 attrs=_recorded(args, f"hessian/{name}"))  # fmt: skip

    if "eigen" in todo:
        eigen = hessian.hessian_eigenpairs(
            source, k=args.num_eigenpairs, which=args.which, max_memory=args.max_memory, **one
        )
        save(eigen=eigen)
    if "extremes" in todo:
        extremes = hessian.extreme_eigenvalues(source, **one)
        save(extremes=extremes)
    cap = {"max_memory": args.max_memory}
    if "trace" in todo:
        trace = hessian.hessian_trace(source, num_probes=args.num_probes, **one, **cap)
        save(trace=trace)
    if "density" in todo:
        density = hessian.spectral_density(source, num_probes=args.density_probes, **one, **cap)
        save(density=density)
    if "blocks" in todo:
        blocks = hessian.block_curvature(
            objective, num_probes=args.num_probes, **common, **block_options, **cap
        )
        save(blocks=blocks)
    if eigen is not None:
        values = ", ".join(f"{v:.6g}" for v in eigen.eigenvalues)
        _print(f"eigenvalues ({args.which}): {values}  [max residual {eigen.residuals.max():.2g}]")
    if extremes is not None:
        _print(f"lambda_max {extremes.lambda_max:.6g}, lambda_min {extremes.lambda_min:.6g}, "
               f"|lambda_min/lambda_max| {extremes.ratio:.4g}")  # fmt: skip
    if trace is not None:
        _print(f"trace {format_estimate(trace.value, trace.stderr)} ({trace.method})")
    if blocks is not None:
        _print(blocks.table())
        if blocks.off_block is not None:
            share = format_estimate(blocks.off_block["share"], blocks.off_block["stderr"])
            _print(f"off-block share of the whole Hessian: {share}")
    _print(args.out)
    # of what this run computed (a rerun computes only what is missing)
    found: dict[str, Any] = {}
    if eigen is not None:
        found["eigenvalues"] = eigen.eigenvalues
    if extremes is not None:
        found["lambda_max"] = extremes.lambda_max
    if trace is not None:
        found["trace"] = trace.value
    _warn_nonfinite("hessian", found)


# --per-block's counts: {option: (the flag it needs, block_curvature's keyword, its default)}
_BLOCK_COUNTS = {
    "off_block_probes": ("off_block", "num_off_block_probes", 50),
    "block_density_probes": ("block_density", "num_density_probes", 10),
    "block_lanczos_steps": ("block_density", "num_lanczos_steps", 80),
}


def _block_options(args: argparse.Namespace) -> dict[str, Any]:
    """``block_curvature``'s keywords from ``--off-block``, ``--block-density`` and their
    counts, checked before any work (each needs its flag, the flags ``--per-block``). The
    counts of a flag given are set on ``args`` (their defaults where not given), so that
    ``--off-block`` and ``--off-block --off-block-probes 50`` are one command to a rerun."""
    needs = {"off_block": "per_block", "block_density": "per_block"}
    needs.update({option: flag for option, (flag, _, _) in _BLOCK_COUNTS.items()})
    for option, flag in needs.items():
        if getattr(args, option) is not None and not getattr(args, flag):
            flag, given = (f"--{name.replace('_', '-')}" for name in (flag, option))
            raise UserError(f"expected {flag} with {given}, got {given} without {flag}")
    found = {"off_block": bool(args.off_block), "densities": bool(args.block_density)}
    for option, (flag, keyword, default) in _BLOCK_COUNTS.items():
        if getattr(args, flag):
            if getattr(args, option) is None:
                setattr(args, option, default)
            found[keyword] = getattr(args, option)
    for option in _BLOCK_COUNTS:
        if getattr(args, option) is not None:
            check_limit(option.replace("_", " "), getattr(args, option), MAX_DRAWS)
    return found


def _recorded(args: argparse.Namespace, group: str | None = None) -> dict[str, str]:
    """What a result group records of the command that made it (see ``_resume``)."""
    return {**_sources(args), "command": command_identity(args, group)}


@_holding_out
def cmd_sharpness(args: argparse.Namespace) -> None:
    from ..compare import DEFAULT_MEASURES
    from ..sharpness import save_sharpness, sharpness
    from ..sharpness.registry import route_settings

    names = args.metric or list(DEFAULT_MEASURES)
    todo = groups_to_compute(args, args.out, [f"sharpness/{name}" for name in names])
    if not todo:
        return
    names = [name.removeprefix("sharpness/") for name in todo]
    # every name and setting checked before any work, then one measure at a time, each
    # saved as it comes: a kill loses at most the measure in flight
    routed = route_settings(names, {"seed": args.seed, **_measure_settings(args)})
    objective = _objective(args)
    results = {}
    for name, options in routed.items():
        results[name] = sharpness(objective, [name], progress=not args.quiet, **options)[name]
        if distributed.rank() == 0:
            save_sharpness(results[name], args.out, overwrite=args.overwrite,
                           attrs=_recorded(args))  # fmt: skip
    for name, result in results.items():
        _print(f"{name:<22} {format_estimate(result.value, result.stderr)}")
    _warn_nonfinite("sharpness", {name: result.value for name, result in results.items()})


def cmd_demo(args: argparse.Namespace) -> None:
    demo_module.run_demo(args.out, progress=not args.quiet, readme=args.readme)


def cmd_trajectory(args: argparse.Namespace) -> None:
    from ..trajectory import trajectory_plane

    if len(args.checkpoints) < 3:
        raise UserError(f"a trajectory needs at least 3 checkpoints, got {len(args.checkpoints)}")
    if args.steps is not None and len(args.steps) != len(args.checkpoints):
        raise UserError(f"--steps needs one value per checkpoint ({len(args.checkpoints)}), "
                        f"got {len(args.steps)}")  # fmt: skip
    _check_out(args, args.out)
    objective = _checkpoint_objective(args, args.checkpoints[-1])
    states = [_model(args, path).state_dict() for path in args.checkpoints]
    result = trajectory_plane(
        objective, states, steps=args.steps, num_points=args.num_points, margin=args.margin,
        path=args.out, overwrite=args.overwrite, progress=not args.quiet,
    )  # fmt: skip
    ratio = ", ".join(f"{100 * v:.1f}%" for v in result.explained_variance)
    gap = np.abs(result.projected["loss"] - result.true["loss"]).max()
    _print(f"{args.out}: explained variance {ratio}; largest |true - projected| loss {gap:.4g}")


@_holding_out
def cmd_connect(args: argparse.Namespace) -> None:
    from ..paths import connect_checkpoints
    from ..storage.paths import save_paths

    if args.residual and args.align is None:
        raise UserError("expected --residual with --align, got --residual alone")
    kinds = ["line"] + ([args.curve] if args.curve != "line" else [])
    kinds += ["unaligned"] if args.align is not None else []
    todo = groups_to_compute(args, args.out, [f"paths/{k}" for k in kinds])
    if not todo:
        return
    if args.bn_reestimate and args.repair == "repair":
        raise UserError("expected --bn-reestimate or --repair repair, got both")
    objective = _checkpoint_objective(args, args.checkpoint_a)
    end = _model(args, args.checkpoint_b).state_dict()
    fit_objective = None
    reset_bn = args.bn_reestimate or args.repair == "reset_bn"
    if reset_bn and not args.train_mode:  # fit with batch statistics (Garipov)
        fit_objective = _checkpoint_objective(args, args.checkpoint_a, train_mode=True)
    connection = connect_checkpoints(
        objective, objective.base_state, end, curve=args.curve, t=args.num_points,
        bn_reestimate=args.bn_reestimate, repair=args.repair, align=args.align,
        align_seed=args.seed, residual=bool(args.residual), fit_objective=fit_objective,
        **({} if args.curve == "line" else
           {"num_steps": args.num_steps, "lr": args.lr, "seed": args.seed}),
    )  # fmt: skip
    made = {k: v for k, v in connection.paths.items() if f"paths/{k}" in todo}
    save_paths(made, args.out, overwrite=args.overwrite, attrs={"command": command_identity(args)})
    for kind, result in made.items():
        _print(f"{kind:<10} barrier {result.barrier:.4g} at t = {result.barrier_t:.3g}")
    _print(args.out)


def cmd_export(args: argparse.Namespace) -> None:
    from ..export import export

    for path in export(args.file, args.output, format=args.format, metric=args.metric):
        print(path)


def cmd_import_li(args: argparse.Namespace) -> None:
    from ..li_format import import_li

    _check_out(args, args.out)
    build = resolve_callable(args.model, demo_module.BUILTIN_MODELS, "--model")
    surface = import_li(args.surface, build(), dir_file=args.dir_file, dir_type=args.dir_type,
                        out=args.out, overwrite=args.overwrite)  # fmt: skip
    shape = " x ".join(str(len(a)) for a in (surface.x, surface.y) if a is not None)
    print(f"{args.out}: {shape} grid, metrics {', '.join(surface.metrics)}")


def cmd_correlate(args: argparse.Namespace) -> None:
    from ..correlate import correlate, write_correlation

    if not os.path.isfile(args.file):
        raise UserError(f"no such comparison file: {args.file}")
    if args.hparams is not None and not os.path.isfile(args.hparams):
        raise UserError(f"no such hyperparameter file: {args.hparams}")
    found = correlate(args.file, args.hparams, gap=args.gap, num_bootstrap=args.num_bootstrap,
                      seed=args.seed)  # fmt: skip
    write_correlation(found, args.out)
    print(found.to_markdown())
