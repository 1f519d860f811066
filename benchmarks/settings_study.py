"""Choosing settings: what data fraction, grid, precision and sample count cost and buy.

Measured on the demo's small-batch digits MLP (1,442 training examples), each against a
reference computed the expensive way, with the wall time of each setting:

- data: a 51 x 51 filter-normalized random plane on 10%, 25% and 50% of the training set
  (the first examples of a seeded permutation) against the plane on all of it;
- grid: 11, 21 and 51 points a side against 101, over the same plane: where the minimum
  lies and its value, and the error of the coarse surface interpolated (bilinearly) onto
  the fine grid, as a share of the fine surface's range below loss 2 (the contoured part);
- precision: a 21 x 21 plane in fp32 and bf16 (autocast) against float64;
- samples: ``avg_l2``, ``pacbayes`` and ``trace`` with 10, 30 and 100 samples (probes), and
  for the two Monte Carlo measures the samples a 5% relative standard error would take,
  from the 100-sample error.

It prints the Markdown tables (they go into benchmarks/RESULTS.md and the documentation's
"Choosing settings" page by hand).

    python benchmarks/settings_study.py        # about 30 s on 2 CPU cores, 1 thread
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.interpolate import RegularGridInterpolator

from landscape import Objective, compute_surface, random_directions, sharpness
from landscape.demo import DEMO_RECIPES, digits_data, digits_mlp, train_classifier


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def plane(model, data, n, **options):
    grid = np.linspace(-1, 1, n)
    return compute_surface(
        model, data, random_directions(model, seed=0), grid, grid, progress=False, **options
    )


def data_table(model, data):
    perm = torch.randperm(len(data[1]), generator=torch.Generator().manual_seed(0))
    full, seconds = timed(lambda: plane(model, data, 51))
    contoured = full["loss"] < 2
    span = np.ptp(full["loss"][contoured])
    rows = ["| data | contour error (max, share of range) | median rel. error | time s |",
            "|---|---|---|---|"]  # fmt: skip
    for fraction in (0.1, 0.25, 0.5):
        keep = perm[: round(fraction * len(perm))]
        part, t = timed(lambda keep=keep: plane(model, (data[0][keep], data[1][keep]), 51))
        error = np.abs(part["loss"] - full["loss"])
        rows.append(f"| {fraction:.0%} | {error[contoured].max() / span:.1%} | "
                    f"{np.median(error / full['loss']):.1%} | {t:.2f} |")  # fmt: skip
    rows.append(f"| all (1,442) | 0 | 0 | {seconds:.2f} |")
    return rows


def grid_table(model, data):
    fine, seconds = timed(lambda: plane(model, data, 101))
    contoured = fine["loss"] < 2
    span = np.ptp(fine["loss"][contoured])
    points = np.stack(np.meshgrid(fine.x, fine.y, indexing="ij"), axis=-1)

    def minimum(surface):
        i, j = np.unravel_index(np.argmin(surface["loss"]), surface["loss"].shape)
        return surface.x[i], surface.y[j], surface["loss"][i, j]

    rows = [
        "| points a side | minimum at | minimum loss | contour error (max, share of range) "
        "| time s |",
        "|---|---|---|---|---|",
    ]
    for n in (11, 21, 51, 101):
        coarse, t = (fine, seconds) if n == 101 else timed(lambda n=n: plane(model, data, n))
        interpolated = RegularGridInterpolator((coarse.x, coarse.y), coarse["loss"])(points)
        error = np.abs(interpolated - fine["loss"])[contoured].max() / span
        x, y, value = minimum(coarse)
        rows.append(f"| {n} | ({x:.2f}, {y:.2f}) | {value:.4g} | {error:.2%} | {t:.2f} |")
    return rows


def precision_table(model, data):
    double = plane(model.double(), (data[0].double(), data[1]), 21)
    model.float()
    rows = ["| precision | max rel. loss error | max abs. accuracy error | time s |",
            "|---|---|---|---|"]  # fmt: skip
    for precision in ("fp32", "bf16"):
        surface, t = timed(lambda p=precision: plane(model, data, 21, precision=p))
        loss_error = np.abs(surface["loss"] / double["loss"] - 1).max()
        accuracy_error = np.abs(surface["accuracy"] - double["accuracy"]).max()
        rows.append(f"| {precision} | {loss_error:.1e} | {accuracy_error:.1e} | {t:.2f} |")
    return rows


def samples_table(model, data):
    objective = Objective(model, data)
    rows = ["| measure | samples | value ± stderr | rel. stderr | time s | samples for 5% |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for name, setting in (("avg_l2", "num_samples"), ("pacbayes", "num_samples"),
                          ("trace", "num_probes")):  # fmt: skip
        for n in (10, 30, 100):
            result, t = timed(
                lambda name=name, s=setting, n=n: sharpness(
                    objective, [name], seed=0, progress=False, **{s: n}
                )[name]
            )
            relative = result.stderr / abs(result.value)
            # Monte Carlo errors fall as 1 / sqrt(n); Hutch++'s faster, so no extrapolation
            needed = f"{n * (relative / 0.05) ** 2:.0f}" if n == 100 and name != "trace" else ""
            rows.append(f"| {name} | {n} | {result.value:.4g} ± {result.stderr:.2g} | "
                        f"{relative:.1%} | {t:.2f} | {needed} |")  # fmt: skip
    return rows


def main() -> None:
    torch.set_num_threads(1)
    data = digits_data("train")
    model = train_classifier(digits_mlp(), data, progress=False, **DEMO_RECIPES["small-batch"])
    print(f"torch {torch.__version__}, 1 thread, demo small-batch MLP on 1,442 examples\n")
    for table in (data_table, grid_table, precision_table, samples_table):
        print("\n".join(table(model, data)), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
