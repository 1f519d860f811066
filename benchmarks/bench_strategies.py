"""Peak memory and HVPs of each solver strategy the memory planner chooses between.

A random 1,000,000-parameter tanh MLP (float32, 64 examples, one batch). For each job and
strategy: the HVPs spent and the peak of the tensors of at least ``n / 4`` entries alive at
once (every allocation tracked, the operator's included), in model sizes, next to the
planner's bound (``settings["planned_bytes"]``: the solver's vectors and an estimate of one
HVP's). Writes ``results_strategies.md``. About a minute on a 2-core CPU.

Run: ``python benchmarks/bench_strategies.py``
"""

from __future__ import annotations

import argparse
import time
import weakref
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from landscape.hessian import HessianOperator, hessian_eigenpairs, hessian_trace, spectral_density
from landscape.objective import Objective


class LiveBytes(TorchDispatchMode):
    """The peak bytes of tensors of at least ``least`` entries alive at once."""

    def __init__(self, least: int):
        super().__init__()
        self.least, self.now, self.peak, self.live = least, 0, 0, set()

    def _free(self, key: int, nbytes: int) -> None:
        self.live.discard(key)
        self.now -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.numel() >= self.least:
                storage = t.untyped_storage()
                key = id(storage)
                if key not in self.live:
                    self.live.add(key)
                    self.now += storage.nbytes()
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        return out


def model_and_data(width: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(256, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                          nn.Linear(width, 10))  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
    return model, torch.randn(64, 256, generator=g), torch.randint(0, 10, (64,), generator=g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=880, help="hidden width (880: ~1.0M)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_strategies.md")))
    args = parser.parse_args()
    model, x, y = model_and_data(args.width)
    op = HessianOperator(Objective(model, (x, y), batch_size=64))
    n, model_bytes = op.size, 4 * op.size
    jobs = {
        ("top-5", "thick-restart"): lambda: hessian_eigenpairs(
            op, num_eigenpairs=5, strategy="thick-restart", progress=False),
        ("top-5", "two-pass"): lambda: hessian_eigenpairs(
            op, num_eigenpairs=5, strategy="two-pass", max_hvps=1500, progress=False),
        ("trace, 30 probes", "hutch++"): lambda: hessian_trace(
            op, num_probes=30, method="hutch++", progress=False),
        ("trace, 30 probes", "hutchinson"): lambda: hessian_trace(
            op, num_probes=30, method="hutchinson", progress=False),
        ("density, 2 x 40", "reorthogonalize"): lambda: spectral_density(
            op, num_probes=2, num_lanczos_steps=40, reorthogonalize=True, progress=False),
        ("density, 2 x 40", "three-term"): lambda: spectral_density(
            op, num_probes=2, num_lanczos_steps=40, reorthogonalize=False, progress=False),
    }  # fmt: skip
    lines = [
        f"n = {n:,} parameters (float32, {model_bytes / 2**20:.1f} MiB), 64 examples; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads.",
        "",
        "| job | strategy | HVPs | peak (models) | planned (models) | seconds | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for (job, strategy), call in jobs.items():
        hvps = op.num_hvps + (op._twin.num_hvps if getattr(op, "_twin", None) else 0)
        start = time.perf_counter()
        with LiveBytes(n // 4) as live:
            result = call()
        seconds = time.perf_counter() - start
        spent = op.num_hvps + (op._twin.num_hvps if getattr(op, "_twin", None) else 0) - hvps
        planned = result.settings["planned_bytes"] / model_bytes
        if hasattr(result, "eigenvalues"):
            shown = f"top {result.eigenvalues[0]:.5g}, converged {result.converged}"
        elif hasattr(result, "stderr"):
            shown = f"{result.value:.5g} ± {result.stderr:.2g}"
        else:
            shown = f"ghosts {result.settings['num_ghosts']}"
        lines.append(f"| {job} | {strategy} | {spent} | {live.peak / model_bytes:.1f} | "
                     f"{planned:.1f} | {seconds:.1f} | {shown} |")  # fmt: skip
        print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
