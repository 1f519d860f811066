"""Memory and time of a surface on large models, for the whole model and a few tensors.

For a GPT-2-small-sized language model (124M parameters, random initialization, LoRA
adapters of rank 8 on every block's attention and MLP input projections) and a
ResNet-56-sized CIFAR network, each selection runs in a fresh process:

- ``bare fwd``: the model's own forward passes over the evaluation data (no loss), median
  of rounds;
- ``ms/pt``: a ``compute_surface`` call on a 3 x 3 grid (two random filter-normalized
  directions over the selection), divided by its 9 points;
- ``fwd+loss``: one evaluation at the checkpoint (``objective()``: forward passes, loss
  and accuracy);
- ``peak extra``: the process's peak resident memory during the surface minus its
  resident memory just before it (model, data, directions and an evaluation done), in
  MB and over the model's size, and the same for one evaluation at the checkpoint (its
  activations, logits and loss temporaries, beyond what the allocator kept from the
  first evaluation). One perturbed copy of the selection is what the design allows, plus
  a scratch piece of at most 16 MiB;
- ``drawing: peak extra``: the same while the directions are drawn (for recipe
  directions, ``random_directions(..., stored=False)``, only their cosine is computed:
  they hold no values, and the surface makes them again block by block at every point).

Usage: ``python benchmarks/bench_memory.py [--threads 1] [--out benchmarks/results_memory.md]``
(about 3 minutes on one CPU thread). With ``--device cuda`` the peak is
``torch.cuda.max_memory_allocated`` instead of the resident memory (Linux only on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

CONFIGS = {  # model, selection, stored directions (False: recipes, made again at each point)
    "gpt2-full": ("gpt2", None, True),
    "gpt2-lora": ("gpt2", "*.lora_*", True),
    "gpt2-full-recipe": ("gpt2", None, False),
    "gpt2-lora-recipe": ("gpt2", "*.lora_*", False),
    "resnet56-full": ("resnet56", None, True),
    "resnet56-fc": ("resnet56", "fc.*", True),
}


def _gpt2(device):
    import torch
    from torch import nn
    from transformers import GPT2Config, GPT2LMHeadModel

    class LoRA(nn.Module):
        def __init__(self, base: nn.Module, rank: int = 8):
            super().__init__()
            self.base = base
            nx, nf = base.weight.shape
            self.lora_a = nn.Parameter(torch.randn(nx, rank) / nx**0.5)
            self.lora_b = nn.Parameter(torch.randn(rank, nf) / rank**0.5 * 1e-2)

        def forward(self, x):
            return self.base(x) + x @ self.lora_a @ self.lora_b

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config())  # 124M parameters, the GPT-2 small shape
    for block in model.transformer.h:
        block.attn.c_attn = LoRA(block.attn.c_attn)
        block.mlp.c_fc = LoRA(block.mlp.c_fc)
    model = model.eval().to(device)
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(2):  # 2 batches of 4 sequences of 128 tokens, the last 32 of one padded
        ids = torch.randint(0, 50257, (4, 128), generator=g)
        mask = torch.ones_like(ids)
        mask[0, 96:] = 0
        labels = ids.masked_fill(mask == 0, -100)
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return model, batches, "causal_lm", None


def _resnet56(device):
    from landscape.models import cifar_like, cifar_resnet

    images, labels = cifar_like(256)
    return cifar_resnet(56).to(device), (images, labels), "cross_entropy", 64


def _reset_peak(device) -> int:
    """Start a new peak (Linux: the resident high-water mark, reset through
    ``/proc/self/clear_refs``); returns the memory in use now."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak(device) -> int:
    """The peak since the last :func:`_reset_peak`."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM"))
    return int(line.split()[1]) * 1024


def measure(name: str, device_name: str, rounds: int) -> dict:
    """One configuration, in this process."""
    import numpy as np
    import torch

    from landscape import Objective, compute_surface, random_directions
    from landscape.data import call_model, split_batch

    device = torch.device(device_name)
    kind, params, stored = CONFIGS[name]
    model, data, loss, batch_size = (_gpt2 if kind == "gpt2" else _resnet56)(device)
    unique = {t.data_ptr(): t for t in model.state_dict().values()}  # a tied tensor once
    model_bytes = sum(t.numel() * t.element_size() for t in unique.values())
    random_directions(model, seed=1, params=params, stored=stored)  # lazy set-up not counted
    before = _reset_peak(device)
    directions = random_directions(model, seed=0, params=params, stored=stored)
    draw_peak = _peak(device) - before
    weights = getattr(directions.x, "weights", directions.x)  # a recipe's: the selection
    selected = sum(t.numel() for t in weights.values())
    direction_bytes = 0
    if stored:
        direction_bytes = sum(
            t.numel() * t.element_size() for d in (directions.x, directions.y) for t in d.values()
        )
    objective = Objective(model, data, loss=loss, batch_size=batch_size)
    objective()  # data on the device, lazy set-up done

    batches = list(objective.batches())

    def bare() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.no_grad():
            for batch in batches:
                call_model(model, split_batch(batch, objective.label_keys)[0])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    bare()
    forward = float(np.median([bare() for _ in range(rounds)]))
    before = _reset_peak(device)
    start = time.perf_counter()
    objective()  # the checkpoint's loss and metrics: a forward pass with its loss
    with_loss = time.perf_counter() - start
    evaluation_peak = _peak(device) - before  # activations, logits, loss temporaries
    before = _reset_peak(device)
    coords = [-0.5, 0.0, 0.5]
    start = time.perf_counter()
    compute_surface(objective, directions, coords, coords, progress=False)
    per_point = (time.perf_counter() - start) / 9
    peak = _peak(device) - before
    return {
        "config": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "selected": selected,
        "model_mb": model_bytes / 2**20,
        "directions_mb": direction_bytes / 2**20,
        "bare_ms": forward * 1e3,
        "point_ms": per_point * 1e3,
        "ratio": per_point / forward,
        "loss_ratio": per_point / with_loss,
        "extra_mb": peak / 2**20,
        "draw_mb": draw_peak / 2**20,
        "evaluation_mb": evaluation_peak / 2**20,
        "extra_over_model": peak / model_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS))
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results_memory.md")
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.one, args.device, args.rounds)))
        return
    rows = []
    for name in args.configs:
        command = [sys.executable, __file__, "--one", name, "--device", args.device]
        command += ["--threads", str(args.threads), "--rounds", str(args.rounds)]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    import torch

    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s).",
        "",
        "| model, selection | parameters | selected | model MB | directions MB | bare fwd ms | "
        "surface ms/pt | ms/pt / bare | ms/pt / (fwd+loss) | evaluation: peak extra MB | "
        "surface: peak extra MB | surface / model | (surface - evaluation) / model | "
        "drawing: peak extra MB | (directions + surface - evaluation) / model |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['parameters'] / 1e6:.1f} M | {r['selected'] / 1e6:.3f} M | "
            f"{r['model_mb']:.0f} | {r['directions_mb']:.1f} | {r['bare_ms']:.0f} | "
            f"{r['point_ms']:.0f} | {r['ratio']:.2f} | {r['loss_ratio']:.2f} | "
            f"{r['evaluation_mb']:.0f} | {r['extra_mb']:.0f} | {r['extra_over_model']:.3f} | "
            f"{(r['extra_mb'] - r['evaluation_mb']) / r['model_mb']:.3f} | "
            f"{r['draw_mb']:.0f} | "
            f"{(r['directions_mb'] + r['extra_mb'] - r['evaluation_mb']) / r['model_mb']:.3f} |"
        )
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
