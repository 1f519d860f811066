"""The attack: kills at random times, two writers, a full disk, torn reads, damaged files.

Each case ends in a file that the same command completes, equal to a run never
interrupted, or in one line saying what is wrong; never a traceback or a mixed result.
"""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
import torch
from _shared import ROOT, held_by_a_writer, one_line_error, user_project

from landscape import storage
from landscape.cli import main
from landscape.directions import random_directions
from landscape.hessian import load_hessian
from landscape.sharpness import load_sharpness
from landscape.surface import compute_surface, load_surface

# a process that runs the command line, killed by SIGKILL when it writes its second group
KILLED_IN_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    from landscape.storage import groups

    fill, calls = groups._fill_group, []

    def fill_then_die(*args):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        fill(*args)

    groups._fill_group = fill_then_die
    from landscape.cli import main

    sys.exit(main(sys.argv[1:]))
    """
)
GRID = ("--x=-1:1:8", "--y=-1:1:5", "--points-per-pass", "1")


@pytest.fixture
def project(tmp_path):
    user_project(tmp_path, delay=0.05)  # model() sleeps 0.05 s a call, fast() never
    return tmp_path


def command(project, name, out, *extra, model="model"):
    return [
        name, "--model", f"{project}/user.py:{model}", "--checkpoint", str(project / "a.pt"),
        "--data", f"{project}/user.py:data", "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


def spawn(args, script=None):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    head = ["-c", script] if script else ["-m", "landscape"]
    return subprocess.Popen([sys.executable, *head, *args], env=env, stderr=subprocess.PIPE)


# ---------------------------------------------------------------- kills
@pytest.mark.slow  # killed and rerun command lines: 19s on 2 busy cores
def test_random_kills_then_the_same_command_equals_a_run_never_killed(project):
    reference, killed = project / "ref.h5", project / "killed.h5"
    assert main(command(project, "surface", reference, *GRID)) == 0
    args = command(project, "surface", killed, *GRID)
    rng = np.random.default_rng(0)
    for delay in rng.uniform(0.5, 4.5, size=3):  # start-up, creation, or mid-run
        proc = spawn(args)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert main(args) == 0
    ref, res = load_surface(reference), load_surface(killed)
    assert res.attrs["num_computed"] == res.attrs["num_points"] == 40
    for name in ref.metrics:
        assert np.array_equal(ref[name], res[name]), name
    assert sorted(os.listdir(project)) == ["a.pt", "killed.h5", "ref.h5", "user.py"]


HESSIAN_RESULTS = textwrap.dedent(
    """
    import numpy as np
    from landscape.hessian import EigenResult, ExtremeEigenvalues, save_hessian

    eigen = EigenResult(np.array([2.0]), np.eye(1, 3), np.zeros(1), 9, True, ("w",),
                        {"w": (3,)}, {"seed": 0})
    extremes = ExtremeEigenvalues(2.0, -1.0, 0.5, np.zeros(2), 9, True, {"seed": 0})
    """
)


@pytest.mark.slow  # a command line killed while saving, then rerun: 20s on 2 busy cores
def test_a_kill_while_saving_leaves_a_file_that_the_rerun_completes(project):
    out = project / "h.h5"
    save = HESSIAN_RESULTS + f"save_hessian({str(out)!r}, eigen=eigen, extremes=extremes)\n"
    sharp = command(project, "sharpness", out, "--metric", "rise", "avg_l2",
                    "--num-samples", "2", model="fast")  # fmt: skip
    # killed while writing a new file, then while adding to an existing one
    for args, what in (([], "new file"), (sharp, "existing file")):
        script = KILLED_IN_SAVE.replace("sys.exit(main(sys.argv[1:]))", save) if not args else None
        proc = spawn(args, script or KILLED_IN_SAVE)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL, what
        assert out.exists() == (what == "existing file")
        if args:
            assert main(args) == 0, what
        else:
            exec(save, {})
    results = load_hessian(out)
    assert results.eigen.eigenvalues.tolist() == [2.0] and results.extremes.ratio == 0.5
    assert sorted(load_sharpness(out)) == ["avg_l2", "rise"]
    with h5py.File(out, "r") as f:
        assert storage.groups.STAGING not in f


# ---------------------------------------------------------------- two writers
@pytest.mark.slow  # two writers in subprocesses: 12s on 2 busy cores
def test_a_second_writer_is_refused_and_the_first_file_stays_intact(project, capsys, monkeypatch):
    out = project / "c.h5"
    first = spawn(command(project, "surface", out, *GRID))
    deadline = time.monotonic() + 60
    while not held_by_a_writer(out) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert held_by_a_writer(out), "the first run should hold its file by now"
    for extra in ((), ("--overwrite",)):
        assert main(command(project, "surface", out, *GRID, *extra)) == 2
        one_line_error(capsys, "open for writing by another process")

    def never(*args, **kwargs):
        raise AssertionError("computed before checking --out")

    monkeypatch.setattr(sys.modules["landscape.sharpness"], "sharpness", never)
    assert main(command(project, "sharpness", out, "--metric", "rise")) == 2
    one_line_error(capsys, "open for writing by another process")
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()
    surface = load_surface(out)
    assert surface.attrs["num_computed"] == 40 and np.isfinite(surface["loss"]).all()


# ---------------------------------------------------------------- full disk
def fail_flushes_after(monkeypatch, num_ok):
    flush, calls = h5py.File.flush, []

    def flush_or_fail(self):
        calls.append(1)
        if len(calls) > num_ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        flush(self)

    monkeypatch.setattr(h5py.File, "flush", flush_or_fail)


def small_run(path=None, **options):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    g = torch.Generator().manual_seed(1)
    data = (torch.randn(20, 4, generator=g), torch.randint(0, 3, (20,), generator=g))
    return compute_surface(model, data, random_directions(model), np.linspace(-1, 1, 5),
                           np.linspace(-1, 1, 4), path=path, progress=False,
                           points_per_pass=1, **options)  # fmt: skip


def test_a_full_disk_is_one_line_and_the_file_resumes(project, capsys, monkeypatch):
    out = project / "full.h5"
    with monkeypatch.context() as patch:  # full from the start: nothing is left behind
        fail_flushes_after(patch, 0)
        assert main(command(project, "surface", out, "--x=-1:1:3", model="fast")) == 1
    one_line_error(capsys, f"no space left on device writing {out}")
    assert sorted(os.listdir(project)) == ["a.pt", "user.py"]
    path = project / "s.h5"
    with monkeypatch.context() as patch:  # full after the creation and two writes
        fail_flushes_after(patch, 5)
        with pytest.raises(RuntimeError, match="no space left on device writing"):
            small_run(path, write_interval=0.0)
    done = storage.read_computed(path)
    assert 0 < done.sum() < done.size
    resumed, never_stopped = small_run(path), small_run()
    assert load_surface(path) == resumed == never_stopped


# ---------------------------------------------------------------- torn reads
def test_values_reach_the_file_before_the_mask_and_readers_read_the_mask_first(
    tmp_path, monkeypatch
):
    path = tmp_path / "s.h5"
    small_run(path)
    log = []
    setitem, getitem, flush = h5py.Dataset.__setitem__, h5py.Dataset.__getitem__, h5py.File.flush

    def logged_set(self, key, value):
        log.append(("set", self.name))
        setitem(self, key, value)

    def logged_get(self, key):
        log.append(("get", self.name))
        return getitem(self, key)

    def logged_flush(self):
        log.append(("flush", None))
        flush(self)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", logged_set)
    monkeypatch.setattr(h5py.Dataset, "__getitem__", logged_get)
    monkeypatch.setattr(h5py.File, "flush", logged_flush)
    x, y, metrics, _, computed = storage.load_surface_arrays(path)
    reads = [name for kind, name in log if kind == "get"]
    assert reads.index("/computed") < min(reads.index(f"/metrics/{n}") for n in metrics)
    log.clear()
    with storage.SurfaceWriter(path) as writer:
        writer.write(metrics, computed)
    mask = log.index(("set", "/computed"))
    assert ("flush", None) in log[:mask] and log[-1] == ("flush", None)
    assert all(kind == "set" and name.startswith("/metrics/") for kind, name in log[: mask - 1])


# ---------------------------------------------------------------- clear errors
def test_outputs_that_cannot_be_written_each_get_their_own_line(project, capsys):
    folder = project / "folder"
    folder.mkdir()
    (project / "half.h5").write_bytes(b"")
    cases = {
        folder: "is a directory; give a file name",
        project / "missing" / "s.h5": "no such folder for the output",
        project / "half.h5": "is an empty file (its creation was cut short?)",
    }
    if os.path.isdir("/sys") and not os.access("/sys", os.W_OK | os.X_OK) or os.geteuid() == 0:
        cases["/sys/landscape.h5"] = "cannot write /sys/landscape.h5"
    for out, message in cases.items():
        assert main(command(project, "surface", out, "--x=-1:1:3", model="fast")) == 2
        one_line_error(capsys, message)
    with pytest.raises(SystemExit):
        main(["plot", str(project / "half.h5"), "-o", ""])
    assert "expected a figure file name" in capsys.readouterr().err


# ---------------------------------------------------------------- damaged files
def _flip(path, offset):
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0xFF
    path.write_bytes(bytes(blob))


def _edit(change):
    def damage(path):
        with h5py.File(path, "a") as f:
            change(f)

    return damage


def _replace(name, data):
    def change(f):
        del f[name]
        f[name] = data

    return _edit(change)


def _flip_in_directions(path):
    with h5py.File(path, "r") as f:
        offset = f["directions/x/0.weight"].id.get_offset()
    _flip(path, offset + 3)


def _flip_format(path):
    _flip(path, path.read_bytes().index(b"landscape.surface") + 16)


def _truncate_at(fraction):
    def damage(path):
        blob = path.read_bytes()
        path.write_bytes(blob[: int(len(blob) * fraction)])

    return damage


DAMAGE = {
    "empty": (_truncate_at(0), "is an empty file"),
    "truncated at 1%": (_truncate_at(0.01), "is a truncated HDF5 file"),
    "truncated at 50%": (_truncate_at(0.5), "is a truncated HDF5 file"),
    "truncated by 1 byte": (lambda p: p.write_bytes(p.read_bytes()[:-1]), "truncated HDF5"),
    "flipped signature": (lambda p: _flip(p, 1), "not a readable HDF5 file"),
    "flipped format": (_flip_format, "not a landscape file"),
    "loss of another shape": (_replace("metrics/loss", np.zeros((5, 3))), "metric 'loss'"),
    "loss of ints": (_replace("metrics/loss", np.zeros((5, 4), int)), "metric 'loss'"),
    "mask of another shape": (_replace("computed", np.ones(5, bool)), "/computed should be"),
    "mask of floats": (_replace("computed", np.ones((5, 4))), "/computed should be bool"),
    "format_version 99": (_edit(lambda f: f.attrs.__setitem__("format_version", 99)), "99"),
    "no coords": (_edit(lambda f: f.__delitem__("coords")), "/coords/x is missing"),
    "no coords/y": (_edit(lambda f: f.__delitem__("coords/y")), r"should be bool of shape \(5,\)"),
    "no metrics": (_edit(lambda f: f.__delitem__("metrics")), "/metrics is missing"),
    "no computed": (_edit(lambda f: f.__delitem__("computed")), "/computed is missing"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_each_damaged_file_is_refused_in_one_line(tmp_path, capsys, kind):
    damage, message = DAMAGE[kind]
    path = tmp_path / "s.h5"
    small_run(path)
    damage(path)
    with pytest.raises(ValueError, match=message) as loading:
        load_surface(path)
    assert "\n" not in str(loading.value)
    with pytest.raises(ValueError) as resuming:
        small_run(path)
    assert "\n" not in str(resuming.value)
    assert main(["info", str(path)]) == 2
    one_line_error(capsys, str(path))


def test_directions_that_differ_from_their_fingerprint_are_refused(tmp_path, capsys):
    path = tmp_path / "s.h5"
    small_run(path)
    _flip_in_directions(path)
    load_surface(path)  # the values are intact
    for read in (small_run, storage.load_directions):
        with pytest.raises(ValueError, match="do not match their fingerprint"):
            read(path)
