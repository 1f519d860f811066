"""Time of the built-in cross-entropy losses against torch's ``F.cross_entropy``, as ratios.

For each shape, in one process and interleaved (round after round, each contender once per
round), the CPU time of one call, forward alone and forward with backward:

- ``torch``: ``F.cross_entropy(logits, labels, reduction="sum")`` on the float32 logits;
- ``ours``: ``landscape.losses``: ``cross_entropy`` (classification, float64 from the
  logits) or ``token_ce`` (tokens: fused float32 pieces summed in float64);
- ``0.2``: version 0.2's ``logsumexp(z) - z[y]`` in float32, summed (in float64 for tokens).

Each ratio is over ``torch``'s time in the same round, the median over rounds. A tenth of
the labels are -100 (ignored). Classification shapes are examples x classes, token shapes
tokens x vocabulary.

Usage: ``python benchmarks/bench_losses.py [--threads 1] [--rounds 9] [--out FILE]``
(about 20 s of CPU time on one thread).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from landscape.losses import cross_entropy_sum, token_ce_sum

SHAPES = [
    ("classification", 128, 10),
    ("classification", 1797, 10),
    ("classification", 256, 100),
    ("classification", 256, 1000),
    ("tokens", 1024, 2048),
    ("tokens", 512, 8192),
    ("tokens", 2048, 8192),
]


def old_sum(logits: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Version 0.2's loss: float32 log-sum-exp minus the label's logit."""
    kept = labels != -100
    picked = logits.gather(1, (labels * kept).unsqueeze(1)).squeeze(1)
    return torch.where(kept, torch.logsumexp(logits, dim=1) - picked, 0.0).sum(dtype=dtype)


def contenders(kind: str):
    if kind == "classification":
        return {
            "torch": lambda z, t: F.cross_entropy(z, t, reduction="sum"),
            "ours": cross_entropy_sum,
            "0.2": lambda z, t: old_sum(z, t, torch.float32),
        }
    return {
        "torch": lambda z, t: F.cross_entropy(z, t, reduction="sum"),
        "ours": lambda z, t: token_ce_sum(z.unsqueeze(0), t.unsqueeze(0)),
        "0.2": lambda z, t: old_sum(z, t, torch.float64),
    }


def cpu_time(call, repeats: int) -> float:
    start = time.process_time()
    for _ in range(repeats):
        call()
    return (time.process_time() - start) / repeats


def measure(kind: str, rows: int, classes: int, rounds: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(rows, classes, generator=g)
    labels = torch.randint(0, classes, (rows,), generator=g)
    labels[::10] = -100
    leaf = logits.clone().requires_grad_(True)
    fns = contenders(kind)
    repeats = max(1, int(2e6 // (rows * classes)))

    def backward(fn):
        return lambda: torch.autograd.grad(fn(leaf, labels), leaf)

    calls = {
        (name, mode): (lambda fn=fn: fn(logits, labels)) if mode == "fwd" else backward(fn)
        for name, fn in fns.items()
        for mode in ("fwd", "fwd+bwd")
    }
    for call in calls.values():  # warm up
        call()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            times[key].append(cpu_time(call, repeats))
    out = {}
    for mode in ("fwd", "fwd+bwd"):
        base = times[("torch", mode)]
        out[f"torch {mode} us"] = statistics.median(base) * 1e6
        for name in ("ours", "0.2"):
            ratios = [a / b for a, b in zip(times[(name, mode)], base, strict=True)]
            out[f"{name} {mode}"] = statistics.median(ratios)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header = (
        "| kind | shape | torch fwd (us) | ours / torch | 0.2 / torch "
        "| torch fwd+bwd (us) | ours / torch | 0.2 / torch |"
    )
    lines = [header, "|" + "---|" * 8]
    for kind, rows, classes in SHAPES:
        r = measure(kind, rows, classes, args.rounds)
        lines.append(
            f"| {kind} | ({rows}, {classes}) | {r['torch fwd us']:.0f} | {r['ours fwd']:.2f}x "
            f"| {r['0.2 fwd']:.2f}x | {r['torch fwd+bwd us']:.0f} | {r['ours fwd+bwd']:.2f}x "
            f"| {r['0.2 fwd+bwd']:.2f}x |"
        )
        print(lines[-1], flush=True)
    machine = (
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s), CPU time, median of {args.rounds} interleaved rounds"
    )
    title = ["# Loss benchmark results", "", "Written by `benchmarks/bench_losses.py`.", ""]
    text = "\n".join([*title, *lines, "", machine, ""])
    print(machine)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
