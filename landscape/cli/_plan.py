"""``landscape hessian --plan``: each job's memory plan, computed from the model alone."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import torch

from ._common import _model, _print


def print_plans(args: argparse.Namespace) -> None:
    """``hessian --plan``: each job's plan for the model's selected weights, nothing computed."""
    from ..hessian.planner import available_memory, hvp_bytes, plan_job
    from ..params import model_device_dtype, select_params

    model = _model(args, args.checkpoint)
    device, dtype = model_device_dtype(model)
    weights = dict(model.named_parameters())
    n = sum(weights[name].numel() for name in select_params(model, args.params))
    size = 8 if args.float64 else torch.empty((), dtype=dtype).element_size()
    cap = available_memory(device) if args.max_memory is None else args.max_memory
    hvp = hvp_bytes(SimpleNamespace(size=n, dtype=torch.float64 if args.float64 else dtype))
    jobs = {"eigenpairs": {"k": args.num_eigenpairs, "max_hvps": 500}}
    if args.trace:
        jobs["trace"] = {"num_probes": args.num_probes}
    if args.density:
        jobs["density"] = {"num_probes": args.density_probes, "num_steps": 80}
    for job, settings in jobs.items():
        plan = plan_job(job, n, size, max_memory=cap, hvp=hvp, refuse=False, **settings)
        _print(plan.table())
    if args.per_block:
        _print_block_plans(args, model, device, cap)


def _print_block_plans(args: argparse.Namespace, model, device, cap: int) -> None:
    """``--per-block``: the plans of ``block_curvature``'s jobs on the largest block (and
    of the off-block products on every block's weights)."""
    from ..hessian.block_plan import plan_blocks
    from ..hessian.blocks import _resolve_blocks
    from ..params import model_device_dtype

    weights = dict(model.named_parameters())
    blocks = _resolve_blocks(model, None, args.params)
    sizes = {b: sum(weights[n].numel() for n in names) for b, names in blocks.items()}
    largest = max(sizes, key=sizes.__getitem__)
    dtype = torch.float64 if args.float64 else model_device_dtype(model)[1]
    # the counts are set on args by the command's checks when their flag is given
    density = (args.block_density_probes, args.block_lanczos_steps) if args.block_density else None
    plans = plan_blocks(
        sizes, dtype, device, cap, max_hvps=500, num_probes=args.num_probes, method="hutch++",
        density=density, num_off_block_probes=args.off_block_probes if args.off_block else None,
        refuse=False,
    )  # fmt: skip
    _print(f"per-block: {len(sizes)} blocks, the largest {largest!r} ({sizes[largest]} weights)")
    for job, plan in plans.items():
        table = plan.table()
        _print(table.replace("trace:", "off-block:", 1) if job == "off_block" else table)
