"""The ``landscape`` command line: a thin argparse front end over the public API.

User errors (missing file, bad range, unresolvable import string, model/checkpoint
mismatch) print one line on stderr and exit with status 2; no traceback (``--debug``
shows it). Ctrl-C prints one line and exits with status 130; the run resumes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from . import demo as demo_module
from . import distributed
from .checkpoint import file_sha256, load_checkpoint
from .losses import LOSS_REDUCTIONS, LOSSES
from .results import format_estimate

RANGE_OPTIONS = ("--x", "--y")
NORMS = ("filter", "layer", "weight", "none")
_NUMBER_RANGE = re.compile(r"^-[0-9.]")


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line."""


def _join_negative_ranges(argv: Sequence[str]) -> list[str]:
    """``--x -1:1:51`` -> ``--x=-1:1:51``: argparse would take ``-1:1:51`` for a flag."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in RANGE_OPTIONS and i + 1 < len(argv) and _NUMBER_RANGE.match(argv[i + 1]):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def resolve_callable(spec: str, builtins: dict[str, Callable[..., Any]], what: str) -> Callable:
    """A callable from a built-in name, ``package.module:callable`` or ``path/file.py:callable``.

    Raises:
        UserError: if it does not resolve.
    """
    if spec in builtins:
        return builtins[spec]
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise UserError(
            f"{what} must be a built-in name ({', '.join(sorted(builtins))}), "
            f"package.module:callable or path/file.py:callable; got {spec!r}"
        )
    if module_name.endswith(".py") or os.sep in module_name:
        if not os.path.isfile(module_name):
            raise UserError(f"{what}: no such file {module_name!r}")
        name = "_landscape_user_" + re.sub(r"\W", "_", os.path.abspath(module_name))
        module_spec = importlib.util.spec_from_file_location(name, module_name)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:  # the user's file: report it in one line
            raise UserError(f"{what}: importing {module_name} failed: {err!r}") from None
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:  # as `python -m` would
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UserError(f"{what}: cannot import {module_name!r} ({err})") from None
    target = getattr(module, attr, None)
    if not callable(target):
        raise UserError(f"{what}: {module_name!r} has no callable {attr!r}")
    return target


def _device(name: str) -> torch.device:
    if name == "auto":
        if distributed.is_distributed():  # under torchrun: this rank's own device
            if _cuda_ranks():
                return torch.device("cuda", torch.cuda.current_device())
            return torch.device("cpu")
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def _cuda_ranks() -> bool:
    return torch.cuda.is_available() and torch.distributed.get_backend() == "nccl"


def _print(*values: Any) -> None:
    """Print on rank 0 only (every rank runs the same command under torchrun)."""
    if distributed.rank() == 0:
        print(*values)


def _model(args: argparse.Namespace, checkpoint: str) -> nn.Module:
    build = resolve_callable(args.model, demo_module.BUILTIN_MODELS, "--model")
    model = build()
    if not isinstance(model, nn.Module):
        raise UserError(f"--model {args.model} returned a {type(model).__name__}, not an nn.Module")
    if not os.path.isfile(checkpoint):
        raise UserError(f"no such checkpoint file: {checkpoint}")
    return load_checkpoint(model, checkpoint).to(_device(args.device)).eval()


def _data(spec: str) -> Any:
    return resolve_callable(spec, demo_module.BUILTIN_DATA, "--data")()


def _loss_options(args: argparse.Namespace) -> dict[str, Any]:
    """``loss`` and ``loss_reduction`` from ``--loss`` and ``--loss-reduction``."""
    loss = args.loss
    if loss not in LOSSES:
        loss = resolve_callable(loss, dict(LOSSES), "--loss")
    return {"loss": loss, "loss_reduction": args.loss_reduction}


# ---------------------------------------------------------------- subcommands
def _random_directions(args: argparse.Namespace, model: nn.Module, num: int) -> Any:
    """Random directions, with ``--x-norm``/``--y-norm`` when the two axes differ."""
    from .directions import Directions, random_direction, random_directions

    x_norm, y_norm = args.x_norm or args.norm, args.y_norm or args.norm
    options = dict(ignore=args.ignore, dir_type=args.dir_type)
    if num == 1 or x_norm == y_norm:
        return random_directions(model, num=num, norm=x_norm, seed=args.seed,
                                 orthogonalize=args.orthogonalize, params=args.params,
                                 **options)  # fmt: skip
    if args.orthogonalize:
        raise UserError("--orthogonalize needs one normalization; drop --x-norm/--y-norm")
    generator = torch.Generator().manual_seed(args.seed)  # the draws of random_directions
    x = random_direction(model, norm=x_norm, generator=generator, params=args.params, **options)
    y = random_direction(model, norm=y_norm, generator=generator, params=args.params, **options)
    settings = dict(options, norm=x_norm, x_norm=x_norm, y_norm=y_norm, seed=args.seed)
    return Directions(x, y, kind="random", settings=settings)


def _surface_directions(args: argparse.Namespace, model: nn.Module, data: Any, num: int) -> Any:
    """The directions asked for by ``--directions`` (or stored in ``--dir-file``)."""
    from .directions import Directions, interpolation_direction, pca_directions
    from .storage import load_directions

    if args.dir_file:
        if args.directions != "random":
            raise UserError("--dir-file replaces --directions; give one of them")
        stored = load_directions(args.dir_file)
        if len(stored) < num:
            raise UserError(
                f"--dir-file {args.dir_file} holds {len(stored)} direction(s); "
                f"this surface needs {num}"
            )
        settings = {"dir_file": os.path.abspath(args.dir_file)}
        return Directions(stored[0], stored[1] if num == 2 else None, kind="file",
                          settings=settings)  # fmt: skip
    if args.directions == "random":
        return _random_directions(args, model, num)
    if args.directions == "interp":
        if not args.target:
            raise UserError("--directions interp needs --target CKPT2")
        end = _model(args, args.target)
        x = interpolation_direction(model, end, dir_type=args.dir_type, params=args.params)
        y = _random_directions(args, model, 1).x if num == 2 else None
        settings = {"dir_type": args.dir_type, "target_sha256": file_sha256(args.target)}
        x_end = {n: t.detach() for n, t in end.state_dict().items() if n in x}
        return Directions(x, y, kind="interpolation", settings=settings, x_end=x_end)
    if args.directions == "pca":
        if not args.trajectory:
            raise UserError("--directions pca needs --trajectory CKPT [CKPT ...]")
        states = [_model(args, path).state_dict() for path in args.trajectory]
        return pca_directions(states, model, num=num, ignore=args.ignore)
    from .hessian import hessian_directions

    if os.path.exists(args.out) and not args.overwrite:
        stored = load_directions(args.out)  # resume with the directions already found
        if len(stored) < num:
            raise UserError(
                f"{args.out} holds no Hessian directions to resume from; "
                "use another --out or --overwrite"
            )
        return Directions(stored[0], stored[1] if num == 2 else None, kind="hessian",
                          settings={"seed": args.seed})  # fmt: skip
    from .evaluate import Objective

    objective = Objective(model, data, **_loss_options(args), batch_size=args.batch_size,
                          train_mode=args.train_mode)  # fmt: skip
    top = hessian_directions(objective, seed=args.seed, params=args.params,
                             progress=not args.quiet)  # fmt: skip
    return Directions(top[0], top[1] if num == 2 else None, kind="hessian",
                      settings={"seed": args.seed})  # fmt: skip


def cmd_surface(args: argparse.Namespace) -> None:
    from .storage import check_output
    from .surface import compute_surface, parse_range

    check_output(args.out)  # before any work: a directory, read-only folder, held file
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
        attrs=_sources(args),
    )  # fmt: skip
    if not args.quiet:
        loss = surface["loss"]
        span = (
            f"loss {np.nanmin(loss):.4g} .. {np.nanmax(loss):.4g}"
            if np.isfinite(loss).any()
            else ""
        )
        _print(f"{surface.path}: {loss.size} points, {span}")


def cmd_plot(args: argparse.Namespace) -> None:
    from matplotlib.figure import Figure

    from . import plotting
    from .surface import load_surface

    if args.kind in ("density", "eigenvalues"):
        return _plot_hessian(args)
    if args.kind in ("trajectory", "paths"):
        return _plot_paths_file(args)
    if args.kind == "tracking":
        return _plot_tracking_file(args)
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


def _plot_hessian(args: argparse.Namespace) -> None:
    from matplotlib.figure import Figure

    from . import plotting
    from .hessian import load_hessian

    results = load_hessian(args.file)
    fig = Figure(figsize=(5, 4), layout="constrained")
    with plotting.landscape_style():
        if args.kind == "density":
            if results.density is None:
                raise UserError(f"{args.file} has no spectral density; run hessian --density")
            plotting.plot_spectral_density(
                results.density.grid, results.density.density, fig.add_subplot()
            )
        else:
            if results.eigen is None:
                raise UserError(f"{args.file} has no eigenvalues")
            plotting.plot_eigenvalues(results.eigen.eigenvalues, fig.add_subplot())
        plotting.save_figure(fig, args.output)
    print(args.output)


def cmd_info(args: argparse.Namespace) -> None:
    from .storage import describe_file

    print(describe_file(args.file))


def _refuse_existing(path: str, groups: list[str], overwrite: bool) -> None:
    """Stop before any work when results would be overwritten without --overwrite, or
    when ``path`` cannot be written (a directory, a read-only folder, a file that another
    run is writing)."""
    from .storage import check_output, existing_groups

    check_output(path)
    taken = [] if overwrite else existing_groups(path, groups)
    if taken:
        raise UserError(f"{path} already has /{taken[0]}; pass --overwrite to replace it")


def _objective(args: argparse.Namespace) -> Any:
    """The checkpoint's objective; under torchrun each rank keeps a share of the data."""
    from .evaluate import Objective

    model = _model(args, args.checkpoint)
    return Objective(model, _data(args.data), **_loss_options(args), batch_size=args.batch_size,
                     train_mode=args.train_mode, shard_data=True)  # fmt: skip


def _sources(args: argparse.Namespace) -> dict[str, str]:
    """What the command line names, recorded with its results: the model and data as given
    (over the model's class name) and the checkpoint's path."""
    return {"model": _spec(args.model), "data": _spec(args.data),
            "checkpoint_path": args.checkpoint}  # fmt: skip


def _spec(spec: str) -> str:
    """An import string as recorded: ``./m.py:f`` and ``m.py:f`` name one model."""
    module_name, sep, attr = spec.rpartition(":")
    if sep and (module_name.endswith(".py") or os.sep in module_name):
        return f"{os.path.normpath(module_name)}:{attr}"
    return spec


def cmd_hessian(args: argparse.Namespace) -> None:
    from . import hessian

    wanted = ["eigen", "extremes"] + ["trace"] * args.trace + ["density"] * args.density
    wanted += ["blocks"] * args.per_block
    _refuse_existing(args.out, [f"hessian/{name}" for name in wanted], args.overwrite)
    objective = _objective(args)
    dtype = torch.float64 if args.float64 else None
    common = dict(seed=args.seed, dtype=dtype, progress=not args.quiet, params=args.params)
    eigen = hessian.hessian_eigenpairs(objective, k=args.top_k, which=args.which, **common)
    extremes = hessian.extreme_eigenvalues(objective, **common)
    trace = density = None
    if args.trace:
        trace = hessian.hessian_trace(objective, num_probes=args.num_probes, **common)
    if args.density:
        density = hessian.spectral_density(objective, num_probes=args.density_probes, **common)
    blocks = None
    if args.per_block:
        blocks = hessian.block_curvature(objective, num_probes=args.num_probes, **common)
    if distributed.rank() == 0:
        hessian.save_hessian(args.out, eigen=eigen, trace=trace, density=density,
                             extremes=extremes, blocks=blocks, overwrite=args.overwrite,
                             attrs=_sources(args))  # fmt: skip
    values = ", ".join(f"{v:.6g}" for v in eigen.eigenvalues)
    _print(f"eigenvalues ({args.which}): {values}  [max residual {eigen.residuals.max():.2g}]")
    _print(f"lambda_max {extremes.lambda_max:.6g}, lambda_min {extremes.lambda_min:.6g}, "
          f"|lambda_min/lambda_max| {extremes.ratio:.4g}")  # fmt: skip
    if trace is not None:
        _print(f"trace {format_estimate(trace.value, trace.stderr)} ({trace.method})")
    if blocks is not None:
        _print(blocks.table())
    _print(args.out)


def _measure_settings(args: argparse.Namespace) -> dict[str, Any]:
    names = ("rho", "eps", "num_samples", "target", "params")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def cmd_sharpness(args: argparse.Namespace) -> None:
    from .compare import DEFAULT_MEASURES
    from .sharpness import save_sharpness, sharpness

    names = args.metric or list(DEFAULT_MEASURES)
    _refuse_existing(args.out, [f"sharpness/{name}" for name in names], args.overwrite)
    objective = _objective(args)
    results = sharpness(objective, names, seed=args.seed, progress=not args.quiet,
                        **_measure_settings(args))  # fmt: skip
    if distributed.rank() == 0:
        save_sharpness(args.out, results, overwrite=args.overwrite, attrs=_sources(args))
    for name, result in results.items():
        _print(f"{name:<22} {format_estimate(result.value, result.stderr)}")


def cmd_compare(args: argparse.Namespace) -> None:
    from .compare import DEFAULT_MEASURES, compare_checkpoints, plot_comparison, write_tables
    from .surface import parse_range

    build = resolve_callable(args.model, demo_module.BUILTIN_MODELS, "--model")
    missing = [c for c in args.checkpoints if not os.path.isfile(c)]
    if missing:
        raise UserError(f"no such checkpoint file: {missing[0]}")
    labels = [os.path.splitext(os.path.basename(c))[0] for c in args.checkpoints]
    if len(set(labels)) != len(labels):
        labels = list(args.checkpoints)
    x = parse_range(args.x)
    os.makedirs(args.out, exist_ok=True)
    comparison = compare_checkpoints(
        build().to(_device(args.device)), dict(zip(labels, args.checkpoints, strict=True)),
        _data(args.data), test_data=_data(args.test_data) if args.test_data else None,
        measures=args.metric or DEFAULT_MEASURES, line=x, num_directions=args.num_directions,
        plane=None if args.y is None else (x, parse_range(args.y)), seed=args.seed,
        **_loss_options(args), batch_size=args.batch_size,
        path=os.path.join(args.out, "compare.h5"), overwrite=args.overwrite,
        progress=not args.quiet, **_measure_settings(args),
    )  # fmt: skip
    write_tables(comparison, args.out)
    plot_comparison(comparison, args.out)
    print(comparison.to_markdown())


def cmd_demo(args: argparse.Namespace) -> None:
    demo_module.run_demo(args.out, progress=not args.quiet, readme=args.readme)


def _checkpoint_objective(args: argparse.Namespace, checkpoint: str, **options: Any) -> Any:
    from .evaluate import Objective

    model = _model(args, checkpoint)
    return Objective(model, _data(args.data), **_loss_options(args), batch_size=args.batch_size,
                     train_mode=args.train_mode, **options)  # fmt: skip


def cmd_trajectory(args: argparse.Namespace) -> None:
    from .trajectory import trajectory_plane

    if len(args.checkpoints) < 3:
        raise UserError(f"a trajectory needs at least 3 checkpoints, got {len(args.checkpoints)}")
    if args.steps is not None and len(args.steps) != len(args.checkpoints):
        raise UserError(f"--steps needs one value per checkpoint ({len(args.checkpoints)}), "
                        f"got {len(args.steps)}")  # fmt: skip
    objective = _checkpoint_objective(args, args.checkpoints[-1])
    states = [_model(args, path).state_dict() for path in args.checkpoints]
    result = trajectory_plane(
        objective, states, steps=args.steps, num_points=args.num_points, margin=args.margin,
        path=args.out, overwrite=args.overwrite, progress=not args.quiet,
    )  # fmt: skip
    ratio = ", ".join(f"{100 * v:.1f}%" for v in result.explained_variance)
    gap = np.abs(result.projected["loss"] - result.true["loss"]).max()
    _print(f"{args.out}: explained variance {ratio}; largest |true - projected| loss {gap:.4g}")


def cmd_connect(args: argparse.Namespace) -> None:
    from .paths import connect_checkpoints
    from .storage.paths import save_paths

    kinds = ["line"] + ([args.curve] if args.curve != "line" else [])
    _refuse_existing(args.out, [f"paths/{k}" for k in kinds], args.overwrite)
    objective = _checkpoint_objective(args, args.checkpoint_a)
    end = _model(args, args.checkpoint_b).state_dict()
    fit_objective = None
    if args.bn_reestimate and not args.train_mode:  # fit with batch statistics (Garipov)
        fit_objective = _checkpoint_objective(args, args.checkpoint_a, train_mode=True)
    connection = connect_checkpoints(
        objective, objective.base_state, end, curve=args.curve, t=args.num_points,
        bn_reestimate=args.bn_reestimate, fit_objective=fit_objective,
        **({} if args.curve == "line" else
           {"num_steps": args.num_steps, "lr": args.lr, "seed": args.seed}),
    )  # fmt: skip
    save_paths(args.out, connection.paths, overwrite=args.overwrite)
    for kind, result in connection.paths.items():
        _print(f"{kind:<10} barrier {result.barrier:.4g} at t = {result.barrier_t:.3g}")
    _print(args.out)


def cmd_export(args: argparse.Namespace) -> None:
    from .export import export

    for path in export(args.file, args.output, format=args.format, metric=args.metric):
        print(path)


def cmd_import_li(args: argparse.Namespace) -> None:
    from .li_format import import_li

    build = resolve_callable(args.model, demo_module.BUILTIN_MODELS, "--model")
    surface = import_li(args.surface, build(), dir_file=args.dir_file, dir_type=args.dir_type,
                        out=args.out, overwrite=args.overwrite)  # fmt: skip
    shape = " x ".join(str(len(a)) for a in (surface.x, surface.y) if a is not None)
    print(f"{args.out}: {shape} grid, metrics {', '.join(surface.metrics)}")


def _plot_paths_file(args: argparse.Namespace) -> None:
    from matplotlib.figure import Figure

    from . import plotting

    fig = Figure(figsize=(9, 3.6) if args.kind == "trajectory" else (5, 4), layout="constrained")
    with plotting.landscape_style():
        if args.kind == "trajectory":
            from .trajectory import load_trajectory

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
            from .storage.paths import load_paths

            paths = load_paths(args.file)
            if not paths:
                raise UserError(f"{args.file} holds no paths; run landscape connect")
            ax = plotting.plot_paths(paths, args.metric, fig.add_subplot())
        if args.title is not None:
            ax.set_title(args.title)
        plotting.save_figure(fig, args.output)
    print(args.output)


def _plot_tracking_file(args: argparse.Namespace) -> None:
    from matplotlib.figure import Figure

    from . import plotting
    from .tracking import load_tracking

    try:
        run = load_tracking(args.file)
    except KeyError:
        raise UserError(
            f"{args.file} holds no tracking; log a run with landscape.Tracker"
        ) from None
    measures = list(run.values)
    cols = min(len(measures), 3)
    rows = -(-len(measures) // cols)
    fig = Figure(figsize=(3.6 * cols, 2.8 * rows), layout="constrained")
    with plotting.landscape_style():
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, measure in zip(axes, measures, strict=False):
            plotting.plot_tracking(run, measure, ax)
            ax.legend(loc="best")
        for ax in axes[len(measures) :]:
            ax.remove()
        if args.title is not None:
            fig.suptitle(args.title)
        plotting.save_figure(fig, args.output)
    print(args.output)


def cmd_correlate(args: argparse.Namespace) -> None:
    from .correlate import correlate, write_correlation

    if not os.path.isfile(args.file):
        raise UserError(f"no such comparison file: {args.file}")
    if args.hparams is not None and not os.path.isfile(args.hparams):
        raise UserError(f"no such hyperparameter file: {args.hparams}")
    found = correlate(args.file, args.hparams, gap=args.gap, num_bootstrap=args.num_bootstrap,
                      seed=args.seed)  # fmt: skip
    write_correlation(found, args.out)
    print(found.to_markdown())


# ---------------------------------------------------------------- parser
def _add_model_options(p: argparse.ArgumentParser, checkpoint: bool = True) -> None:
    p.add_argument("--model", required=True, help="M:F, path/file.py:F or a built-in name")
    if checkpoint:
        p.add_argument("--checkpoint", required=True, help="checkpoint file (.pt or .safetensors)")
    p.add_argument("--data", required=True, help="M:F, path/file.py:F or a built-in name")
    p.add_argument("--loss", default="cross_entropy",
                   help="cross_entropy, mse, bce, causal_lm, token_ce or M:F")  # fmt: skip
    p.add_argument("--loss-reduction", choices=LOSS_REDUCTIONS, default="auto",
                   help="whether --loss M:F returns the batch sum or mean "
                   "(default: found on the first batch)")  # fmt: skip
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--train-mode", action="store_true",
                   help="evaluate in train mode (BatchNorm batch statistics, dropout)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_measure_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", nargs="+", metavar="NAME", help="measure names (default: a set)")
    p.add_argument("--rho", type=float,
                   help="radius, for every chosen measure (default: each its own)")  # fmt: skip
    p.add_argument("--eps", type=float, help="Keskar box size, PAC-Bayes magnitude floor")
    p.add_argument("--num-samples", type=int,
                   help="Monte-Carlo samples or direction seeds, for every measure")  # fmt: skip
    p.add_argument("--target", type=float, help="PAC-Bayes loss increase target")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    _add_params_option(p)


def _add_params_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", nargs="+", metavar="PATTERN", default=None,
                   help="move only these weights: names or glob patterns ('*.lora_*', "
                   "'transformer.h.3.*'), or 'trainable' (default: all)")  # fmt: skip


def _seed(text: str) -> int:
    """``--seed``: an integer in 0 .. 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in 0 .. 2**63 - 1, got {text!r}")
    return value


def _count(text: str) -> int:
    """A positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _levels(text: str) -> int | list[float]:
    """``--levels``: a count (``20``) or comma-separated values (``0.1,0.2,0.5``)."""
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return count
        return sorted(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive count (20) or comma-separated values (0.1,0.2,0.5), got {text!r}"
        ) from None


def _figure_path(text: str) -> str:
    """``-o``: a file name with an extension matplotlib knows."""
    from matplotlib.backend_bases import FigureCanvasBase

    stem, ext = os.path.splitext(os.path.basename(text))
    known = FigureCanvasBase.get_supported_filetypes()
    if not stem or ext[1:].lower() not in known:
        raise argparse.ArgumentTypeError(
            f"expected a figure file name ending in one of .png, .pdf, .svg, ... got {text!r}"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="landscape", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"landscape {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("surface", help="loss on a line or plane around a checkpoint")
    _add_model_options(p)
    p.add_argument("--out", required=True, help="HDF5 file to write (resumed if unfinished)")
    p.add_argument("--x", default="-1:1:51", help="START:STOP:NUM (default -1:1:51)")
    p.add_argument("--y", default=None, help="START:STOP:NUM; leave out for a 1D line")
    p.add_argument("--directions", choices=("random", "hessian", "interp", "pca"),
                   default="random")  # fmt: skip
    p.add_argument("--target", help="second checkpoint, for --directions interp")
    p.add_argument("--trajectory", nargs="+", metavar="CKPT",
                   help="checkpoints along training, for --directions pca")  # fmt: skip
    p.add_argument("--dir-file", help="reuse the directions stored in this landscape file")
    p.add_argument("--norm", choices=NORMS, default="filter")
    p.add_argument("--ignore", choices=("biasbn", "none"), default="biasbn")
    p.add_argument("--x-norm", choices=NORMS, default=None, help="--norm for x only")
    p.add_argument("--y-norm", choices=NORMS, default=None, help="--norm for y only")
    p.add_argument("--dir-type", choices=("weights", "states"), default=None,
                   help="default: states for --directions interp (BatchNorm stats too), "
                   "else weights")  # fmt: skip
    p.add_argument("--orthogonalize", action="store_true")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace a file made by another run")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32")
    p.add_argument("--points-per-pass", type=int, default=None,
                   help="grid points per pass over a batch (default: automatic)")  # fmt: skip
    p.add_argument("--no-cache-data", action="store_true",
                   help="re-read the data at every point (for data too big to keep)")  # fmt: skip
    p.add_argument("--convexity", action="store_true",
                   help="also map |lambda_min/lambda_max| of the Hessian (slow)")  # fmt: skip
    _add_params_option(p)
    p.set_defaults(func=cmd_surface)

    p = sub.add_parser("hessian", help="Hessian eigenpairs, trace and spectral density")
    _add_model_options(p)
    p.add_argument("--top-k", type=int, default=5, help="number of eigenpairs (default 5)")
    p.add_argument("--which", choices=("LA", "SA", "LM"), default="LA",
                   help="largest, smallest algebraic or largest magnitude")  # fmt: skip
    p.add_argument("--trace", action="store_true", help="also the trace (Hutch++)")
    p.add_argument("--num-probes", type=int, default=99, help="trace probes (default 99)")
    p.add_argument("--density", action="store_true", help="also the spectral density (SLQ)")
    p.add_argument("--density-probes", type=int, default=10)
    p.add_argument("--float64", action="store_true", help="compute in float64")
    p.add_argument("--per-block", action="store_true",
                   help="also lambda_max and trace of each block's Hessian (layers, embeddings, "
                   "head)")  # fmt: skip
    _add_params_option(p)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", required=True, help="HDF5 file (results go to /hessian)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.set_defaults(func=cmd_hessian)

    p = sub.add_parser("sharpness", help="sharpness and flatness measures of a checkpoint")
    _add_model_options(p)
    _add_measure_options(p)
    p.add_argument("--out", required=True, help="HDF5 file (results go to /sharpness/NAME)")
    p.set_defaults(func=cmd_sharpness)

    p = sub.add_parser("compare", help="compare checkpoints: measures, lines, planes, table")
    _add_model_options(p, checkpoint=False)
    p.add_argument("checkpoints", nargs="+", metavar="CKPT")
    p.add_argument("--test-data", help="held-out data (M:F or built-in), for the gap")
    _add_measure_options(p)
    p.add_argument("--x", default="-1:1:21", help="START:STOP:NUM of the lines")
    p.add_argument("--y", default=None, help="START:STOP:NUM: also a plane (x by y)")
    p.add_argument("--num-directions", type=_count, default=3, help="direction seeds per line")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("plot", help="plot a surface file")
    p.add_argument("file")
    kinds = ("line", "contour", "contourf", "heatmap", "surface3d", "density", "eigenvalues",
             "trajectory", "paths", "tracking")  # fmt: skip
    p.add_argument("--kind", choices=kinds, default="contour",
                   help="density and eigenvalues are for Hessian files, trajectory and paths "
                   "for those of landscape trajectory and connect, tracking for a "
                   "Tracker's file")  # fmt: skip
    p.add_argument("--metric", default="loss")
    p.add_argument("--log", action=argparse.BooleanOptionalAction, default=None,
                   help="log scale (default: when values span over 2 decades)")  # fmt: skip
    p.add_argument("--levels", type=_levels, default=None,
                   help="contour levels: a count (20) or values (0.1,0.2,0.5)")  # fmt: skip
    p.add_argument("--vmin", type=float, default=None, help="lowest value shown")
    p.add_argument("--vmax", type=float, default=None, help="highest value shown")
    p.add_argument("--title", default=None, help="axes title")
    p.add_argument("-o", "--output", required=True, type=_figure_path,
                   help="figure file (.png, .pdf, .svg)")  # fmt: skip
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("trajectory", help="a training run on its PCA plane, and the surface")
    _add_model_options(p, checkpoint=False)
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="the run's checkpoints, in order")
    p.add_argument("--steps", nargs="+", type=float, default=None,
                   help="step or epoch of each checkpoint (default 0, 1, ...)")  # fmt: skip
    p.add_argument("--num-points", type=int, default=21, help="grid points per axis")
    p.add_argument("--margin", type=float, default=0.25, help="grid margin around the path")
    p.add_argument("--out", required=True, help="HDF5 file (surface and /trajectory)")
    p.add_argument("--overwrite", action="store_true", help="replace a file made by another run")
    p.set_defaults(func=cmd_trajectory)

    p = sub.add_parser("connect", help="loss along the line and a fitted curve between minima")
    _add_model_options(p, checkpoint=False)
    p.add_argument("checkpoint_a", metavar="CKPT_A")
    p.add_argument("checkpoint_b", metavar="CKPT_B")
    p.add_argument("--curve", choices=("bezier", "polychain", "line"), default="bezier")
    p.add_argument("--num-points", type=int, default=25, help="points along each path")
    p.add_argument("--num-steps", type=int, default=500, help="optimizer steps of the fit")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate of the fit (Adam)")
    p.add_argument("--bn-reestimate", action="store_true",
                   help="recompute BatchNorm statistics at every point")  # fmt: skip
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", required=True, help="HDF5 file (results go to /paths/KIND)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("export", help="a landscape file as ParaView (vts), Plotly HTML or GIF")
    p.add_argument("file")
    p.add_argument("--format", choices=("vts", "html", "gif"), required=True)
    p.add_argument("--metric", default="loss", help="metric shown (the height for vts)")
    p.add_argument("-o", "--output", required=True, help="file to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import-li", help="read a surface file of Li et al.'s code")
    p.add_argument("surface", metavar="SURFACE.h5")
    p.add_argument("--model", required=True, help="M:F, path/file.py:F or a built-in name")
    p.add_argument("--dir-file", default=None, help="their direction file (default: as named)")
    p.add_argument("--dir-type", choices=("weights", "states"), default="weights")
    p.add_argument("--out", required=True, help="landscape surface file to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out")
    p.set_defaults(func=cmd_import_li)

    p = sub.add_parser("correlate", help="Kendall's tau of each measure with the gap, many models")
    p.add_argument("file", metavar="COMPARE.h5", help="the compare.h5 of landscape compare")
    p.add_argument("--hparams", default=None,
                   help="CSV: a checkpoint column and one column per hyperparameter")  # fmt: skip
    p.add_argument("--gap", choices=("accuracy", "loss"), default="accuracy",
                   help="train - test accuracy (default) or test - train loss")  # fmt: skip
    p.add_argument("--num-bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the resamples")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_correlate)

    p = sub.add_parser("info", help="what a landscape file holds, and how complete it is")
    p.add_argument("file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="train the digits models and make every figure")
    p.add_argument("--out", default="figures")
    p.add_argument("--readme", default=None, help="a README whose demo table to update")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = _join_negative_ranges(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    try:
        args = build_parser().parse_args([a for a in argv if a != "--debug"])
    except KeyboardInterrupt:  # building the parser imports matplotlib: it takes a while
        print("landscape: interrupted", file=sys.stderr)
        return 130
    launched = "RANK" in os.environ and not distributed.is_distributed()
    try:
        if launched:  # under torchrun: join the group; every rank runs the same command
            distributed.init_from_env()
        args.func(args)
    except KeyboardInterrupt:
        if distributed.rank() == 0:
            print(f"landscape {args.command}: interrupted; run it again to resume",
                  file=sys.stderr)  # fmt: skip
        return 130
    except Exception as err:  # one line for the user; --debug shows the traceback
        if debug:
            traceback.print_exc()
        elif distributed.rank() == 0:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            expected = (UserError, ValueError, TypeError, KeyError, OSError, RuntimeError)
            internal = not isinstance(err, expected)
            hint = " (an internal error: rerun with --debug for the traceback)" if internal else ""
            print(f"landscape {args.command}: error: {message}{hint}", file=sys.stderr)
        return 2
    finally:
        if launched and distributed.is_distributed():
            torch.distributed.destroy_process_group()
    return 0
