"""Hessian-vector product backends (exact, fd, auto) and Gauss-Newton products.

Every number is checked against an independent exact answer: exact double-backward products,
a Jacobian and output Hessian formed densely in float64, or the Hessian itself where the
Gauss-Newton matrix equals it (zero residuals).
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from landscape.hessian import (
    HessianOperator,
    hessian_eigenpairs,
    hessian_trace,
    load_hessian,
    save_hessian,
    spectral_density,
)
from landscape.hessian.ggn import output_hessian_product
from landscape.objective import Objective

f32, f64 = torch.float32, torch.float64
BOUND = {f32: 1e-3, f64: 1e-7}  # the bounds on fd's relative error at the default step
V = 50
DATA = Path(__file__).resolve().parent.parent / "data"


def mlp(dtype: torch.dtype, *, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def mlp_objective(dtype: torch.dtype, model: nn.Module | None = None) -> Objective:
    """Two batches of 32 (the first is the probe batch)."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 6, generator=g, dtype=f64), torch.randint(0, 3, (64,), generator=g)
    return Objective(mlp(dtype) if model is None else model, (x.to(dtype), y), batch_size=32)


@pytest.fixture(scope="module")
def gpt2() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=V, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0,
        eos_token_id=0, attn_implementation="sdpa",
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval()


def gpt2_objective(model: nn.Module, dtype: torch.dtype) -> Objective:
    ids = torch.randint(0, V, (3, 8), generator=torch.Generator().manual_seed(0))
    return Objective(copy.deepcopy(model).to(dtype), [{"input_ids": ids}], loss="causal_lm")


def objective_of(name: str, dtype: torch.dtype, gpt2: nn.Module) -> Objective:
    return mlp_objective(dtype) if name == "mlp" else gpt2_objective(gpt2, dtype)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert all(torch.equal(after[n], t) for n, t in before.items())  # bit for bit


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.to(f64), b.to(f64)
    return float((a - b).norm() / b.norm())


def first_probe(n: int, dtype: torch.dtype) -> torch.Tensor:
    """The documented probe of the error measurement (products.PROBE_SEED = 0)."""
    return torch.randn(n, dtype=f64, generator=torch.Generator().manual_seed(0)).to(dtype)


@pytest.mark.parametrize("name", ["mlp", "gpt2"])
@pytest.mark.parametrize("dtype", [f32, f64], ids=["float32", "float64"])
def test_fd_error_is_within_bound_and_recorded_as_measured_independently(name, dtype, gpt2):
    objective = objective_of(name, dtype, gpt2)
    before = snapshot(objective.model)
    exact, fd = HessianOperator(objective), HessianOperator(objective, hvp="fd")
    assert (exact.hvp, exact.hvp_error, fd.hvp) == ("exact", 0.0, "fd")
    v = torch.randn(exact.num_params, dtype=dtype, generator=torch.Generator().manual_seed(5))
    assert relative(fd @ v, exact @ v) <= BOUND[dtype]
    assert 0 < fd.hvp_error <= BOUND[dtype]
    # independently: the probe batch alone (relative errors do not see the 1/N scale)
    first = next(iter(objective.batches()))
    alone = Objective(objective.model, [first], loss=objective.loss_name)
    probe = first_probe(exact.num_params, dtype)
    measured = relative(HessianOperator(alone, hvp="fd") @ probe, HessianOperator(alone) @ probe)
    assert fd.hvp_error == pytest.approx(measured, rel=1e-6)
    assert_unchanged(objective.model, before)


def test_fd_top_eigenvalue_is_within_its_stated_bound():
    objective = mlp_objective(f32)
    reference = hessian_eigenpairs(HessianOperator(mlp_objective(f64)), num_eigenpairs=1,
                                   tol=1e-12, progress=False)  # fmt: skip
    result = hessian_eigenpairs(HessianOperator(objective, hvp="fd"), num_eigenpairs=1,
                                progress=False)  # fmt: skip
    assert result.converged and result.hvp == "fd" and 0 < result.hvp_error <= 1e-3
    top = float(reference.eigenvalues[0])
    assert abs(float(result.eigenvalues[0]) - top) <= result.residuals[0]
    assert result.residuals[0] <= result.settings["tol"] * abs(top) * 1.01
    # float64 fd: a stated bound far tighter, still met
    result64 = hessian_eigenpairs(HessianOperator(mlp_objective(f64), hvp="fd"),
                                  num_eigenpairs=1, progress=False)  # fmt: skip
    assert result64.converged and abs(float(result64.eigenvalues[0]) - top) <= result64.residuals[0]


def test_fd_trace_and_density_state_what_the_error_adds():
    exact_op, fd_op = (
        HessianOperator(mlp_objective(f32)),
        HessianOperator(mlp_objective(f32), hvp="fd"),
    )
    options = {"num_probes": 9, "method": "hutch++", "seed": 3, "progress": False}
    exact, fd = hessian_trace(exact_op, **options), hessian_trace(fd_op, **options)
    assert (exact.hvp, fd.hvp, fd.hvp_error) == ("exact", "fd", fd_op.hvp_error)
    bound = fd.settings["hvp_bias_bound"]
    assert 0 < abs(fd.value - exact.value) <= bound and "hvp_bias_bound" not in exact.settings
    density = spectral_density(fd_op, num_probes=2, num_lanczos_steps=5, progress=False)
    nodes = density.nodes[np.isfinite(density.nodes)]
    assert density.settings["hvp_node_bound"] == pytest.approx(
        fd_op.hvp_error * np.abs(nodes).max()
    )


class _Recording(TorchDispatchMode):
    """Names the aten operations run inside it."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


def test_fd_runs_with_the_fused_attention_kernel_that_blocks_double_backward(gpt2):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    objective = gpt2_objective(gpt2, f32)
    exact = HessianOperator(objective)
    v = torch.randn(exact.num_params, generator=torch.Generator().manual_seed(5))
    flash = "_scaled_dot_product_flash_attention_for_cpu"
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        # positive control: this kernel has no double backward
        model, ids = objective.model, torch.randint(0, V, (1, 4))
        weight = model.transformer.h[0].attn.c_attn.weight
        (grad,) = torch.autograd.grad(model(input_ids=ids).logits.sum(), weight, create_graph=True)
        with pytest.raises(RuntimeError, match="not implemented"):
            torch.autograd.grad(grad.sum(), weight)
        fd = HessianOperator(objective, hvp="fd")
        with _Recording() as seen:
            product = fd @ v
    assert (
        flash in seen.names and "_scaled_dot_product_flash_attention_for_cpu_backward" in seen.names
    )
    assert relative(product, exact @ v) <= 1e-3


@pytest.mark.slow  # torch.compile's first trace: 5-10 s on 2 busy cores
def test_fd_and_auto_run_a_compiled_model_whose_double_backward_raises():
    if not hasattr(torch, "compile"):
        pytest.skip("needs torch.compile")
    model = mlp(f64)
    compiled = torch.compile(model, backend="aot_eager")  # AOT autograd, no C compiler needed
    objective = mlp_objective(f64, compiled)
    exact = HessianOperator(mlp_objective(f64, model))
    v = torch.randn(exact.num_params, dtype=f64, generator=torch.Generator().manual_seed(5))
    with pytest.raises(RuntimeError, match="double backward"):
        HessianOperator(objective) @ v
    auto = HessianOperator(objective, hvp="auto")
    assert auto.hvp == "fd" and "double backward" in auto.hvp_error
    assert relative(auto @ v, exact @ v) <= 1e-7


class _TanhBackward(torch.autograd.Function):
    """The derivative of tanh, ``grad * (1 - y**2)``, which cannot be differentiated."""

    @staticmethod
    def forward(ctx, grad, y):
        return grad * (1 - y * y)

    @staticmethod
    def backward(ctx, _):
        raise RuntimeError("derivative of tanh's backward is not implemented")


class _FirstOrderTanh(torch.autograd.Function):
    """tanh whose backward cannot be differentiated again (like a fused kernel)."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return _TanhBackward.apply(grad, y)


class _FirstOrderMLP(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        reference = mlp(dtype)
        self.a, self.b = reference[0], reference[2]

    def forward(self, x):
        return self.b(_FirstOrderTanh.apply(self.a(x)))


def test_auto_picks_exact_where_double_backward_works_and_fd_where_it_raises():
    assert HessianOperator(mlp_objective(f64), hvp="auto").hvp == "exact"
    objective = mlp_objective(f64, _FirstOrderMLP(f64))
    auto = HessianOperator(objective, hvp="auto")
    assert auto.hvp == "fd" and auto.hvp_error.startswith("not measured")
    reference = HessianOperator(mlp_objective(f64))  # the same function, with torch's tanh
    v = torch.randn(reference.num_params, dtype=f64, generator=torch.Generator().manual_seed(5))
    assert relative(auto @ v, reference @ v) <= 1e-7
    # the error is unknown: nothing is claimed verified
    with pytest.warns(RuntimeWarning, match="unknown"):
        result = hessian_eigenpairs(auto, num_eigenpairs=1, progress=False)
    assert not result.converged and result.hvp_error == auto.hvp_error


def test_hvp_fields_save_and_load_and_old_files_load_with_exact(tmp_path):
    result = hessian_eigenpairs(HessianOperator(mlp_objective(f64), hvp="fd"), num_eigenpairs=1,
                                progress=False)  # fmt: skip
    unknown = hessian_trace(HessianOperator(mlp_objective(f64, _FirstOrderMLP(f64)), hvp="fd"),
                            num_probes=4, progress=False)  # fmt: skip
    save_hessian(result, tmp_path / "a.h5")
    save_hessian(unknown, tmp_path / "b.h5")
    assert load_hessian(tmp_path / "a.h5").eigen == result
    back = load_hessian(tmp_path / "b.h5").trace
    assert back == unknown and isinstance(back.hvp_error, str) and back.hvp == "fd"
    assert math.isnan(back.settings["hvp_bias_bound"])
    old = load_hessian(DATA / "hessian_v0_1.h5")
    assert (old.eigen.hvp, old.eigen.hvp_error) == ("exact", 0.0)


# ---------------------------------------------------------------- Gauss-Newton
def dense_ggn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """``J^T H_out J / N`` formed densely: the Jacobian of the outputs by autograd, the output
    Hessian of each example written out."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def outputs(w):
        pieces = torch.split(w, [math.prod(s) for s in shapes])
        state = {n: p.reshape(s) for n, p, s in zip(names, pieces, shapes, strict=True)}
        return torch.func.functional_call(model, state, (x,))

    z = outputs(flat).detach()
    jacobian = torch.autograd.functional.jacobian(outputs, flat)  # (N, C, n)
    n, c = z.shape
    blocks = []
    for i in range(n):
        if loss == "mse":
            blocks.append(2 * torch.eye(c, dtype=f64) / c)
        else:
            p = torch.softmax(z[i], dim=0)
            blocks.append(torch.diag(p) - torch.outer(p, p))
    h_out = torch.block_diag(*blocks)
    j = jacobian.reshape(n * c, -1)
    return j.T @ h_out @ j / n


def operator_matrix(op: HessianOperator) -> torch.Tensor:
    return torch.stack([op @ e for e in torch.eye(op.num_params, dtype=f64)], dim=1)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_ggn_equals_the_dense_jacobian_product(loss):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 3, generator=g, dtype=f64)
    y = (
        torch.randint(0, 3, (10,), generator=g)
        if loss == "cross_entropy"
        else torch.randn(10, 3, generator=g, dtype=f64)
    )
    before = snapshot(model)
    op = HessianOperator(Objective(model, (x, y), loss=loss, batch_size=4), operator="ggn")
    assert op.settings["operator"] == "ggn" and op.hvp == "exact"
    expected = dense_ggn(model, x, y, loss)
    got = operator_matrix(op)
    assert float((got - expected).abs().max()) <= 1e-10 * float(expected.abs().max())
    hessian = operator_matrix(HessianOperator(Objective(model, (x, y), loss=loss)))
    assert float((hessian - expected).abs().max()) > 1e-3  # the GGN is not the Hessian here
    assert_unchanged(model, before)


def test_ggn_equals_the_hessian_at_a_zero_residual_least_squares_point():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    x = torch.randn(12, 3, generator=torch.Generator().manual_seed(1), dtype=f64)
    with torch.no_grad():
        y = model(x)  # fitted exactly: every residual is 0
    objective = Objective(model, (x, y), loss="mse")
    ggn = operator_matrix(HessianOperator(objective, operator="ggn"))
    hessian = operator_matrix(HessianOperator(objective))
    assert float((ggn - hessian).abs().max()) <= 1e-10 * float(hessian.abs().max())


def test_ggn_cross_entropy_output_hessian_ignores_unlabelled_tokens():
    logits = torch.randn(2, 3, 4, dtype=f64, generator=torch.Generator().manual_seed(0))
    u = torch.randn(2, 3, 4, dtype=f64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([[1, 2, -100], [0, 3, 1]])
    got = output_hessian_product("causal_lm", logits, labels, u)
    z = logits.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(
        z[:, :-1].reshape(-1, 4), labels[:, 1:].reshape(-1), reduction="sum"
    )
    (grad,) = torch.autograd.grad(loss, z, create_graph=True)
    (expected,) = torch.autograd.grad(grad, z, u)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def test_bad_backend_choices_are_refused():
    objective = mlp_objective(f64)
    with pytest.raises(ValueError, match="hvp"):
        HessianOperator(objective, hvp="finite")
    with pytest.raises(ValueError, match="ggn"):
        HessianOperator(objective, hvp="fd", operator="ggn")
    with pytest.raises(ValueError, match="loss among"):
        HessianOperator(Objective(mlp(f64), (torch.randn(4, 6, dtype=f64), torch.ones(4, 3)),
                                  loss="bce"), operator="ggn")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HessianOperator(objective, operator="ggn")


def test_cli_hessian_hvp_fd_records_the_backend(tmp_path, capsys):
    from landscape.checkpoint import save_checkpoint
    from landscape.cli import main

    (tmp_path / "user.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "def model():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))\n\n"
        "def data():\n    g = torch.Generator().manual_seed(0)\n"
        "    return torch.randn(30, 5, generator=g), torch.randint(0, 3, (30,), generator=g)\n"
    )
    torch.manual_seed(0)
    save_checkpoint(nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)), tmp_path / "a.pt")
    out = tmp_path / "h.h5"
    common = ["--model", f"{tmp_path}/user.py:model", "--data", f"{tmp_path}/user.py:data",
              "--checkpoint", str(tmp_path / "a.pt"), "--quiet", "--top-k", "1", "--trace",
              "--num-probes", "4", "--out", str(out)]  # fmt: skip
    assert main(["hessian", *common, "--hvp", "fd"]) == 0
    results = load_hessian(out)
    assert results.eigen.hvp == results.trace.hvp == results.extremes.hvp == "fd"
    assert 0 < results.eigen.hvp_error <= 1e-3
    assert main(["hessian", *common, "--hvp", "fd"]) == 0  # the same run: resumed
    assert "nothing to compute" in capsys.readouterr().out
