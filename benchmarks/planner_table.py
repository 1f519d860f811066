"""The memory planner's table for language-model sizes, computed, not measured: what each
strategy of each Hessian job needs on one 80 GB GPU with the model in bfloat16.

    python benchmarks/planner_table.py     # prints a Markdown table (seconds, no model)

The cap is the GPU's 80 GB less the weights (2 bytes a parameter); each strategy's bytes are
the solver's bound plus the planner's estimate of one product (a float64 sum and three
weight-sized vectors, ``landscape.hessian.planner.hvp_bytes``), without the gradient graphs,
which depend on the batch and the attention kernel. Jobs: top-5 eigenpairs (500 HVPs at
most), a 30-probe trace, a 10 x 80 density. The "host-basis" strategy keeps its basis in
host memory: 256 GB a GPU (a node of 8 GPUs with 2 TB), its GB the device's.
"""

from landscape.hessian.planner import plan_job

GPU = 80 * 10**9
HOST = 256 * 10**9  # host memory a GPU may use for a host basis
SIZES = {"GPT-2 small (124M)": 124_439_808, "1.3B": 1_300_000_000, "7B": 7_000_000_000}
JOBS = {
    "top-5 eigenpairs": ("eigenpairs", {"k": 5, "max_hvps": 500}),
    "trace, 30 probes": ("trace", {"num_probes": 30}),
    "density, 10 x 80": ("density", {"num_probes": 10, "num_steps": 80}),
}


def main() -> None:
    print("| model | job | strategy | GB | HVPs | fits in 80 GB |")
    print("|---|---|---|---|---|---|")
    for model, n in SIZES.items():
        cap = GPU - 2 * n
        for label, (job, settings) in JOBS.items():
            plan = plan_job(job, n, 2, max_memory=cap, hvp=n * (8 + 3 * 2), refuse=False,
                            host_memory=HOST, **settings)  # fmt: skip
            for row in plan.rows:
                chosen = " (chosen)" if row.name == plan.choice else ""
                print(f"| {model} | {label} | {row.name}{chosen} | {row.bytes / 1e9:.1f} | "
                      f"{row.hvps} | {'yes' if row.fits else 'no'} |")  # fmt: skip


if __name__ == "__main__":
    main()
