import os
import signal
import textwrap
import time

import h5py
import numpy as np
import pytest
import torch
from _shared import ROOT
from torch import nn

from landscape import storage
from landscape.directions import Directions, random_directions
from landscape.objective import Objective
from landscape.surface import compute_surface, load_surface, parse_range


class Quadratic(nn.Module):
    """Loss 1/2 (w - c)^T A (w - c) over the flat parameters, through a batch_loss closure."""

    def __init__(self, A, c):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(3, dtype=torch.float64))
        self.register_buffer("A", A)
        self.register_buffer("c", c)

    def value(self):
        r = torch.cat([self.weight.reshape(-1), self.bias]) - self.c
        return 0.5 * r @ self.A @ r


def quadratic_loss(model, batch):
    count = len(batch[1])
    return model.value() * count, count


def make_quadratic():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(15, 15, generator=g, dtype=torch.float64)
    model = Quadratic(m @ m.T + torch.eye(15, dtype=torch.float64), torch.randn(15, generator=g))
    return model, (torch.zeros(5, 1), torch.zeros(5))


def test_quadratic_plane_matches_closed_form_on_non_square_grid():
    model, data = make_quadratic()
    dirs = random_directions(model, seed=1)
    xs, ys = np.linspace(-1, 2, 7), np.linspace(-0.5, 0.5, 4)
    surface = compute_surface(model, data, dirs, xs, ys, batch_loss=quadratic_loss, progress=False)
    flat = lambda s: torch.cat([s["weight"].reshape(-1), s["bias"]]).detach().numpy()  # noqa: E731
    theta = flat(dict(model.named_parameters()))
    u, v = flat(dirs.x), flat(dirs.y)
    A, c = model.A.numpy(), model.c.numpy()
    expected = np.empty((7, 4))
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            r = theta + a * u + b * v - c
            expected[i, j] = 0.5 * r @ A @ r
    assert surface["loss"].shape == (7, 4)
    np.testing.assert_allclose(surface["loss"], expected, rtol=1e-12, atol=0)


def mlp_with_bn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4)
    )


def classification_data(n=53):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_centre_is_the_checkpoint_to_the_last_bit_and_model_is_unchanged():
    model = mlp_with_bn().train()
    with torch.no_grad():
        model[1].running_mean.add_(0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = classification_data()
    surface = compute_surface(
        model, data, random_directions(model), [-1, 0, 1], [-0.5, 0, 0.5, 1], progress=False
    )
    assert surface["loss"][1, 1] == Objective(model, data)()["loss"]
    assert surface["accuracy"].shape == (3, 4)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_line_has_one_axis_and_labels():
    model = mlp_with_bn()
    surface = compute_surface(
        model, classification_data(), random_directions(model, num=1), [-1, 0, 1], progress=False
    )
    assert surface.y is None and surface["loss"].shape == (3,)
    assert "filter" in surface.attrs["x_label"]
    with pytest.raises(ValueError, match="two directions"):
        compute_surface(model, classification_data(), random_directions(model, num=1), [0], [0])


def test_file_round_trip_and_mismatched_resume_refused(tmp_path):
    model, data = mlp_with_bn(), classification_data()
    dirs = random_directions(model, seed=0)
    path = tmp_path / "s.h5"
    kwargs = dict(path=path, progress=False)
    surface = compute_surface(model, data, dirs, [-1, 0, 1], [0, 1], **kwargs)
    back = load_surface(path)
    assert np.array_equal(back.x, surface.x) and np.array_equal(back.y, surface.y)
    for name in surface.metrics:
        assert np.array_equal(back[name], surface[name])
    assert back.attrs["num_computed"] == 6 and back.attrs["checkpoint_sha256"]
    stored = storage.load_directions(path)
    assert all(torch.equal(stored[0][n], dirs.x[n]) for n in dirs.x)

    other_model = mlp_with_bn()
    with torch.no_grad():
        other_model[0].weight.mul_(2)
    cases = {
        "grid y": dict(model=model, data=data, directions=dirs, y=[0, 1, 2]),
        "checkpoint_sha256": dict(model=other_model, data=data, directions=dirs, y=[0, 1]),
        "directions_sha256": dict(
            model=model, data=data, directions=random_directions(model, seed=1), y=[0, 1]
        ),
        "data_sha256": dict(model=model, data=classification_data(54), directions=dirs, y=[0, 1]),
        "precision": dict(model=model, data=data, directions=dirs, y=[0, 1], precision="bf16"),
    }
    for what, case in cases.items():
        with pytest.raises(ValueError, match=what):
            compute_surface(case["model"], case["data"], case["directions"], [-1, 0, 1],
                            case["y"], precision=case.get("precision", "fp32"),
                            **kwargs)  # fmt: skip
    redone = compute_surface(model, data, dirs, [-1, 0, 1], [0, 1, 2], overwrite=True, **kwargs)
    assert redone["loss"].shape == (3, 3)


def test_truncated_and_foreign_files_give_clear_errors(tmp_path):
    model, data = mlp_with_bn(), classification_data()
    path = tmp_path / "s.h5"
    compute_surface(model, data, random_directions(model), [0, 1], [0, 1], path=path,
                    progress=False)  # fmt: skip
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(ValueError, match="is a truncated HDF5 file"):
        load_surface(path)
    import h5py

    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a landscape file"):
        compute_surface(model, data, random_directions(model), [0], [0], path=foreign)
    with pytest.raises(FileNotFoundError):
        load_surface(tmp_path / "missing.h5")


def test_non_finite_values_are_kept_and_not_recomputed(tmp_path):
    model, data = mlp_with_bn(), classification_data()
    dirs = random_directions(model)
    big = Directions({n: t * 1e38 for n, t in dirs.x.items()}, dirs.y, kind="custom")
    surface = compute_surface(model, data, big, [0, 10], [0], path=tmp_path / "s.h5",
                              progress=False)  # fmt: skip
    assert not np.isfinite(surface["loss"][1, 0])
    assert storage.read_computed(tmp_path / "s.h5").all()


def test_parse_range():
    np.testing.assert_array_equal(parse_range("-1:1:3"), [-1.0, 0.0, 1.0])
    for bad in ["1:2", "a:b:c", "0:1:0", "0:inf:3"]:
        with pytest.raises(ValueError, match="START:STOP:NUM"):
            parse_range(bad)


SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    from torch import nn
    from landscape.directions import random_directions
    from landscape.surface import compute_surface

    def slow_accuracy(outputs, targets):
        time.sleep(0.01)
        return (outputs.argmax(-1) == targets).sum()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))
    g = torch.Generator().manual_seed(1)
    data = (torch.randn(40, 6, generator=g), torch.randint(0, 4, (40,), generator=g))
    compute_surface(model, data, random_directions(model), torch.linspace(-1, 1, 9).tolist(),
                    torch.linspace(-1, 1, 7).tolist(), metrics={"slow": slow_accuracy},
                    batch_size=8, path=sys.argv[1], write_interval=0.0, progress=False)
    """
)


def test_kill_and_resume_equals_uninterrupted(tmp_path, zygote):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=ROOT)
    reference, resumed = tmp_path / "ref.h5", tmp_path / "resumed.h5"

    def run(path):  # the script in a process of its own (forked with the imports done)
        return zygote.start(path=str(script), args=(str(path),), cwd=str(tmp_path), env=env)

    assert run(reference).wait(timeout=120).returncode == 0
    for delay in (1.0, 0.5):  # of a run of about 3.5 s: each kill lands mid-run
        child = run(resumed)
        deadline = time.monotonic() + 60
        while not resumed.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=60).returncode == -signal.SIGKILL
    done = storage.read_computed(resumed)
    assert 0 < done.sum() < done.size, "the kill should land mid-run"
    assert run(resumed).wait(timeout=120).returncode == 0
    ref, res = load_surface(reference), load_surface(resumed)
    assert res.attrs["num_computed"] == res.attrs["num_points"] == 63
    for name in ref.metrics:
        assert np.array_equal(ref[name], res[name]), name


def test_convexity_map_of_a_quadratic_is_its_eigenvalue_ratio():
    model, data = make_quadratic()
    surface = compute_surface(model, data, random_directions(model, seed=2), [-1, 0, 1],
                              [0, 1], batch_loss=quadratic_loss, convexity=True,
                              progress=False)  # fmt: skip
    eigenvalues = torch.linalg.eigvalsh(model.A)
    expected = float(eigenvalues[0] / eigenvalues[-1])
    assert surface["convexity"].shape == (3, 2)
    np.testing.assert_allclose(surface["convexity"], expected, atol=1e-3)
    assert surface.attrs["metrics"] == ["loss", "convexity"]


def test_save_surface_round_trip_then_resume_fills_the_gaps(tmp_path):
    from landscape.surface import save_surface

    model, data = mlp_with_bn(), classification_data()
    dirs = random_directions(model)
    full = compute_surface(model, data, dirs, [-1, 0, 1], [0, 1], progress=False)
    holed = {n: v.copy() for n, v in full.metrics.items()}
    for values in holed.values():
        values[2, 1] = np.nan
    partial = type(full)(full.x, full.y, holed, attrs=full.attrs)
    save_surface(partial, tmp_path / "s.h5", directions=dirs)
    with pytest.raises(ValueError, match="exists"):
        save_surface(partial, tmp_path / "s.h5")
    assert storage.read_computed(tmp_path / "s.h5").sum() == 5
    resumed = compute_surface(model, data, dirs, [-1, 0, 1], [0, 1], path=tmp_path / "s.h5",
                              progress=False)  # fmt: skip
    for name in full.metrics:
        assert np.array_equal(resumed[name], full[name])


def test_a_loaded_surface_equals_the_computed_one(tmp_path):
    model, data = mlp_with_bn(), classification_data()
    dirs = random_directions(model, seed=3, orthogonalize=True)
    computed = compute_surface(model, data, dirs, [-1, 0, 1], [0, 1], path=tmp_path / "s.h5",
                               progress=False)  # fmt: skip
    loaded = load_surface(tmp_path / "s.h5")
    assert loaded.attrs["metrics"] == ["loss", "accuracy"]
    assert loaded.attrs["direction_settings"]["orthogonalize"] is True
    assert loaded == computed


def test_an_objective_is_used_as_it_is(monkeypatch):
    model, data = mlp_with_bn(), classification_data()
    dirs = random_directions(model, seed=0)
    reference = compute_surface(model, data, dirs, [-1, 0, 1], [0, 1], progress=False)
    objective = Objective(model, data)

    def no_new_objective(*args, **kwargs):
        raise AssertionError("compute_surface built another Objective")

    monkeypatch.setattr(Objective, "__init__", no_new_objective)
    calls = [
        compute_surface(objective, dirs, [-1, 0, 1], [0, 1], progress=False),
        compute_surface(objective, dirs, [-1, 0, 1], y=[0, 1], progress=False),
        compute_surface(objective, dirs, x=[-1, 0, 1], y=[0, 1], progress=False),
        compute_surface(objective, directions=dirs, x=[-1, 0, 1], y=[0, 1], progress=False),
    ]
    assert all(surface == reference for surface in calls)
    line = compute_surface(objective, random_directions(model, num=1), [0, 1], progress=False)
    assert line["loss"].shape == (2,)
    with pytest.raises(ValueError, match=r"\['batch_size', 'loss'\] configure the Objective"):
        compute_surface(objective, dirs, [0], [0], loss="mse", batch_size=4)
    with pytest.raises(TypeError, match="directions must be a Directions"):
        compute_surface(objective, [0], [0])


def test_a_shuffling_dataloader_resumes_and_equals_one_in_order(tmp_path):
    model = mlp_with_bn()
    dataset = torch.utils.data.TensorDataset(*classification_data())
    dirs = random_directions(model, seed=0)

    def shuffled():
        return torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True)

    path = tmp_path / "s.h5"
    with pytest.warns(UserWarning, match="shuffles"):
        first = compute_surface(model, shuffled(), dirs, [-1, 0, 1], [0, 1], path=path,
                                progress=False)  # fmt: skip
    with h5py.File(path, "a") as f:  # as a run killed after four points leaves it
        f["computed"][2, :] = False
        for name in first.metrics:
            f["metrics"][name][2, :] = np.nan
    with pytest.warns(UserWarning, match="shuffles"):
        resumed = compute_surface(model, shuffled(), dirs, [-1, 0, 1], [0, 1], path=path,
                                  progress=False)  # fmt: skip
    in_order = torch.utils.data.DataLoader(dataset, batch_size=8)
    expected = compute_surface(model, in_order, dirs, [-1, 0, 1], [0, 1], progress=False)
    for name in expected.metrics:
        assert np.array_equal(first[name], expected[name]), name
        assert np.array_equal(resumed[name], expected[name]), name


def test_a_surface_with_accuracy_off_never_computes_it(monkeypatch):
    import landscape.objective.core as core

    calls = [0]
    real = core.resolve_accuracy

    def counting(loss):
        metric = real(loss)

        def accuracy(outputs, targets):
            calls[0] += 1
            return metric(outputs, targets)

        return accuracy

    monkeypatch.setattr(core, "resolve_accuracy", counting)
    model, data = mlp_with_bn().eval(), classification_data()
    dirs = random_directions(model, seed=0)
    off = compute_surface(model, data, dirs, [-1, 0, 1], [0, 1], accuracy=False, progress=False)
    assert list(off.metrics) == ["loss"] and off.attrs["metrics"] == ["loss"]
    assert calls[0] == 0
    on = compute_surface(model, data, dirs, [-1, 0, 1], [0, 1], progress=False)
    assert calls[0] == 6 and list(on.metrics) == ["loss", "accuracy"]  # the control
    np.testing.assert_array_equal(on["loss"], off["loss"])
    with pytest.raises(ValueError, match="accuracy"):  # an Objective's option, given twice
        compute_surface(Objective(model, data), dirs, [0], accuracy=False, progress=False)


def test_surfaces_run_no_forward_pass_beyond_their_points(monkeypatch):
    """A surface forwards its points' examples and a 32-example probe, nothing else (0.2:
    a first-batch pass to check the labels and one for the probe, each call); a series
    over checkpoints through ``Objective.at`` makes no copy of the model either."""
    import landscape.objective.workspace as workspace

    model, data = mlp_with_bn().eval(), classification_data(n=200)
    seen = [0]
    model.register_forward_pre_hook(
        lambda module, args: seen.__setitem__(0, seen[0] + len(args[0]))
    )
    copies = [0]
    real = workspace.copy.deepcopy
    monkeypatch.setattr(
        workspace.copy, "deepcopy", lambda *a: (copies.__setitem__(0, copies[0] + 1), real(*a))[1]
    )
    objective = Objective(model, data, batch_size=200)
    dirs = random_directions(model, seed=0)
    checkpoints = [model.state_dict(), {n: t + 0.1 for n, t in model.state_dict().items()}]
    for i, checkpoint in enumerate(checkpoints):
        seen[0] = 0
        compute_surface(objective.at(checkpoint), dirs, [-1.0, 0.5], [0.0, 1.0], progress=False)
        assert seen[0] <= 4 * 200 + 32, (i, seen[0])
    assert copies[0] == 1  # the private module, made once for the whole series


def test_the_model_form_builds_the_objective_and_the_old_keyword_still_works():
    model, data = mlp_with_bn().eval(), classification_data()
    dirs = random_directions(model, seed=0)
    by_objective = compute_surface(Objective(model, data), dirs, [-1, 1], progress=False)
    by_model = compute_surface(model, data, dirs, [-1, 1], progress=False)
    np.testing.assert_array_equal(by_model["loss"], by_objective["loss"])
    with pytest.warns(DeprecationWarning, match="first argument"):
        old = compute_surface(model=model, data=data, directions=dirs, x=[-1, 1], progress=False)
    np.testing.assert_array_equal(old["loss"], by_objective["loss"])
    with pytest.raises(TypeError, match="expected an Objective or an nn.Module first, got dict"):
        compute_surface({}, data, dirs, [0], progress=False)
