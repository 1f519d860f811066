"""Damaged values are found: every block of stored values carries a checksum, verified on
read, on resume and by ``landscape info``; what a "complete" mark claims but the file
lacks (or holds damaged) is computed again."""

import shutil

import h5py
import numpy as np
import pytest
import torch

from landscape.cli import main
from landscape.compare import compare_checkpoints
from landscape.directions import random_directions
from landscape.sharpness import SharpnessResult, load_sharpness, save_sharpness
from landscape.surface import compute_surface, load_surface


def small_run(path=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    g = torch.Generator().manual_seed(1)
    data = (torch.randn(20, 4, generator=g), torch.randint(0, 3, (20,), generator=g))
    return compute_surface(model, data, random_directions(model), np.linspace(-1, 1, 5),
                           np.linspace(-1, 1, 4), path=path, progress=False)  # fmt: skip


def flip_high_byte(path, dataset, index=0):
    """Flip the exponent byte of one float64 (2.544 -> about 6e-309, as on a bad disk)."""
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset() + 8 * index + 7
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x7F
    path.write_bytes(bytes(blob))


def test_a_flipped_byte_in_a_surface_is_refused_by_info_and_load_and_recomputed(tmp_path, capsys):
    path = tmp_path / "s.h5"
    small_run(path)
    before = load_surface(path)["loss"][0, 0]
    flip_high_byte(path, "metrics/loss")
    with h5py.File(path, "r") as f:
        assert f["metrics/loss"][0, 0] != before  # the damage is there
    with pytest.raises(ValueError, match="do not match their checksum"):
        load_surface(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "do not match their checksum" in err and len(err.splitlines()) == 1
    resumed = small_run(path)  # the resume computes the values again
    assert load_surface(path) == resumed == small_run()


def test_a_flipped_byte_in_a_result_group_is_refused(tmp_path, capsys):
    path = tmp_path / "r.h5"
    samples = np.array([2.544, 1.5, 0.25])
    result = SharpnessResult("rise", float(samples.mean()), 0.1, {"seed": 0}, samples=samples)
    save_sharpness(path, {"rise": result})
    assert load_sharpness(path)["rise"] == result
    flip_high_byte(path, "sharpness/rise/samples")
    with pytest.raises(ValueError, match="/sharpness/rise does not match its checksum"):
        load_sharpness(path)
    assert main(["info", str(path)]) == 2
    assert "does not match its checksum" in capsys.readouterr().err


def comparison(path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    g = torch.Generator().manual_seed(1)
    data = (torch.randn(20, 4, generator=g), torch.randint(0, 3, (20,), generator=g))
    states = {"a": {k: v.clone() for k, v in model.state_dict().items()}}
    states["b"] = {k: v + 0.1 for k, v in states["a"].items()}
    line = np.linspace(-1, 1, 3)
    return compare_checkpoints(model, states, data, measures=["rise"], line=line,
                               num_directions=1, path=path, progress=False,
                               num_samples=2)  # fmt: skip


def test_a_complete_label_that_lost_or_damaged_a_group_is_computed_again(tmp_path):
    reference = comparison(tmp_path / "ref.h5")
    lost, damaged = tmp_path / "lost.h5", tmp_path / "damaged.h5"
    shutil.copy(tmp_path / "ref.h5", lost)
    with h5py.File(lost, "a") as f:
        del f["compare/a/line"]
    shutil.copy(tmp_path / "ref.h5", damaged)
    flip_high_byte(damaged, "compare/b/line/loss")
    for path in (lost, damaged):
        again = comparison(path)
        assert again.to_markdown() == reference.to_markdown()
        with h5py.File(path, "r") as f, h5py.File(tmp_path / "ref.h5", "r") as g:
            for label in ("a", "b"):
                line = f"compare/{label}/line/loss"
                assert np.array_equal(f[line][()], g[line][()]), (path, label)
