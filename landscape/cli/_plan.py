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
