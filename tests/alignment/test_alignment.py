"""Permutation alignment: the symmetry derived from the module graph, weight and activation
matching, REPAIR, barriers after alignment, merging."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
from torch import nn

import landscape as ls
from landscape.alignment import (
    Repairer,
    align,
    merge,
    permutation_spec,
    permute_state,
)
from landscape.paths import connect_checkpoints, evaluate_path
from landscape.paths.curves import Curve

pytestmark = pytest.mark.usefixtures("one_thread_per_module")


# ---------------------------------------------------------------- models
class _Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


class _ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.block1, self.block2 = _Block(4), _Block(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.block2(self.block1(x))
        return self.head(x.mean(dim=(2, 3)))


class _TiedLM(nn.Module):
    """Embedding, a residual stream of LayerNorm and MLP blocks, and a tied head."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.ln1, self.up, self.down = nn.LayerNorm(6), nn.Linear(6, 10), nn.Linear(10, 6)
        self.gate = nn.Linear(6, 10)
        self.ln_f, self.head = nn.LayerNorm(6), nn.Linear(6, 11, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        x = self.emb(ids)
        h = self.ln1(x)
        x = x + self.down(nn.functional.silu(self.gate(h)) * self.up(h))
        return self.head(self.ln_f(x))


class _GPTBlock(nn.Module):
    def __init__(self, d: int, heads: int, length: int):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d), nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2, self.fc, self.proj = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.register_buffer("mask", torch.triu(torch.ones(length, length, dtype=torch.bool), 1))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=self.mask, need_weights=False)[0]
        return x + self.proj(nn.functional.gelu(self.fc(self.ln2(x))))


class _TinyGPT(nn.Module):
    """A GPT-2-style decoder: token and position embeddings, pre-norm blocks of causal
    multi-head attention and an MLP on a residual stream, a head tied to the embedding."""

    def __init__(self, vocab=11, d=8, heads=2, length=5, layers=2):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(length, d)
        self.blocks = nn.Sequential(*[_GPTBlock(d, heads, length) for _ in range(layers)])
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight
        self.register_buffer("positions", torch.arange(length))

    def forward(self, ids):
        x = self.tok(ids) + self.pos(self.positions)
        return self.head(self.ln_f(self.blocks(x)))


class _SdpaAttention(nn.Module):
    def __init__(self, d: int, heads: int, scale: bool = False):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.register_buffer("scale", torch.linspace(0.5, 1.5, d // heads) if scale else None)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = (
            p(x).view(b, t, self.heads, c // self.heads).transpose(1, 2)
            for p in (self.q, self.k, self.v)
        )
        if self.scale is not None:
            q = q * self.scale  # a fixed tensor on the query dimensions
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).contiguous().view(b, t, c))


class _TinyLlama(nn.Module):
    """Llama-style without rotary embeddings: RMSNorm, attention through
    ``scaled_dot_product_attention``, a SwiGLU MLP without biases, positions from
    ``arange``."""

    def __init__(self, scale: bool = False):
        super().__init__()
        self.tok, self.pos = nn.Embedding(11, 8), nn.Embedding(5, 8)
        self.norm1, self.attn = nn.RMSNorm(8), _SdpaAttention(8, 2, scale)
        self.norm2, self.head = nn.RMSNorm(8), nn.Linear(8, 11)
        self.gate, self.up = nn.Linear(8, 16, bias=False), nn.Linear(8, 16, bias=False)
        self.down = nn.Linear(16, 8, bias=False)

    def forward(self, ids):
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        x = x + self.attn(self.norm1(x))
        h = self.norm2(x)
        return self.head(x + self.down(nn.functional.silu(self.gate(h)) * self.up(h)))


def _mlp():
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3))


def _cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 2), nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 2 * 2, 3),
    )  # fmt: skip


CASES = {
    "mlp": (_mlp, lambda: torch.randn(9, 5)),
    "cnn_bn": (_cnn, lambda: torch.randn(9, 1, 8, 8)),
    "resnet": (_ResNet, lambda: torch.randn(9, 1, 5, 5)),
    "tied_lm": (_TiedLM, lambda: torch.randint(0, 11, (3, 4))),
    "tiny_gpt": (_TinyGPT, lambda: torch.randint(0, 11, (3, 5))),
    "tiny_llama": (_TinyLlama, lambda: torch.randint(0, 11, (3, 5))),
    "tiny_llama_scaled": (lambda: _TinyLlama(scale=True), lambda: torch.randint(0, 11, (3, 5))),
}


def _random(builder, seed):
    """A float64 model with random weights and BatchNorm statistics, in eval mode."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        model = builder().double().eval()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
    return model


def _input(case):
    x = CASES[case][1]()
    return x.double() if x.is_floating_point() else x


def _random_perms(spec, seed):
    """Random permutations; an attention module's by whole heads and within each head."""
    g = torch.Generator().manual_seed(seed)
    perms = {k: torch.randperm(n, generator=g) for k, n in spec.sizes.items()}
    for num, groups in spec.heads.values():
        order = torch.randperm(num, generator=g)
        for group in groups:
            d = spec.sizes[group] // num
            inner = [order[h] * d + torch.randperm(d, generator=g) for h in range(num)]
            perms[group] = torch.cat(inner)
    return perms


# ---------------------------------------------------------------- the symmetry
def test_spec_of_an_mlp_lists_each_hidden_layer():
    spec = permutation_spec(_mlp())
    assert spec.sizes == {"0": 7, "2": 6}
    assert spec.axes["2.weight"] == ("2", "0") and spec.axes["4.weight"] == (None, "2")
    assert "4.bias" not in spec.axes  # the outputs stay put


def test_spec_shares_one_permutation_along_a_residual_stream():
    spec = permutation_spec(_ResNet())
    assert sorted(spec.sizes) == ["block1.conv1", "block2.conv1", "stem"]
    for name in ("bn.weight", "block1.bn2.running_mean", "block2.conv2.weight"):
        assert spec.axes[name][0] == "stem"
    assert spec.axes["block1.conv1.weight"][:2] == ("block1.conv1", "stem")


def test_spec_ties_the_embedding_and_head_and_carries_layernorm():
    spec = permutation_spec(_TiedLM())
    assert spec.axes["emb.weight"] == spec.axes["head.weight"] == (None, "emb")
    assert spec.axes["ln1.weight"] == spec.axes["ln_f.bias"] == ("emb",)
    assert spec.axes["gate.weight"][0] == spec.axes["up.weight"][0]  # x * y: one group


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_permutation_preserves_the_function(case):
    model = _random(CASES[case][0], 0)
    spec = permutation_spec(model)
    moved = copy.deepcopy(model)
    moved.load_state_dict(permute_state(model.state_dict(), spec, _random_perms(spec, 1)))
    x = _input(case)
    changed = any(not torch.equal(v, model.state_dict()[k]) for k, v in moved.state_dict().items())
    assert changed
    with torch.no_grad():
        assert (moved(x) - model(x)).abs().max() < 1e-10


@pytest.mark.parametrize("case", sorted(CASES))
def test_weight_matching_recovers_a_random_permutation_exactly(case):
    model = _random(CASES[case][0], 0)
    spec = permutation_spec(model)
    shuffled = permute_state(model.state_dict(), spec, _random_perms(spec, 2))
    result = align(model, shuffled)
    for name, value in model.state_dict().items():
        assert torch.equal(result.state[name], value), name
    assert result.objective_after > result.objective_before


@pytest.mark.parametrize("case", sorted(CASES))
def test_aligned_model_computes_what_model_b_computes(case):
    a, b = _random(CASES[case][0], 0), _random(CASES[case][0], 1)
    before = copy.deepcopy(b.state_dict())
    for method in ("weights", "activations"):
        x = _input(case)
        data = (x, torch.zeros(len(x), dtype=torch.long))
        result = align(a, b, method=method, data=data)
        with torch.no_grad():
            assert (result.model(data[0]) - b(data[0])).abs().max() < 1e-10
        assert result.objective_after >= result.objective_before
    for name, value in b.state_dict().items():  # model_b never changed
        assert torch.equal(value, before[name])
    assert not b.training


def test_activation_matching_recovers_a_random_permutation_exactly():
    model = _random(_mlp, 0)
    spec = permutation_spec(model)
    shuffled = copy.deepcopy(model)
    shuffled.load_state_dict(permute_state(model.state_dict(), spec, _random_perms(spec, 3)))
    data = (torch.randn(64, 5, dtype=torch.float64), torch.zeros(64, dtype=torch.long))
    result = align(model, shuffled, method="activations", data=data)
    for name, value in model.state_dict().items():
        assert torch.equal(result.state[name], value), name
    assert result.objective_after == pytest.approx(1.0, abs=1e-12)


def test_attention_is_permuted_by_whole_heads_qk_and_v_apart():
    model = _random(_TinyGPT, 0)
    spec = permutation_spec(model)
    assert spec.heads["blocks.0.attn"] == (2, ("blocks.0.attn.qk", "blocks.0.attn.v"))
    qkv = ("blocks.0.attn.qk", "blocks.0.attn.qk", "blocks.0.attn.v")
    assert spec.axes["blocks.0.attn.in_proj_weight"] == (qkv, "tok")
    assert spec.axes["blocks.0.attn.out_proj.weight"] == ("tok", "blocks.0.attn.v")
    ids = _input("tiny_gpt")
    perms = _random_perms(spec, 5)
    for group, shuffled in ((None, None), ("blocks.0.attn.qk", [1, 6, 7, 0, 4, 3, 2, 5])):
        moved = dict(perms)
        if group is not None:  # dimensions moved across the two heads of 4
            moved[group] = torch.tensor(shuffled)
        net = copy.deepcopy(model)
        net.load_state_dict(permute_state(model.state_dict(), spec, moved))
        with torch.no_grad():
            error = float((net(ids) - model(ids)).abs().max())
        print(f"head-{'ignoring' if group else 'aware'} permutation: max change {error:.3g}")
        assert (error > 1e-3) if group else (error < 1e-10)


def test_sdpa_attention_heads_and_a_fixed_query_scale():
    spec = permutation_spec(_TinyLlama())
    assert list(spec.heads.values()) == [(2, ("attn.q", "attn.v"))]
    assert spec.axes["attn.k.weight"] == ("attn.q", "tok")  # query and key: one group
    assert spec.axes["attn.o.weight"] == ("tok", "attn.v")
    assert spec.axes["gate.weight"] == ("gate", "tok") and spec.axes["up.weight"][0] == "gate"
    fixed = permutation_spec(_TinyLlama(scale=True))  # the query dimensions cannot move,
    assert fixed.heads == {} and "attn.q" not in fixed.sizes  # so neither can the heads
    assert "attn.v" not in fixed.sizes and fixed.sizes["tok"] == 8


class _Mixer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        return self.fc2(self.fc1(x).flip(-1))  # a custom op mixing the channels


def test_unknown_graph_is_refused_before_any_work(monkeypatch):
    align_module = sys.modules["landscape.alignment.align"]

    def never(*args, **kwargs):
        raise AssertionError("matching started")

    monkeypatch.setattr(align_module, "weight_matching", never)
    with pytest.raises(ValueError, match=r"operation 'flip'.*expected layers") as info:
        align(_Mixer(), _Mixer())
    assert "\n" not in str(info.value)
    attention = nn.Sequential(nn.Linear(4, 4), nn.MultiheadAttention(4, 2))
    with pytest.raises(ValueError, match=r"cannot derive|module '1' \(MultiheadAttention\)"):
        permutation_spec(attention)


def test_softmax_on_the_outputs_is_accepted():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.LogSoftmax(-1))
    assert permutation_spec(model).sizes == {"0": 6}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_every_alignment_call_leaves_model_and_random_streams_unchanged():
    from test_model_unchanged import _assert_same, _data, _net, _objective, _snapshot

    model = _net()  # BatchNorm on the input, Dropout in train mode, an existing grad
    g = torch.Generator().manual_seed(1)
    other = {
        n: t + 0.1 * torch.randn(t.shape, generator=g, dtype=t.dtype)
        if t.is_floating_point()
        else t
        for n, t in model.state_dict().items()
    }
    hook = model.hidden.register_forward_hook(lambda *_: None)
    before = _snapshot(model)
    for call in (
        lambda: align(model, other),
        lambda: align(model, other, method="activations", data=_data()),
        lambda: merge([model, other], align="weights"),
        lambda: connect_checkpoints(
            _objective(model), model, other, curve="line", t=3, align="weights", repair="repair"
        ),
    ):
        call()
        _assert_same(before, model)
    hook.remove()


# ---------------------------------------------------------------- REPAIR and merging
def test_repair_gives_each_layer_the_interpolated_statistics():
    a, b = _random(_mlp, 0), _random(_mlp, 1)
    x = torch.randn(50, 5, dtype=torch.float64)
    objective = ls.Objective(a, (x, torch.randint(0, 3, (50,))))
    repairer = Repairer(objective, a.state_dict(), b.state_dict())
    mid = {k: torch.lerp(v, b.state_dict()[k], 0.3) for k, v in a.state_dict().items()}
    fixed = repairer(mid, 0.3)
    model = copy.deepcopy(a)
    model.load_state_dict(fixed)
    outs = {}
    for name in ("0", "2"):
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: outs.__setitem__(name, o)
        )
    stats = {}
    for net, key in ((a, "a"), (b, "b")):
        h1 = net[0](x)
        h2 = net[2](net[1](h1))
        stats[key] = {"0": h1, "2": h2}
    with torch.no_grad():
        model(x)
        for name in ("0", "2"):
            mean = 0.7 * stats["a"][name].mean(0) + 0.3 * stats["b"][name].mean(0)
            sd = 0.7 * stats["a"][name].std(0, unbiased=False)
            sd = sd + 0.3 * stats["b"][name].std(0, unbiased=False)
            assert torch.allclose(outs[name].mean(0), mean, atol=1e-10)
            assert torch.allclose(outs[name].std(0, unbiased=False), sd, atol=1e-10)
    assert repairer(mid, 0.0) == mid  # the ends are left as they are


def test_merge_of_a_model_and_its_permuted_copy_is_the_model_when_aligned():
    model = _random(_mlp, 0)
    spec = permutation_spec(model)
    shuffled = permute_state(model.state_dict(), spec, _random_perms(spec, 4))
    merged = merge([model, shuffled], [0.25, 0.75], align="weights")
    for name, value in model.state_dict().items():
        assert torch.allclose(merged.state[name], value, atol=1e-14)
    assert merged.align == "weights" and merged.weights.tolist() == [0.25, 0.75]
    assert np.isnan(merged.loss) and np.isnan(merged.losses).all()  # no data: no losses
    plain = merge([model, shuffled])
    assert not torch.allclose(plain.state["0.weight"], model.state_dict()["0.weight"])
    with pytest.raises(ValueError, match="expected 2 non-negative weights"):
        merge([model, shuffled], [1.0])


def test_merge_reports_its_loss_beside_the_ends_and_saves_a_loadable_checkpoint(tmp_path):
    from landscape import Objective, load_checkpoint

    model = _random(_mlp, 0)
    spec = permutation_spec(model)
    shuffled = permute_state(model.state_dict(), spec, _random_perms(spec, 4))
    other = _random(_mlp, 1)
    data = (torch.randn(30, 5, dtype=torch.float64), torch.randint(0, 3, (30,)))
    objective = Objective(model, data)
    end_losses = [objective(s)["loss"] for s in (model.state_dict(), other.state_dict())]
    merged = merge([model, other], [0.5, 0.5], data=data)  # the losses, measured
    assert merged.losses.tolist() == end_losses
    assert merged.loss == objective(merged.state)["loss"] == merged.metrics["loss"]
    assert "accuracy" in merged.metrics
    x = data[0]
    assert torch.equal(merged.model(x), torch.func.functional_call(model, merged.state, (x,)))
    aligned = merge([model, shuffled], align="activations", data=objective)
    assert aligned.loss == pytest.approx(aligned.losses[0], abs=1e-12)  # the model itself
    assert aligned.losses[0] == pytest.approx(aligned.losses[1], abs=1e-12)
    path = merged.save(tmp_path / "merged.pt")
    loaded = load_checkpoint(_random(_mlp, 2), path)
    assert all(torch.equal(v, merged.state[n]) for n, v in loaded.state_dict().items())
    assert objective(loaded.state_dict())["loss"] == merged.loss
    with pytest.raises(TypeError, match="expected model="):
        merge([model.state_dict(), other.state_dict()], data=data)


def test_reset_bn_is_bn_reestimate():
    model = _random(_cnn, 0)
    data = (torch.randn(20, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (20,)))
    objective = ls.Objective(model, data)
    other = _random(_cnn, 1).state_dict()
    line = Curve("line", model.state_dict(), other)
    old = evaluate_path(objective, line, 3, bn_reestimate=True)
    new = evaluate_path(objective, line, 3, repair="reset_bn")
    assert np.array_equal(old.loss, new.loss) and new.settings["repair"] == "reset_bn"
    with pytest.raises(ValueError, match="expected one of 'reset_bn', 'repair' for repair"):
        evaluate_path(objective, line, 3, repair="bn")


# ---------------------------------------------------------------- barriers on the digits
def _train_digits_mlp(x, y, seed, steps=120):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = [nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU()]
        model = nn.Sequential(*layers, nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        optimizer.step()
    return model.double().eval()


@pytest.fixture(scope="module")
def digits_pair():
    pytest.importorskip("sklearn", reason="needs scikit-learn's digits")
    from landscape.demo import digits_data

    x, y = digits_data("all")
    a, b = (_train_digits_mlp(x, y, seed) for seed in (0, 1))
    return a, b, (x.double(), y)


def test_weight_matching_and_repair_remove_the_digits_barrier(digits_pair):
    a, b, data = digits_pair
    objective = ls.Objective(a, data)
    plain = connect_checkpoints(objective, a, b, curve="line", t=11, align="weights")
    repaired = connect_checkpoints(
        objective, a, b, curve="line", t=11, align="weights", repair="repair"
    )
    before, after, fixed = plain.unaligned.barrier, plain.line.barrier, repaired.line.barrier
    print(f"digits MLP barrier: {before:.3g} -> aligned {after:.3g} -> REPAIR {fixed:.3g}")
    assert before > 0.2
    assert after <= 0.1 * before
    assert fixed < after
    assert plain.line.settings["barrier_unaligned"] == before
    perms = plain.line.settings["permutations"]
    rebuilt = permute_state(
        b.state_dict(), plain.alignment.spec, {k: torch.as_tensor(v) for k, v in perms.items()}
    )
    assert all(torch.equal(rebuilt[k], v) for k, v in plain.alignment.state.items())


def _train_digits_cnn(x, y, seed, steps=80):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        widths, layers, c_in = (32, 64, 64), [], 1
        for i, c in enumerate(widths):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
            layers += [nn.MaxPool2d(2)] if i == 1 else []
            c_in = c
        model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        optimizer.step()
    return model.double().eval()


@pytest.mark.slow  # two 32-64-64 CNNs trained on the digits: about 10 s of one core
def test_weight_matching_and_reset_bn_remove_the_digits_cnn_barrier():
    pytest.importorskip("sklearn", reason="needs scikit-learn's digits")
    from landscape.demo import digits_data

    x, y = digits_data("all")
    x = x.view(-1, 1, 8, 8)
    a, b = (_train_digits_cnn(x, y, seed) for seed in (0, 1))
    objective = ls.Objective(a, (x[:400].double(), y[:400]))
    start, aligned = a.state_dict(), align(a, b).state
    before = evaluate_path(objective, Curve("line", start, b.state_dict()), 5).barrier
    after = evaluate_path(objective, Curve("line", start, aligned), 5).barrier
    fixed = evaluate_path(objective, Curve("line", start, aligned), 5, repair="reset_bn").barrier
    print(f"digits CNN+BN barrier: {before:.4f} -> aligned {after:.4f} -> reset_bn {fixed:.4f}")
    assert after <= 0.4 * before
    assert fixed <= 0.5 * after


def _sequences(n, generator, vocab=11, length=5):
    """Arithmetic sequences mod ``vocab`` (random start and step 1-3): inputs and the next
    tokens. Predicting them needs attention to the earlier tokens."""
    start = torch.randint(0, vocab, (n, 1), generator=generator)
    step = torch.randint(1, 4, (n, 1), generator=generator)
    seq = (start + step * torch.arange(length + 1)) % vocab
    return seq[:, :-1], seq[:, 1:]


@pytest.mark.slow  # two tiny GPTs trained for 150 steps: 5-15 s on 2 loaded cores
def test_weight_matching_by_heads_lowers_the_barrier_between_two_tiny_gpts():
    models = []
    for seed in (0, 1):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _TinyGPT(11, 16, 2, 5, 1)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(seed)
        for _ in range(150):
            x, y = _sequences(64, g)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x).reshape(-1, 11), y.reshape(-1)).backward()
            optimizer.step()
        models.append(model.double().eval())
    a, b = models
    objective = ls.Objective(a, _sequences(512, torch.Generator().manual_seed(99)), loss="token_ce")
    connection = connect_checkpoints(objective, a, b, curve="line", t=11, align="weights")
    before, after = connection.unaligned.barrier, connection.line.barrier
    print(f"tiny GPT barrier: {before:.3f} -> aligned by heads {after:.3f}")
    assert after < 0.8 * before


class _FlattenedSequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(18, 2)

    def forward(self, x):  # (N, 3, 4) -> (N, 3, 6) -> (N, 18): units interleaved with time
        return self.fc2(torch.flatten(self.fc1(x), 1))


def test_flatten_of_a_sequence_of_units_is_refused():
    with pytest.raises(ValueError, match="operation 'flatten'"):
        permutation_spec(_FlattenedSequence())
    flat_conv = nn.Sequential(nn.Conv2d(1, 3, 2), nn.Flatten(), nn.Linear(3 * 4, 2))
    assert permutation_spec(flat_conv).axes["2.weight"] == (None, "0")  # blocks of 2x2
