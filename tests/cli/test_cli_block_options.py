"""``landscape hessian --per-block --off-block --block-density``: the CLI's off-block shares
and block densities equal ``block_curvature``'s, are stored and read back, resume like
the other per-block results, and ``landscape plot --kind blocks`` draws them."""

from __future__ import annotations

import inspect
import json
import textwrap

import h5py
import numpy as np
import pytest
import torch
from _shared import one_line_error

from landscape.checkpoint import load_checkpoint, save_checkpoint
from landscape.cli import main
from landscape.cli.commands import _BLOCK_COUNTS
from landscape.evaluate import Objective
from landscape.hessian import block_curvature, load_hessian

USER_CODE = textwrap.dedent("""
    import torch
    from torch import nn

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2))

    def data():
        g = torch.Generator().manual_seed(0)
        return torch.randn(12, 3, generator=g), torch.randint(0, 2, (12,), generator=g)
""")  # fmt: skip
BLOCK_OPTIONS = ["--off-block", "--off-block-probes", "5", "--block-density",
                 "--block-density-probes", "2", "--block-lanczos-steps", "4"]  # fmt: skip


@pytest.fixture
def project(tmp_path):
    (tmp_path / "user.py").write_text(USER_CODE)
    namespace: dict = {}
    exec(USER_CODE, namespace)
    save_checkpoint(namespace["model"](), tmp_path / "a.pt")
    common = ["--model", f"{tmp_path}/user.py:model", "--checkpoint", str(tmp_path / "a.pt"),
              "--data", f"{tmp_path}/user.py:data", "--quiet", "--num-eigenpairs", "1",
              "--num-probes", "6", "--float64", "--seed", "3"]  # fmt: skip
    return tmp_path, namespace, common


def test_cli_block_options_equal_the_python_call_and_round_trip(project, capsys, monkeypatch):
    folder, namespace, common = project
    out = folder / "h.h5"
    assert main(["hessian", *common, "--per-block", *BLOCK_OPTIONS, "--out", str(out)]) == 0
    assert "off-block share of the whole Hessian" in capsys.readouterr().out
    model = load_checkpoint(namespace["model"](), folder / "a.pt")
    expected = block_curvature(
        Objective(model, namespace["data"](), loss="cross_entropy"), num_probes=6, seed=3,
        dtype=torch.float64, progress=False, off_block=True, num_off_block_probes=5,
        densities=True, num_density_probes=2, num_lanczos_steps=4,
    )  # fmt: skip
    found = load_hessian(out).blocks
    assert list(found.values) == list(expected.values) == ["0", "2"]
    for block, values in expected.values.items():
        for key in ("lambda_max", "trace", "off_block_share", "off_block_stderr"):
            assert found.values[block][key] == pytest.approx(values[key], rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(found.off_block_samples[block],
                                   expected.off_block_samples[block], rtol=1e-12)  # fmt: skip
        stored, computed = found.densities[block], expected.densities[block]
        for name in ("grid", "density", "nodes", "weights"):
            np.testing.assert_allclose(getattr(stored, name), getattr(computed, name),
                                       rtol=1e-12, atol=1e-300)  # fmt: skip
        assert stored.num_hvps == computed.num_hvps == 2 * 4
    assert found.off_block == pytest.approx(expected.off_block, rel=1e-12)
    np.testing.assert_allclose(found.js_distance, expected.js_distance, rtol=1e-12, atol=1e-15)
    assert found.num_hvps == expected.num_hvps
    for key in ("num_off_block_probes", "num_density_probes", "num_lanczos_steps"):
        assert found.settings[key] == expected.settings[key]
    with h5py.File(out, "r") as f:  # self-describing: the settings beside the values
        assert f["hessian/blocks"].attrs["num_off_block_probes"] == 5
        assert f["hessian/blocks/0/density"].attrs["num_steps"] == 4

    drawn = []  # plot --kind blocks: the bars, the densities and the distances
    monkeypatch.setattr("landscape.plotting.save_figure", lambda fig, path: drawn.append(fig))
    assert main(["plot", str(out), "--kind", "blocks", "-o", str(folder / "b.png")]) == 0
    bars, spectra, distances = drawn[0].axes[:3]
    assert len(bars.patches) == 4 and len(spectra.lines) == 2
    np.testing.assert_array_equal(distances.images[0].get_array(), found.js_distance)


def test_reruns_reuse_or_refuse_as_the_per_block_results_do(project, capsys):
    folder, _, common = project
    out = folder / "h.h5"
    base = ["hessian", *common, "--per-block", "--out", str(out)]
    assert main([*base, "--off-block", "--off-block-probes", "2"]) == 0
    assert load_hessian(out).blocks.densities is None
    # the same settings (a count given as its default included): nothing to compute
    assert main([*base, "--off-block", "--off-block-probes", "2"]) == 0
    assert "nothing to compute" in capsys.readouterr().out
    # other block settings: /hessian/blocks is refused, named, before any work
    for other in (["--off-block", "--off-block-probes", "3"], [], ["--block-density"]):
        assert main([*base, *other]) == 2
        assert "/hessian/blocks from another command" in one_line_error(capsys, "--overwrite")
    # a plain run's groups are reused by one that adds the block options (they shape only
    # /hessian/blocks), and one without them resumes as before
    plain = folder / "plain.h5"
    assert main(["hessian", *common, "--out", str(plain)]) == 0
    written = load_hessian(plain).eigen.eigenvalues
    assert main(["hessian", *common, "--per-block", "--off-block", "--off-block-probes", "2",
                 "--out", str(plain)]) == 0  # fmt: skip
    found = load_hessian(plain)
    np.testing.assert_array_equal(found.eigen.eigenvalues, written)
    assert found.blocks.off_block is not None
    assert main(["hessian", *common, "--out", str(plain)]) == 0
    assert "nothing to compute" in capsys.readouterr().out


@pytest.mark.parametrize(
    "given, expected",
    [
        (["--off-block"], "expected --per-block with --off-block, got --off-block without"),
        (["--block-density"], "expected --per-block with --block-density, got"),
        (["--per-block", "--off-block-probes", "3"],
         "expected --off-block with --off-block-probes, got --off-block-probes without"),
        (["--per-block", "--block-lanczos-steps", "3"],
         "expected --block-density with --block-lanczos-steps"),
    ],
)  # fmt: skip
def test_block_options_need_their_flag(project, capsys, given, expected):
    folder, _, common = project
    assert main(["hessian", *common, *given, "--out", str(folder / "x.h5")]) == 2
    one_line_error(capsys, expected)
    assert not (folder / "x.h5").exists()


def test_a_run_without_block_options_records_the_identity_it_did_before(project):
    from landscape.cli._resume import command_identity
    from landscape.cli.parser import build_parser

    _, _, common = project
    args = build_parser().parse_args(["hessian", *common, "--per-block", "--out", "h.h5"])
    for group in (None, "hessian/blocks"):  # files written before the options still resume
        recorded = json.loads(command_identity(args, group))
        assert not {"off_block", *_BLOCK_COUNTS, "block_density"} & set(recorded)


def test_the_cli_defaults_are_block_curvatures():
    defaults = inspect.signature(block_curvature).parameters
    for option, (_, keyword, default) in _BLOCK_COUNTS.items():
        assert defaults[keyword].default == default, option
