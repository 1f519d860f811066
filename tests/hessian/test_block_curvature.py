"""Curvature per block: each block's ``lambda_max`` and trace against the dense Hessian."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from _shared import dense_hessian as shared_dense_hessian
from matplotlib.figure import Figure
from torch import nn

from landscape.checkpoint import save_checkpoint
from landscape.cli import main
from landscape.evaluate import Objective
from landscape.hessian import block_curvature, default_blocks, load_hessian, save_hessian
from landscape.plotting import plot_block_curvature
from landscape.sharpness import load_sharpness

DTYPE = torch.float64


class Tiny(nn.Module):
    """Transformer-like: an embedding, residual layers in a ModuleList, a head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(4, 2)
        self.h = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
        self.head = nn.Linear(2, 4)

    def forward(self, tokens):
        x = self.emb(tokens)
        for layer in self.h:
            x = x + torch.tanh(layer(x))
        return self.head(x)


class GPTish(nn.Module):
    """Blocks under ``transformer`` and an output head tied to the token embedding."""

    def __init__(self):
        super().__init__()
        self.transformer = nn.ModuleDict({"wte": nn.Embedding(5, 3), "wpe": nn.Embedding(4, 3)})
        self.transformer.h = nn.ModuleList([nn.Linear(3, 3) for _ in range(2)])
        self.transformer.ln_f = nn.LayerNorm(3)
        self.lm_head = nn.Linear(3, 5, bias=False)
        self.lm_head.weight = self.transformer.wte.weight


def tiny_objective():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 4, (16,), generator=g)
    return Objective(Tiny().double(), (tokens, (tokens + 1) % 4))


def dense_hessian(objective):
    """The float64 Hessian of the mean loss over all weights, and the weights' names."""
    hessian, index = shared_dense_hessian(objective.model, next(iter(objective.batches())))
    return hessian.numpy(), index


def block_of(hessian, index, names):
    rows = np.concatenate([index[n] for n in names])
    return hessian[np.ix_(rows, rows)]


def test_default_blocks_of_a_module_list_model_and_of_a_tied_gpt():
    assert default_blocks(Tiny()) == {
        "emb": ["emb.weight"], "h.0": ["h.0.weight", "h.0.bias"],
        "h.1": ["h.1.weight", "h.1.bias"], "head": ["head.weight", "head.bias"],
    }  # fmt: skip
    assert list(default_blocks(GPTish())) == [
        "transformer.wte", "transformer.wpe", "transformer.h.0", "transformer.h.1",
        "transformer.ln_f",
    ]  # fmt: skip


def test_each_block_equals_the_dense_diagonal_block():
    objective = tiny_objective()
    hessian, index = dense_hessian(objective)
    result = block_curvature(objective, num_probes=36, progress=False)
    assert list(result.values) == ["emb", "h.0", "h.1", "head"]
    for block, names in result.names.items():
        h = block_of(hessian, index, names)
        values = result[block]
        assert values["lambda_max"] == pytest.approx(np.linalg.eigvalsh(h).max(), rel=1e-7)
        assert values["trace"] == pytest.approx(np.trace(h), rel=1e-9, abs=1e-12)
        assert values["trace_stderr"] == 0.0  # Hutch++ with 3 n probes is exact
        assert result.num_params[block] == len(h) and result.converged[block]
    sampled = block_curvature(objective, {"layers": "h.*"}, num_probes=8, method="hutchinson",
                              progress=False)["layers"]  # fmt: skip
    exact = np.trace(block_of(hessian, index, ["h.0.weight", "h.0.bias", "h.1.weight",
                                                "h.1.bias"]))  # fmt: skip
    assert sampled["trace_stderr"] > 0
    assert abs(sampled["trace"] - exact) < 4 * sampled["trace_stderr"]


def test_user_blocks_params_and_errors():
    objective = tiny_objective()
    result = block_curvature(objective, params="h.*.weight", num_probes=6, progress=False)
    assert result.names == {"h.0": ("h.0.weight",), "h.1": ("h.1.weight",)}
    assert result.settings["params"] == ["h.0.weight", "h.1.weight"]
    with pytest.raises(ValueError, match="'hed.*' matches no tensor; close names"):
        block_curvature(objective, {"head": "hed.*"}, progress=False)
    with pytest.raises(ValueError, match="no '/'"):
        block_curvature(objective, {"a/b": "head.*"}, progress=False)


def test_stored_loaded_back_equal_and_plotted(tmp_path):
    result = block_curvature(tiny_objective(), num_probes=6, progress=False)
    save_hessian(tmp_path / "h.h5", blocks=result)
    assert load_hessian(tmp_path / "h.h5").blocks == result
    assert result.table().splitlines()[2].startswith("| emb | 8 | ")
    ax = plot_block_curvature(result, Figure().add_subplot())
    assert len(ax.patches) == 8
    assert [t.get_text() for t in ax.get_xticklabels()] == list(result.values)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        r"largest eigenvalue $\lambda_{\max}$",
        "trace, error bars ±1.96 standard errors",
    ]


def test_cli_per_block_and_params(tmp_path, capsys, monkeypatch):
    (tmp_path / "user.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def model():
            torch.manual_seed(0)
            return nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2))

        def data():
            g = torch.Generator().manual_seed(0)
            return torch.randn(12, 3, generator=g), torch.randint(0, 2, (12,), generator=g)
    """))  # fmt: skip
    namespace: dict = {}
    exec((tmp_path / "user.py").read_text(), namespace)
    save_checkpoint(namespace["model"](), tmp_path / "a.pt")
    common = ["--model", f"{tmp_path}/user.py:model", "--checkpoint", str(tmp_path / "a.pt"),
              "--data", f"{tmp_path}/user.py:data", "--quiet"]  # fmt: skip
    out = tmp_path / "h.h5"
    assert main(["hessian", *common, "--top-k", "1", "--per-block", "--num-probes", "6",
                 "--params", "0.*", "2.weight", "--out", str(out)]) == 0  # fmt: skip
    found = load_hessian(out)
    assert found.eigen.names == ("0.weight", "0.bias", "2.weight")
    assert found.blocks.names == {"0": ("0.weight", "0.bias"), "2": ("2.weight",)}
    assert "| 2 | 4 |" in capsys.readouterr().out
    drawn = []  # landscape plot --kind blocks draws the per-block bars
    monkeypatch.setattr("landscape.plotting.save_figure", lambda fig, path: drawn.append(fig))
    assert main(["plot", str(out), "--kind", "blocks", "-o", str(tmp_path / "b.png")]) == 0
    (ax,) = drawn[0].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "2"] and len(ax.patches) == 4
    heights = [p.get_height() for p in ax.patches]
    assert heights[:2] == [found.blocks.values[b]["lambda_max"] for b in ("0", "2")]
    assert main(["sharpness", *common, "--metric", "avg_l2", "--num-samples", "3",
                 "--params", "2.*", "--out", str(out)]) == 0  # fmt: skip
    assert load_sharpness(out)["avg_l2"].settings["params"] == ["2.weight", "2.bias"]
    assert main(["hessian", *common, "--params", "2.wieght", "--out", str(tmp_path / "x.h5")]) == 2
    assert "close names: ['2.weight'" in capsys.readouterr().err
