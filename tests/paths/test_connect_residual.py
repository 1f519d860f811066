"""``residual=`` through every path that aligns: ``connect_checkpoints``, ``barrier_matrix``
and ``landscape connect --align weights --residual``. A tiny float64 GPT-2 and a copy of it
permuted in every group, the residual stream included: aligned with the residual stream,
the copy is the original again (barrier 0 to 1e-10); without it, the residual stream
stays scrambled and the barrier stays positive. ``residual`` is recorded only when set."""

from __future__ import annotations

import copy

import pytest
import torch

import landscape as ls
from landscape.alignment import permutation_spec, permute_state
from landscape.checkpoint import save_checkpoint
from landscape.cli import main
from landscape.paths import barrier_matrix, connect_checkpoints
from landscape.storage.paths import load_paths

pytestmark = pytest.mark.usefixtures("one_thread_per_module")

transformers = pytest.importorskip("transformers")

_PROJECT = """
import torch
import transformers


def model():
    \"\"\"A tiny float64 GPT-2 (2 blocks, 2 heads of 8, width 16, MLP of 64, tied head),
    weights of std 0.3, LayerNorms and biases drawn at random.\"\"\"
    config = transformers.GPT2Config(
        vocab_size=30, n_positions=8, n_embd=16, n_layer=2, n_head=2, bos_token_id=0,
        eos_token_id=0, initializer_range=0.3, attn_implementation="eager",
    )
    torch.manual_seed(0)
    net = transformers.GPT2LMHeadModel(config).double().eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    return net


def data():
    \"\"\"Tokens labelled with the model's own most likely tokens: the ends' loss is low, so
    a scrambled midpoint shows a barrier.\"\"\"
    ids = torch.randint(0, 30, (8, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return [(ids, model()(ids).logits.argmax(-1))]
"""
_NAMES: dict = {}
exec(_PROJECT, _NAMES)  # the test's model and data are the command line's
_gpt2, _data = _NAMES["model"], _NAMES["data"]


def _permuted(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state with every group (residual stream included) randomly permuted,
    heads swapped as wholes: the same function."""
    spec = permutation_spec(model, residual=True)
    g = torch.Generator().manual_seed(1)
    perms = {k: torch.randperm(n, generator=g) for k, n in spec.sizes.items()}
    for num, groups in spec.heads.values():
        for group in groups:
            d = spec.sizes[group] // num
            perms[group] = torch.cat(
                [(num - 1 - h) * d + torch.randperm(d, generator=g) for h in range(num)]
            )
    return permute_state(model.state_dict(), spec, perms)


def _objective(model: torch.nn.Module) -> ls.Objective:
    return ls.Objective(model, _data(), loss="token_ce")


def test_connect_checkpoints_aligns_the_residual_stream_when_asked():
    model = _gpt2()
    moved = _permuted(model)
    check = copy.deepcopy(model)
    check.load_state_dict(moved)
    ids = torch.randint(0, 30, (4, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(check(ids).logits, model(ids).logits, atol=1e-10, rtol=0)
    objective = _objective(model)
    kept = connect_checkpoints(
        objective, model, moved, curve="line", t=5, align="weights", residual=True
    )
    blocks = connect_checkpoints(objective, model, moved, curve="line", t=5, align="weights")
    assert abs(kept.line.barrier) < 1e-10 and kept.unaligned.barrier > 1e-3
    assert blocks.line.barrier > 1e-3  # the residual stream left scrambled
    assert kept.line.settings["residual"] is True
    assert "residual" not in blocks.line.settings  # unset: the settings of before
    assert kept.alignment.permutations.keys() >= {"residual"}
    with pytest.raises(TypeError, match="expected True or False for residual"):
        connect_checkpoints(objective, model, moved, curve="line", align="weights", residual=1)


def test_barrier_matrix_passes_residual_on():
    model = _gpt2()
    states = {"a": model.state_dict(), "b": _permuted(model)}
    found = barrier_matrix(_objective(model), states, align="weights", t=5, residual=True)
    plain = barrier_matrix(_objective(model), states, align="weights", t=5)
    assert abs(found.after[0, 1]) < 1e-10 and found.before[0, 1] > 1e-3
    assert plain.after[0, 1] > 1e-3
    assert found.settings["residual"] is True and "residual" not in plain.settings


def test_connect_cli_residual_flag_round_trip(tmp_path, capsys):
    (tmp_path / "project.py").write_text(_PROJECT)
    model = _gpt2()
    a = save_checkpoint(model, tmp_path / "a.pt")
    b = save_checkpoint(_permuted(model), tmp_path / "b.pt")
    out = tmp_path / "c.h5"
    args = ["connect", str(a), str(b), "--model", f"{tmp_path}/project.py:model", "--data",
            f"{tmp_path}/project.py:data", "--loss", "token_ce", "--curve", "line",
            "--num-points", "5", "--align", "weights", "--residual", "--out", str(out)]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    paths = load_paths(out)
    assert abs(paths["line"].barrier) < 1e-10 and paths["unaligned"].barrier > 1e-3
    assert paths["line"].settings["residual"] is True
    assert main(args) == 0 and "complete" in capsys.readouterr().out  # the same command
    without = [a for a in args if a != "--residual"]
    assert main(without) == 2  # another command: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*without[:-2], "--overwrite", "--out", str(out)]) == 0
    assert "residual" not in load_paths(out)["line"].settings
    alone = [a for a in args if a not in ("--align", "weights")]
    assert main(alone) == 2
    assert "expected --residual with --align, got --residual alone" in capsys.readouterr().err


def test_compare_checkpoints_passes_residual_to_its_barrier_matrix(tmp_path):
    model = _gpt2()
    checkpoints = {"a": model.state_dict(), "b": _permuted(model)}
    common = dict(objective=_objective(model), measures=[], line=[0.0], num_directions=1,
                  align="weights",
                  barrier_points=5, progress=False)  # fmt: skip
    found = ls.compare_checkpoints(model, checkpoints, residual=True, **common)
    plain = ls.compare_checkpoints(model, checkpoints, **common)
    assert abs(found.barriers.after[0, 1]) < 1e-10 and plain.barriers.after[0, 1] > 1e-3
    assert found.barriers.settings["residual"] is True
    with pytest.raises(ValueError, match="expected align= with residual=True"):
        ls.compare_checkpoints(model, checkpoints, objective=_objective(model), measures=[],
                               line=[0.0], residual=True, barriers=True)  # fmt: skip
