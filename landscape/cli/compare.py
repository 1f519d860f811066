"""``landscape compare``: many checkpoints, one file, a table and figures; under torchrun
the checkpoints are dealt to the ranks and rank 0 alone writes."""

from __future__ import annotations

import argparse
import os

from .. import demo as demo_module
from .. import distributed
from ._common import (
    _check_checkpoint,
    _check_out,
    _data,
    _device,
    _loss_options,
    _measure_settings,
    _print,
    resolve_callable,
)


def cmd_compare(args: argparse.Namespace) -> None:
    from ..compare import DEFAULT_MEASURES, compare_checkpoints, plot_comparison, write_tables
    from ..surface import parse_range

    build = resolve_callable(args.model, demo_module.BUILTIN_MODELS, "--model")
    for checkpoint in args.checkpoints:
        _check_checkpoint(checkpoint)
    labels = [os.path.splitext(os.path.basename(c))[0] for c in args.checkpoints]
    if len(set(labels)) != len(labels):
        labels = list(args.checkpoints)
    x = parse_range(args.x).tolist()
    out = os.path.join(args.out, "compare.h5")

    def check() -> None:  # rank 0 alone: the others would find the file held by it
        os.makedirs(args.out, exist_ok=True)
        _check_out(args, out)

    distributed.on_leader(check)
    comparison = compare_checkpoints(
        build().to(_device(args.device)), dict(zip(labels, args.checkpoints, strict=True)),
        _data(args.data), test_data=_data(args.test_data) if args.test_data else None,
        measures=args.metric or DEFAULT_MEASURES, line=x, num_directions=args.num_directions,
        plane=None if args.y is None else (x, parse_range(args.y).tolist()), seed=args.seed,
        **_loss_options(args), batch_size=args.batch_size, path=out, overwrite=args.overwrite,
        progress=not args.quiet, allow_nonfinite=args.allow_nonfinite, barriers=args.barriers,
        align=args.align, repair=args.repair, barrier_points=args.barrier_points,
        residual=bool(args.residual),
        **_measure_settings(args),
    )  # fmt: skip
    if distributed.rank() == 0:
        write_tables(comparison, args.out)
        plot_comparison(comparison, args.out)
    _print(comparison.to_markdown())
