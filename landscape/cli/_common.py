"""What the subcommands share: import strings, devices, models and data, objectives, outputs."""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .. import demo as demo_module
from .. import distributed
from .._fingerprint import builder_sha256
from .._finite import check_finite_inputs, nonfinite_note
from ..checkpoint import file_sha256, load_checkpoint
from ..checkpoint.reading import _kind
from ..losses import LOSSES


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line."""


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
            f"expected a built-in name ({', '.join(sorted(builtins))}), "
            f"package.module:callable or path/file.py:callable for {what}, got {spec!r}"
        )
    if module_name.endswith(".py") or os.sep in module_name:
        if not os.path.isfile(module_name):
            raise UserError(f"{what}: no such file {module_name!r}")
        name = "_landscape_user_" + re.sub(r"\W", "_", os.path.abspath(module_name))
        module_spec = importlib.util.spec_from_file_location(name, module_name)
        if module_spec is None or module_spec.loader is None:  # not a .py file
            raise UserError(f"{what}: expected a Python file (.py), got {module_name!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        folder = os.path.dirname(os.path.abspath(module_name))
        if folder not in sys.path:  # first, as Python does for a script: its neighbours import
            sys.path.insert(0, folder)
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
    args.builder_sha256 = builder_sha256(build)  # recorded by _sources
    model = build()
    if not isinstance(model, nn.Module):
        raise UserError(f"--model {args.model} returned a {type(model).__name__}, not an nn.Module")
    _check_checkpoint(checkpoint)
    strict = getattr(args, "strict", True)  # --no-strict
    model = load_checkpoint(model, checkpoint, strict=strict).to(_device(args.device)).eval()
    if not getattr(args, "allow_nonfinite", False):  # before any work, naming the tensor
        buffers = [name for name, _ in model.named_buffers()]
        check_finite_inputs(model.state_dict(), buffers=buffers, what=f"checkpoint {checkpoint}")
    return model


def _check_checkpoint(path: str) -> None:
    """Refuse a missing checkpoint, or one that is not a regular file (a directory, a FIFO,
    ``/dev/zero``), without opening it."""
    if not os.path.exists(path):
        raise UserError(f"no such checkpoint file: {path}")
    if not os.path.isfile(path):
        raise UserError(f"{path} is not a regular file ({_kind(path)}); expected a checkpoint file")


def _data(spec: str) -> Any:
    return resolve_callable(spec, demo_module.BUILTIN_DATA, "--data")()


def _loss_options(args: argparse.Namespace) -> dict[str, Any]:
    """``loss`` and ``loss_reduction`` from ``--loss`` and ``--loss-reduction``."""
    loss = args.loss
    if loss not in LOSSES:
        loss = resolve_callable(loss, dict(LOSSES), "--loss")
    return {"loss": loss, "loss_reduction": args.loss_reduction}


# ---------------------------------------------------------------- subcommands
def _random_directions(args: argparse.Namespace, model: nn.Module, num_directions: int) -> Any:
    """Random directions, with ``--x-norm``/``--y-norm`` when the two axes differ."""
    from ..directions import random_plane

    x_norm, y_norm = args.x_norm or args.norm, args.y_norm or args.norm
    if num_directions == 2 and x_norm != y_norm and args.orthogonalize:
        raise UserError("--orthogonalize needs one normalization; drop --x-norm/--y-norm")
    if getattr(args, "recipe", False):
        from ..directions import random_directions

        if x_norm != y_norm or args.orthogonalize:
            raise UserError("--recipe takes one --norm and no --orthogonalize")
        return random_directions(model, num_directions=num_directions, norm=x_norm,
                                 ignore=args.ignore, dir_type=args.dir_type, seed=args.seed,
                                 params=args.params, stored=False)  # fmt: skip
    return random_plane(model, num_directions=num_directions, x_norm=x_norm, y_norm=y_norm,
                        ignore=args.ignore, dir_type=args.dir_type, seed=args.seed,
                        orthogonalize=args.orthogonalize, params=args.params)  # fmt: skip


def _surface_directions(
    args: argparse.Namespace, model: nn.Module, data: Any, num_directions: int
) -> Any:
    """The directions asked for by ``--directions`` (or stored in ``--dir-file``): each
    made by one builder of :mod:`landscape.directions`."""
    from .. import directions

    if args.dir_file:
        if args.directions != "random":
            raise UserError("--dir-file replaces --directions; give one of them")
        try:
            return directions.directions_from_file(args.dir_file, num_directions=num_directions)
        except ValueError as err:  # too few directions, or not a landscape file
            raise UserError(f"--dir-file {err}") from err
    if args.directions == "random":
        return _random_directions(args, model, num_directions)
    if args.directions == "interp":
        if not args.target:
            raise UserError("--directions interp needs --target CKPT2")
        y = _random_directions(args, model, 1).x if num_directions == 2 else None
        return directions.interpolation_directions(
            model, _model(args, args.target), y=y, dir_type=args.dir_type, params=args.params,
            settings={"target_sha256": file_sha256(args.target)})  # fmt: skip
    if args.directions == "pca":
        if not args.trajectory:
            raise UserError("--directions pca needs --trajectory CKPT [CKPT ...]")
        states = [_model(args, path).state_dict() for path in args.trajectory]
        return directions.pca_directions(states, model, num_directions=num_directions,
                                         ignore=args.ignore)  # fmt: skip
    if os.path.exists(args.out) and not args.overwrite:
        try:  # resume with the directions already found
            stored = directions.load_directions(args.out)
        except KeyError:
            stored = None
        if stored is None or (num_directions == 2 and stored.y is None):
            raise UserError(
                f"{args.out} holds no Hessian directions to resume from; "
                "use another --out or --overwrite"
            )
        y = stored.y if num_directions == 2 else None
        return directions.Directions(stored.x, y, kind="hessian", settings={"seed": args.seed})
    from ..objective import Objective

    objective = Objective(model, data, **_loss_options(args), batch_size=args.batch_size,
                          train_mode=args.train_mode,
                          allow_nonfinite=args.allow_nonfinite)  # fmt: skip
    return directions.hessian_plane(objective, num_directions=num_directions, seed=args.seed,
                                    params=args.params, progress=not args.quiet)  # fmt: skip


# file options a command reads: an output must be none of them
_INPUT_FILES = ("checkpoint", "target", "dir_file", "checkpoint_a", "checkpoint_b", "surface")
_INPUT_LISTS = ("checkpoints", "trajectory")
_INPUT_SPECS = ("model", "data", "test_data", "loss")


def _inputs(args: argparse.Namespace) -> dict[str, str]:
    """``{option: path}`` of every file the command reads (checkpoints, directions, the
    user's ``file.py`` of ``--model``, ``--data``, ...)."""
    found = {}
    for name in _INPUT_FILES:
        value = getattr(args, name, None)
        if isinstance(value, str):
            found[f"--{name.replace('_', '-')}"] = value
    for name in _INPUT_LISTS:
        for value in getattr(args, name, None) or ():
            found[f"{value} (a checkpoint)"] = value
    for name in _INPUT_SPECS:
        module_name, sep, _ = str(getattr(args, name, None) or "").rpartition(":")
        if sep and (module_name.endswith(".py") or os.sep in module_name):
            found[f"--{name.replace('_', '-')}"] = module_name
    return found


def _check_out(args: argparse.Namespace, path: str) -> None:
    """Stop before any work when ``path`` cannot be written (a directory, a read-only
    folder, a file that another run is writing), is one of the command's inputs, or is
    a file that ``--overwrite`` may not replace (one landscape did not write)."""
    from ..storage import check_output
    from ..storage.guard import check_not_input, check_replaceable

    check_not_input(path, _inputs(args))
    if getattr(args, "overwrite", False):
        check_replaceable(path)
    check_output(path)


def _holding_out(command: Callable[[argparse.Namespace], None]) -> Callable:
    """``command`` run with ``--out`` checked (:func:`_check_out`) and, if it exists,
    held open for writing until the command ends: no other run writes or replaces it
    meanwhile (rank 0 holds it under torchrun; it alone writes)."""
    from ..storage.guard import hold_output

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> None:
        if distributed.rank() != 0:
            return command(args)
        _check_out(args, args.out)
        with hold_output(args.out):
            return command(args)

    return run


def _objective(args: argparse.Namespace) -> Any:
    """The checkpoint's objective; under torchrun each rank keeps a share of the data."""
    from ..objective import Objective

    model = _model(args, args.checkpoint)
    return Objective(model, _data(args.data), **_loss_options(args), batch_size=args.batch_size,
                     train_mode=args.train_mode, shard_data=True,
                     allow_nonfinite=args.allow_nonfinite)  # fmt: skip


def _sources(args: argparse.Namespace) -> dict[str, str]:
    """What the command line names, recorded with its results: the model and data as given
    (over the model's class name) and the checkpoint's path."""
    built = {"builder_sha256": args.builder_sha256} if "builder_sha256" in args else {}
    return {"model": _spec(args.model), "data": _spec(args.data),
            "checkpoint_path": args.checkpoint, **built}  # fmt: skip


def _spec(spec: str) -> str:
    """An import string as recorded: ``./m.py:f`` and ``m.py:f`` name one model."""
    module_name, sep, attr = spec.rpartition(":")
    if sep and (module_name.endswith(".py") or os.sep in module_name):
        return f"{os.path.normpath(module_name)}:{attr}"
    return spec


def _measure_settings(args: argparse.Namespace) -> dict[str, Any]:
    names = ("rho", "eps", "num_samples", "target", "params")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _checkpoint_objective(args: argparse.Namespace, checkpoint: str, **options: Any) -> Any:
    from ..objective import Objective

    model = _model(args, checkpoint)
    return Objective(model, _data(args.data), **_loss_options(args), batch_size=args.batch_size,
                     train_mode=args.train_mode, allow_nonfinite=args.allow_nonfinite,
                     **options)  # fmt: skip


def _warn_nonfinite(command: str, values: dict[str, Any]) -> None:
    """Count the non-finite results of a run and say so on stderr (rank 0), at the end."""
    note = nonfinite_note(values)
    if note and distributed.rank() == 0:
        print(f"landscape {command}: warning: {note}", file=sys.stderr)
