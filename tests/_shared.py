"""Shared references and small builders of the tests (plain functions; fixtures live in conftest).

Nothing here computes at import: every model, data set and Hessian is built when called.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

#: What code calls when it loads the digits, which need the ``demo`` extra (scikit-learn).
DEMO_DATA_CALLS = ("digits_data", "BUILTIN_DATA", "run_demo", '"digits"')
#: Why a test that loads the digits skips.
NO_DEMO_EXTRA = "needs scikit-learn: pip install 'landscape[demo]'"


def has_demo_extra() -> bool:
    """Whether scikit-learn (the ``demo`` extra: the digits data) can be imported."""
    return importlib.util.find_spec("sklearn") is not None


def loads_digits(source: str) -> bool:
    """Whether ``source`` (a doctest, an example, a README block) loads the digits."""
    return any(call in source for call in DEMO_DATA_CALLS)


def gaussian_mlp(sizes: Sequence[int] = (3, 4, 2), *, seed: int = 0) -> nn.Sequential:
    """A float64 ``Linear, Tanh, Linear`` net whose every entry is N(0, 1) from ``seed``."""
    n_in, hidden, n_out = sizes
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return model


def gaussian_data(n: int, features: int, classes: int, *, seed: int = 1):
    """``n`` float64 N(0, 1) inputs and uniform labels, both drawn from one generator."""
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, features, generator=g, dtype=torch.float64)
    return inputs, torch.randint(0, classes, (n,), generator=g)


def dense_hessian_of(
    loss: Callable[[dict[str, torch.Tensor]], torch.Tensor], tensors: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The dense Hessian of ``loss(named tensors)`` over their flat concatenation, by autograd,
    and each name's row indices in it."""
    names = list(tensors)
    shapes = [tensors[n].shape for n in names]
    sizes = [tensors[n].numel() for n in names]
    flat = torch.cat([tensors[n].detach().reshape(-1) for n in names])

    def flat_loss(vector: torch.Tensor) -> torch.Tensor:
        parts = torch.split(vector, sizes)
        return loss({n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)})

    offsets = np.cumsum([0, *sizes])
    index = {n: np.arange(offsets[i], offsets[i + 1]) for i, n in enumerate(names)}
    return torch.autograd.functional.hessian(flat_loss, flat), index


def dense_hessian(model: nn.Module, data) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The dense Hessian of the mean cross-entropy of ``model`` on ``(inputs, targets)`` over
    all its named parameters (in ``named_parameters()`` order), and each name's row indices."""
    inputs, targets = data

    def loss(weights: dict[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(model, weights, (inputs,)), targets)

    return dense_hessian_of(loss, dict(model.named_parameters()))


#: The repository's root (for ``PYTHONPATH`` in subprocesses that run the command line).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Files the tests read (old-version files, Li et al. files): ``tests/data``.
TEST_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
#: A user's model file for command-line tests: ``user.py:model`` and ``user.py:data``.
USER_CODE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))

    def data():
        g = torch.Generator().manual_seed(0)
        return torch.randn(30, 5, generator=g), torch.randint(0, 3, (30,), generator=g)
    """
)
#: The same net behind a module that sleeps ``delay`` seconds per forward call, so that a test
#: can interrupt a command line while it runs: ``model()`` sleeps ``$SLOW_DELAY`` seconds
#: (default: ``user_project``'s ``delay``), ``fast()`` never sleeps.
SLOW_USER_CODE = textwrap.dedent(
    """
    import os
    import time
    import torch
    from torch import nn

    class Slow(nn.Module):
        def __init__(self, delay):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
            self.delay = delay

        def forward(self, x):
            time.sleep(self.delay)
            return self.net(x)

    def model():
        return Slow(float(os.environ.get("SLOW_DELAY", "{delay}")))

    def fast():
        return Slow(0.0)

    def data():
        g = torch.Generator().manual_seed(0)
        return torch.randn(30, 5, generator=g), torch.randint(0, 3, (30,), generator=g)
    """
)


def user_project(folder: Path, *, delay: float | None = None) -> nn.Module:
    """Write ``user.py`` and its model's checkpoint ``a.pt`` into ``folder``; returns the model.

    ``user.py`` is :data:`USER_CODE`, or with a ``delay`` (seconds per forward call)
    :data:`SLOW_USER_CODE`."""
    from landscape.checkpoint import save_checkpoint

    code = USER_CODE if delay is None else SLOW_USER_CODE.replace("{delay}", repr(float(delay)))
    (folder / "user.py").write_text(code)
    namespace: dict = {}
    exec(code, namespace)
    model = namespace["model"]()
    save_checkpoint(model, folder / "a.pt")
    return model


#: The start of a script that measures resident memory on Linux: ``reset()`` starts a new
#: peak and returns the memory now, ``peak()`` is the peak since; a 34M-parameter MLP's
#: tests build on it (run it with :func:`resident_peak_run`).
PEAK_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    from torch import nn
    from landscape import Objective, compute_surface, random_directions

    def reset():  # a new peak from here (Linux); returns the resident memory now
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()

    def peak():
        line = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
        return int(line.split()[1]) * 1024

    torch.manual_seed(0)
    torch.set_num_threads(1)
    """
)

#: :data:`PEAK_SCRIPT` and a 34M-parameter MLP with its ``objective`` evaluated once,
#: ``params`` from ``sys.argv[1]`` ("full" or the last layer), ``start = reset()`` taken.
MLP_PEAK_SCRIPT = PEAK_SCRIPT + textwrap.dedent(
    """
    width = 4096  # 33.6M parameters, 134 MB; the hidden layers are 4096 x 4096
    model = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width),
                          nn.Tanh(), nn.Linear(width, 10))
    data = (torch.randn(32, width), torch.randint(0, 10, (32,)))
    params = None if sys.argv[1] == "full" else "4.*"
    objective = Objective(model, data)
    objective()  # a first evaluation: torch's lazy set-up is not counted
    start = reset()
    """
)


def resident_peak_run(script: str, *args: str) -> dict:
    """Run ``script`` (which prints one JSON line last) in a fresh interpreter. glibc keeps
    freed blocks below its (moving) mmap threshold resident: every block over 64 KiB is
    returned at once, so that the peak measures what the library holds."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                         check=True, env=env)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def one_line_error(capsys, expected: str) -> str:
    """The command's error output: one line holding ``expected``, no traceback."""
    err = capsys.readouterr().err.strip()
    assert expected in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "internal" not in err, err
    return err


def held_by_a_writer(path) -> bool:
    """Whether a process holds ``path``'s exclusive lock (POSIX ``flock``)."""
    import fcntl

    try:
        with open(path, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except FileNotFoundError:
        return False
    except BlockingIOError:
        return True
    return False


def every_group_permuted(spec, seed: int) -> dict[str, torch.Tensor]:
    """Random permutations of every group of a ``PermutationSpec``, none the identity;
    attention heads reversed as wholes, their dimensions shuffled within each (a
    transformer's symmetry: the permuted model computes the same function)."""
    g = torch.Generator().manual_seed(seed)
    perms = {}
    for k, n in spec.sizes.items():
        perms[k] = torch.randperm(n, generator=g)
        while n > 1 and torch.equal(perms[k], torch.arange(n)):
            perms[k] = torch.randperm(n, generator=g)
    for num, groups in spec.heads.values():
        for group in groups:
            d = spec.sizes[group] // num
            perms[group] = torch.cat(
                [(num - 1 - h) * d + torch.randperm(d, generator=g) for h in range(num)]
            )
    return perms


def permuted_copy(model: nn.Module, perms: Mapping[str, torch.Tensor], spec) -> nn.Module:
    """A copy of ``model`` whose state is permuted by ``perms`` (``model`` unchanged)."""
    import copy

    from landscape.alignment import permute_state

    out = copy.deepcopy(model)
    out.load_state_dict(permute_state(model.state_dict(), spec, perms))
    return out
