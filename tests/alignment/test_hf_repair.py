"""REPAIR for Hugging Face GPT-2 and Llama (issue 23, item 2): the MLPs' input layers
(``c_fc``; ``gate_proj`` and ``up_proj``) are rescaled at a point of a path so that each
unit's output has the interpolated endpoints' standard deviation (and, with a bias, mean),
exactly; attention heads and the residual stream are left as they are."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import landscape as ls
from landscape.alignment import permutation_spec
from landscape.alignment.repair import Repairer, unit_layers

transformers = pytest.importorskip("transformers")


def gpt2(seed: int) -> nn.Module:
    config = transformers.GPT2Config(vocab_size=20, n_positions=8, n_embd=16, n_layer=2,
                                     n_head=2, attn_implementation="eager")  # fmt: skip
    torch.manual_seed(seed)
    net = transformers.GPT2LMHeadModel(config).double().eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.3)
    return net


def llama(seed: int) -> nn.Module:
    config = transformers.LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=24,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2)  # fmt: skip
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config).double().eval()


def unit_stats(model: nn.Module, names: list[str], ids: torch.Tensor) -> dict:
    """Mean and standard deviation of each layer's output units over every token."""
    found, hooks = {}, []
    for name in names:

        def hook(module, inputs, output, name=name):
            x = output.detach().reshape(-1, output.shape[-1])
            found[name] = x.mean(0), (x.pow(2).mean(0) - x.mean(0) ** 2).sqrt()

        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    return found


@pytest.mark.parametrize("make, biased", [(gpt2, True), (llama, False)])
def test_repaired_units_have_the_interpolated_statistics(make, biased):
    a, b = make(0), make(1)
    ids = torch.randint(0, 20, (6, 8), generator=torch.Generator().manual_seed(2))
    objective = ls.Objective(a, [(ids, ids)], loss="causal_lm")
    names = [name for name, _, _ in unit_layers(a, permutation_spec(a))]
    assert names and all(n.endswith(("c_fc", "gate_proj", "up_proj")) for n in names)
    sa, sb = a.state_dict(), b.state_dict()
    middle = {k: 0.5 * (sa[k] + sb[k]) if sa[k].is_floating_point() else sa[k] for k in sa}
    fixed = Repairer(objective, sa, sb)(middle, 0.5)
    moved = sorted(k for k in fixed if not torch.equal(fixed[k], middle[k]))
    assert moved and all(k.rsplit(".", 1)[0] in names for k in moved)  # only those layers
    ends = unit_stats(a, names, ids), unit_stats(b, names, ids)
    model = make(0)
    model.load_state_dict(fixed)
    got = unit_stats(model, names, ids)
    for name in names:
        sd = 0.5 * (ends[0][name][1] + ends[1][name][1])
        torch.testing.assert_close(got[name][1], sd, rtol=1e-9, atol=1e-12)
        if biased:
            mean = 0.5 * (ends[0][name][0] + ends[1][name][0])
            torch.testing.assert_close(got[name][0], mean, rtol=1e-9, atol=1e-12)
