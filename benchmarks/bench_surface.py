"""Benchmark: time per grid point of ``compute_surface`` against the machine's own limits.

One run measures, for each model: a bare forward pass over the same data (no
perturbation, no storage), the surface one point per pass and K points per pass (with
its HDF5 file, everything included), the FLOPs of one forward pass
(``torch.utils.flop_counter.FlopCounterMode``) and a large matrix product in fp32 and
bf16 in the same run. It prints one Markdown table for this machine and writes it into
``benchmarks/results_surface.md`` (a section per machine; an older section for the same
machine is replaced).

Models: the demo MLP and the demo CNN with BatchNorm on the 1,797 digits, and
ResNet-20 / ResNet-56 (CIFAR style) on CIFAR-shaped generated data, 10,000 and 50,000
examples. On a CPU the ResNet rows use a subset of the examples and a few points
(``--full`` for the full sizes); on CUDA the full sizes, and the time of a 51 x 51 grid
is extrapolated from the points measured.

    python benchmarks/bench_surface.py                 # CPU: a few minutes on 2 cores
    python benchmarks/bench_surface.py --device cuda   # fp32 and bf16 rows
    python benchmarks/bench_surface.py --overhead-only --rounds 5   # the overhead table only

The overhead table (``--overhead-only``: about a minute on 2 cores) puts a surface's CPU time
per point, accuracy off and on, next to a bare forward pass over the same batches and next to
Li et al.'s per-point loop (re-implemented from their code), the candidates interleaved round
by round in one run (so a load change hits them alike; medians over the rounds), and the
fixed cost of a call: for a series over checkpoints (``compute_surface(objective.at(
checkpoint), ...)``) and for the model form (Objective, data on the device, fingerprint,
private module).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from landscape.demo import digits_cnn, digits_data, digits_mlp, train_classifier  # noqa: E402
from landscape.directions import random_directions  # noqa: E402
from landscape.models import cifar_like, cifar_resnet  # noqa: E402
from landscape.objective import (
    Objective,  # noqa: E402
    precision_context,  # noqa: E402
)
from landscape.surface import compute_surface  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OVERHEAD_NOTE = [
    "Per-point CPU time against a bare forward pass over the same batches (K = 1, medians of "
    "interleaved rounds; a point: the grid's time less a one-point call's, per other point; "
    "fixed: a one-point call less one point, for `compute_surface(objective.at(checkpoint), "
    "...)` and for `compute_surface(model, data, ...)`). fwd+loss: a bare pass and the loss "
    "the surface computes on its outputs; torch CE: a bare pass and torch's own float32 "
    "`F.cross_entropy(reduction='sum')` on its outputs, the least a point with a loss costs. "
    "Li et al.: their per-point loop re-implemented (set every parameter, then the loss and "
    "accuracy read per batch)."
]


@dataclass
class Case:
    name: str
    model: Callable[[], nn.Module]
    data: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    num_points: int  # points timed one at a time
    batched_k: int  # K for the batched run (CUDA: None = automatic)
    batch_size: int


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_flops(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matrix product (best of a few)."""
    n = 8192 if device.type == "cuda" else 2048 if dtype != torch.bfloat16 else 512
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    seconds = best_of(lambda: torch.mm(a, b), device, 5 if device.type == "cuda" else 3)
    return 2 * n**3 / seconds


def forward_flops_per_example(model: nn.Module, inputs: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(inputs)
    return counter.get_total_flops() / len(inputs)


def bare_forward(
    model: nn.Module,
    batches: list,
    precision: str,
    device: torch.device,
    passes: int,
    with_loss: bool = False,
) -> float:
    """Seconds for one plain forward pass over the data: the mean over ``passes`` passes in
    a row, best of three; with ``with_loss`` also the summed cross-entropy and the number
    correct, which a grid point computes too."""

    @torch.no_grad()
    def run() -> None:
        with precision_context(precision, device):
            for inputs, targets in batches:
                outputs = model(inputs)
                if with_loss:
                    F.cross_entropy(outputs.float(), targets, reduction="sum").item()
                    (outputs.argmax(-1) == targets).sum().item()

    def runs() -> None:  # as many passes as a surface point gets, so both are averages
        for _ in range(passes):
            run()

    run()  # warm-up (cuDNN autotuning, allocator)
    return best_of(runs, device, 3) / passes


@dataclass
class OverheadCase:
    name: str
    model: Callable[[], nn.Module]
    data: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    batch_size: int
    side: int  # the grid is side x side


def overhead_cases() -> list[OverheadCase]:
    """Every model of this benchmark; the ResNets on a few CIFAR-shaped examples (a CPU)."""
    digits = lambda: digits_data("all")  # noqa: E731
    return [
        OverheadCase("demo MLP", digits_mlp, digits, 1024, 8),
        OverheadCase("demo CNN (BatchNorm)", digits_cnn, digits, 1024, 4),
        OverheadCase("ResNet-20", lambda: cifar_resnet(20), lambda: cifar_like(64), 64, 2),
        OverheadCase("ResNet-56", lambda: cifar_resnet(56), lambda: cifar_like(32), 32, 2),
    ]


def li_et_al_loop(model: nn.Module, batches: list, dirs, xs: np.ndarray) -> None:
    """Li et al.'s per-point work (``net_plotter.set_weights`` then ``evaluation.eval_loss``
    of github.com/tomgoldstein/loss-landscape), batches made once: every parameter set to
    ``w + x d_x + y d_y``, then the mean cross-entropy and the number correct of each batch
    read with ``.item()``."""
    weights = [p.detach().clone() for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    dx, dy = [dirs.x[n] for n in names], [dirs.y[n] for n in names]
    criterion = nn.CrossEntropyLoss()
    for a in xs:
        for b in xs:
            for p, w, u, v in zip(model.parameters(), weights, dx, dy, strict=True):
                p.data = w + a * u + b * v
            total, correct = 0.0, 0
            with torch.no_grad():
                for inputs, targets in batches:
                    outputs = model(inputs)
                    total += criterion(outputs, targets).item() * len(targets)
                    correct += outputs.max(1)[1].eq(targets).sum().item()
    for p, w in zip(model.parameters(), weights, strict=True):
        p.data = w


def overhead_rows(device: torch.device, rounds: int, only: str | None = None) -> list[str]:
    """Per point of ``compute_surface`` (K = 1) over a bare forward pass, with the accuracy
    off and on, beside Li et al.'s loop, and the fixed cost of a call (CPU time, medians
    of interleaved rounds)."""
    lines = [
        "| model | examples | bare fwd ms | fwd+loss ms | torch CE / bare | surface ms/pt "
        "(acc. off) | / bare | / (fwd+loss) | surface ms/pt (acc. on) | / bare | Li et al. "
        "ms/pt | / bare | fixed ms a call (`objective.at`) | fixed ms a call (model form) |",
        "|" + "---|" * 14,
    ]
    print("\n".join(lines), flush=True)
    for case in overhead_cases():
        if only and only.lower() not in case.name.lower():
            continue
        lines.append(overhead_row(case, device, rounds))
        print(lines[-1], flush=True)
    return lines


def overhead_row(case: OverheadCase, device: torch.device, rounds: int) -> str:
    model = case.model().eval().to(device)
    inputs, targets = case.data()
    data = (inputs.to(device), targets.to(device))
    size = case.batch_size
    batches = [(data[0][i : i + size], data[1][i : i + size]) for i in range(0, len(inputs), size)]
    dirs = random_directions(model, seed=0)
    xs = np.linspace(-1, 1, case.side)
    num = len(xs) ** 2
    common = dict(batch_size=size, points_per_pass=1)
    quiet = dict(progress=False)
    objective = {acc: Objective(model, data, accuracy=acc, **common) for acc in (False, True)}
    li_model = copy.deepcopy(model)

    @torch.no_grad()
    def bare() -> None:
        for x, _ in batches:
            model(x)

    @torch.no_grad()
    def with_loss() -> None:  # the loss the surface computes, on the same outputs
        for x, t in batches:
            objective[False].output_sums(model(x), t)

    @torch.no_grad()
    def torch_loss() -> None:  # torch's own float32 loss on the same outputs
        for x, t in batches:
            F.cross_entropy(model(x), t, reduction="sum")

    def grid(acc: bool) -> None:
        compute_surface(objective[acc], dirs, xs, xs, **quiet)

    def one(acc: bool) -> None:
        compute_surface(objective[acc].at(model), dirs, [0.5], [0.5], **quiet)

    def model_form() -> None:
        compute_surface(model, data, dirs, [0.5], [0.5], accuracy=False, **common, **quiet)

    candidates = {
        "bare": (lambda: [bare() for _ in range(num)], num),
        "loss": (lambda: [with_loss() for _ in range(num)], num),
        "torch loss": (lambda: [torch_loss() for _ in range(num)], num),
        "off": (lambda: grid(False), num),
        "on": (lambda: grid(True), num),
        "one off": (lambda: one(False), 1),
        "one on": (lambda: one(True), 1),
        "model form": (model_form, 1),
        "li": (lambda: li_et_al_loop(li_model, batches, dirs, xs), num),
    }
    for run, _ in candidates.values():  # warm-up (and the Objectives' first evaluation)
        run()
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(rounds):
        for key, (run, count) in candidates.items():
            sync(device)
            cpu = time.process_time()
            run()
            sync(device)
            times[key].append((time.process_time() - cpu) / count)
    med = {k: float(np.median(v)) for k, v in times.items()}
    # the marginal cost of a point: the grid less the one-point call, per other point
    point = {acc: (med[acc] * num - med["one " + acc]) / (num - 1) for acc in ("off", "on")}
    fixed = max(0.0, med["one off"] - point["off"])
    fixed_model = max(0.0, med["model form"] - point["off"])
    bare_ms = med["bare"]
    return (
        f"| {case.name} | {len(inputs):,} | {bare_ms * 1e3:.2f} | {med['loss'] * 1e3:.2f} "
        f"| {med['torch loss'] / bare_ms:.2f} "
        f"| {point['off'] * 1e3:.2f} | {point['off'] / bare_ms:.2f} "
        f"| {point['off'] / med['loss']:.2f} "
        f"| {point['on'] * 1e3:.2f} | {point['on'] / bare_ms:.2f} "
        f"| {med['li'] * 1e3:.2f} | {med['li'] / bare_ms:.2f} "
        f"| {fixed * 1e3:.1f} | {fixed_model * 1e3:.1f} |"
    )


def grid(num_points: int) -> tuple[np.ndarray, np.ndarray | None]:
    nx = max(1, int(math.sqrt(num_points)))
    ny = max(1, num_points // nx)
    return np.linspace(-1, 1, nx), np.linspace(-1, 1, ny)


def naive_seconds_per_point(model, inputs, targets, case, device) -> float:
    """Seconds per point the way hand-written scripts (Li et al. 2018) work: write each
    point into the model with ``load_state_dict`` and iterate a ``DataLoader`` over a
    per-example ``Dataset`` (batches rebuilt at every point), ``.item()`` per batch."""
    net = copy.deepcopy(model).eval()
    direction = random_directions(net, num_directions=1, seed=0).x
    theta = {k: v.clone() for k, v in net.state_dict().items()}
    dataset = TensorDataset(inputs.cpu(), targets.cpu())
    loader = DataLoader(dataset, batch_size=case.batch_size, shuffle=False)
    coords = np.linspace(-1, 1, max(2, min(case.num_points, 20)))
    sync(device)
    start = time.perf_counter()
    for c in coords:
        net.load_state_dict({k: v + c * direction[k] if k in direction else v
                             for k, v in theta.items()})  # fmt: skip
        loss = correct = 0.0
        with torch.no_grad():
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                outputs = net(x)
                loss += F.cross_entropy(outputs, y).item() * len(y)
                correct += (outputs.argmax(1) == y).sum().item()
    sync(device)
    return (time.perf_counter() - start) / len(coords)


def surface_seconds_per_point(model, data, k, case, precision, device, workdir) -> float:
    """Seconds per point of ``compute_surface`` with its file, set-up included."""
    dirs = random_directions(model, seed=0)
    xs, ys = grid(case.num_points)
    path = os.path.join(workdir, f"{case.name}-{precision}-{k}.h5")
    options = dict(
        batch_size=case.batch_size,
        precision=precision,
        points_per_pass=k,
        progress=False,
        overwrite=True,
    )
    if device.type == "cuda" or case.num_points >= 100:  # warm-up (vmap, cuDNN), not timed
        compute_surface(model, data, dirs, xs[:1], ys[: min(k, len(ys))], path=path, **options)

    def run() -> None:
        compute_surface(model, data, dirs, xs, ys, path=path, **options)

    # best of three, like the bare pass it is compared with: shared machines drift
    return best_of(run, device, 3) / (len(xs) * len(ys))


def cases(device: torch.device, full: bool) -> list[Case]:
    small = 225 if device.type == "cpu" else 256
    digits = [
        Case("demo MLP", digits_mlp, lambda: digits_data("all"), small, 8, 1024),
        Case("demo CNN (BatchNorm)", digits_cnn, lambda: digits_data("all"), small, 8, 1024),
    ]
    if device.type == "cpu" and not full:  # subsets, a few points: minutes on 2 cores
        return [
            *digits,
            Case("ResNet-20", lambda: cifar_resnet(20), lambda: cifar_like(1000), 4, 4, 500),
            Case("ResNet-56", lambda: cifar_resnet(56), lambda: cifar_like(500), 4, 4, 500),
        ]
    return digits + [
        Case(
            f"ResNet-{depth}",
            lambda d=depth: cifar_resnet(d),
            lambda n=n: cifar_like(n),
            16,
            4,
            1000,
        )
        for depth in (20, 56)
        for n in (10_000, 50_000)
    ]


def bf16_error_table(device: torch.device) -> list[str]:
    """bf16 against fp32 on a 7 x 7 surface of the trained demo models."""
    train = digits_data("train")
    lines = [
        "| model (trained) | max abs. loss error | max rel. loss error | max abs. accuracy error |",
        "|---|---|---|---|",
    ]
    for name, build in (("demo MLP", digits_mlp), ("demo CNN (BatchNorm)", digits_cnn)):
        model = train_classifier(
            build(), train, lr=0.01, steps=150, optimizer="adam", progress=False
        )
        model = model.to(device)
        dirs = random_directions(model, seed=0)
        xs = np.linspace(-1, 1, 7)
        common = dict(progress=False, points_per_pass=1 if device.type == "cpu" else None)
        ref = compute_surface(model, digits_data("all"), dirs, xs, xs, **common)
        low = compute_surface(model, digits_data("all"), dirs, xs, xs, precision="bf16", **common)
        diff = np.abs(low["loss"] - ref["loss"])
        lines.append(
            f"| {name} | {diff.max():.2e} | {(diff / np.abs(ref['loss'])).max():.2e} | "
            f"{np.abs(low['accuracy'] - ref['accuracy']).max():.2e} |"
        )
    return lines


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"model name\s*:\s*(.+)", f.read())
        name = found.group(1).strip() if found else name
    except OSError:
        pass
    return f"CPU: {name}"


def fmt_rate(flops: float) -> str:
    return f"{flops / 1e12:.2f} T" if flops >= 1e12 else f"{flops / 1e9:.1f} G"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--precision", default=None, help="comma list; CPU fp32, CUDA fp32,bf16")
    parser.add_argument("--full", action="store_true", help="full data sizes on a CPU too")
    parser.add_argument("--only", default=None, help="run only models whose name has this text")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-bf16-error", action="store_true")
    parser.add_argument("--overhead-only", action="store_true", help="only the overhead table")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (overhead)")
    parser.add_argument("--out", default=os.path.join(HERE, "results_surface.md"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = torch.device("cpu" if name == "auto" else name)
    overhead = overhead_rows(device, args.rounds, args.only)
    if args.overhead_only:
        cores, threads = os.cpu_count(), torch.get_num_threads()
        info = f"torch {torch.__version__}, {cores} CPU cores, {threads} threads"
        write_section(args.out, [f"## {machine(device)}: per-point overhead", "", info, "",
                                 *OVERHEAD_NOTE, "", *overhead, ""])  # fmt: skip
        return
    precisions = (args.precision or ("fp32,bf16" if device.type == "cuda" else "fp32")).split(",")
    peak = {"fp32": matmul_flops(device, torch.float32)}
    peak["bf16"] = matmul_flops(device, torch.bfloat16)
    with precision_context("tf32", device):
        peak["tf32"] = matmul_flops(device, torch.float32)

    header = (
        "| model | examples | prec. | bare fwd ms | fwd+loss ms | ms/pt K=1 | (a) K=1/bare "
        "| K=1/(fwd+loss) | K | ms/pt K | (c) K=1/K | pts/s (best) | FLOP/s (best) "
        "| (b) / matmul | 51x51 est. |"
    )
    lines = [header, "|" + "---|" * 15]
    naive_lines = [
        "| model | naive ms/pt (load_state_dict + DataLoader) | ours ms/pt K=1 | naive / ours |",
        "|---|---|---|---|",
    ]
    print(header, flush=True)
    print(lines[1], flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        for case in cases(device, args.full):
            if args.only and args.only.lower() not in case.name.lower():
                continue
            model = case.model().eval().to(device)
            inputs, targets = case.data()
            data = (inputs.to(device), targets.to(device))
            batches = [
                (data[0][i : i + case.batch_size], data[1][i : i + case.batch_size])
                for i in range(0, len(inputs), case.batch_size)
            ]
            per_example = forward_flops_per_example(model, batches[0][0])
            flops = per_example * len(inputs)
            for precision in precisions:
                passes = min(case.num_points, 50)
                bare = bare_forward(model, batches, precision, device, passes)
                bare_loss = bare_forward(model, batches, precision, device, passes, True)
                one = surface_seconds_per_point(model, data, 1, case, precision, device, workdir)
                k = case.batched_k if device.type == "cpu" else None
                if k is None:
                    k = Objective(model, data, batch_size=case.batch_size).resolve_points_per_pass()
                many = surface_seconds_per_point(model, data, k, case, precision, device, workdir)
                best = min(one, many)
                row = (
                    f"| {case.name} | {len(inputs):,} | {precision} | {bare * 1e3:.1f} "
                    f"| {bare_loss * 1e3:.1f} | {one * 1e3:.1f} | {one / bare:.2f} "
                    f"| {one / bare_loss:.2f} | {k} | {many * 1e3:.1f} "
                    f"| {one / many:.2f} | {1 / best:.1f} | {fmt_rate(flops / best)} "
                    f"| {flops / best / peak[precision]:.0%} | {best * 2601 / 60:.1f} min |"
                )
                print(row, flush=True)
                lines.append(row)
            naive = naive_seconds_per_point(model, inputs, targets, case, device)
            naive_lines.append(
                f"| {case.name} | {naive * 1e3:.1f} | {one * 1e3:.1f} | {naive / one:.1f} |"
            )
            print(naive_lines[-1], flush=True)
            del model, data, batches
    info = (
        f"torch {torch.__version__}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} "
        f"threads; matmul peak measured in this run: fp32 {fmt_rate(peak['fp32'])}FLOP/s, "
        f"bf16 {fmt_rate(peak['bf16'])}FLOP/s."
    )
    section = [f"## {machine(device)}", "", info, "", *lines, ""]
    section += [*OVERHEAD_NOTE, "", *overhead, ""]
    section += ["A simple baseline in the same run (the last precision's K=1 time):", ""]
    section += [*naive_lines, ""]
    if not args.no_bf16_error:
        errors = bf16_error_table(device)
        print("\n" + "\n".join(errors))
        section += ["bf16 against fp32, 7 x 7 surface over all 1,797 digits:", "", *errors, ""]
    print("\n" + info)
    write_section(args.out, section)


def write_section(path: str, section: list[str]) -> None:
    """Put this machine's section into the results file, replacing an older one."""
    title = section[0]
    kept: list[str] = []
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        parts = re.split(r"(?m)^(?=## )", text)
        kept = [p.rstrip("\n") for p in parts if p.strip() and not p.startswith(title + "\n")]
    if not kept or not kept[0].startswith("# "):
        kept.insert(0, "# Surface benchmark results\n\nWritten by `benchmarks/bench_surface.py`.")
    with open(path, "w") as f:
        f.write("\n\n".join([*kept, "\n".join(section)]).rstrip() + "\n")


if __name__ == "__main__":
    main()
