"""A real full disk: a small tmpfs, mounted in a private mount namespace.

Each case runs the command line in one process inside ``unshare --user --map-root-user
--mount`` (or, as root, on a tmpfs mounted and unmounted around it), and checks: exit
status 1, one line on stderr, no temporary file, no crash at interpreter exit, and a
rerun once there is space that equals a run that never met a full disk.
"""

import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _shared import ROOT, user_project

from landscape.cli import main
from landscape.sharpness import load_sharpness
from landscape.surface import load_surface

# Runs steps inside the namespace: ["run", args, fill] runs the command line (with
# ``fill``, the disk is filled by another file right after the free-space check, so the
# writes themselves meet ENOSPC), ["rm", path], ["remount", size], ["copy", src, dst].
DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, os, shutil, subprocess, sys
    from landscape.storage import files
    from landscape.cli import main

    def fill(folder):
        fd = os.open(os.path.join(folder, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, bytes(4096))
        except OSError:
            os.close(fd)

    folder, steps = sys.argv[1], json.loads(sys.argv[2])
    report = []
    check = getattr(files, "check_space", None)  # None before version 0.3
    for step in steps:
        if step[0] == "run":
            def check_then_fill(path, num_bytes):
                check(path, num_bytes)
                fill(folder)
            if check is None and step[2]:
                fill(folder)
            elif check is not None:
                files.check_space = check_then_fill if step[2] else check
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                status = main(step[1])
            if check is not None:
                files.check_space = check
            report.append([status, err.getvalue(), sorted(os.listdir(folder))])
        elif step[0] == "rm":
            os.remove(step[1])
        elif step[0] == "remount":
            subprocess.run(["mount", "-o", f"remount,size={step[1]}", folder], check=True)
        elif step[0] == "copy":
            shutil.copy(step[1], step[2])
    print(json.dumps(report))
    """
)


@functools.lru_cache(maxsize=1)
def _tmpfs_wrapper():
    """How to run a command on a private tmpfs: ``"unshare"``, ``"root"``, or why not."""
    probe = os.path.join(ROOT, ".tmpfs-probe")
    os.makedirs(probe, exist_ok=True)
    try:
        mount = 'mount -t tmpfs -o size=16k tmpfs "$0"'
        try:
            done = subprocess.run(
                ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, probe],
                capture_output=True, timeout=30,
            )  # fmt: skip
            if done.returncode == 0:
                return "unshare"
            why = done.stderr.decode().strip()
        except (OSError, subprocess.SubprocessError) as err:
            why = str(err)
        if os.geteuid() == 0:
            if subprocess.run(["sh", "-c", mount, probe], capture_output=True).returncode == 0:
                subprocess.run(["umount", probe], check=True)
                return "root"
        return f"cannot mount a tmpfs (unshare: {why}; and not root)"
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def on_tmpfs(folder, size, steps):
    """Run ``steps`` (see DRIVER) with ``folder`` a tmpfs of ``size``; their reports."""
    how = _tmpfs_wrapper()
    if how not in ("unshare", "root"):
        pytest.skip(how)
    folder.mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    driver = [sys.executable, "-c", DRIVER, str(folder), json.dumps(steps)]
    script = f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"'
    if how == "unshare":
        head = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]
        done = subprocess.run([*head, str(folder), *driver], env=env, capture_output=True)
    else:
        script = f'mount -t tmpfs -o size={size} tmpfs "$0" && "$@"; s=$?; umount "$0"; exit $s'
        done = subprocess.run(["sh", "-c", script, str(folder), *driver], env=env,
                              capture_output=True)  # fmt: skip
    # no crash, and nothing printed at interpreter exit (h5py's ignored exceptions)
    assert done.returncode == 0 and not done.stderr, done.stderr.decode()[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture
def project(tmp_path):
    user_project(tmp_path)
    return tmp_path


def command(project, name, out, *extra):
    return [
        name, "--model", f"{project}/user.py:model", "--checkpoint", str(project / "a.pt"),
        "--data", f"{project}/user.py:data", "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


def one_line(stderr, path):
    assert stderr.startswith(f"landscape surface: error: no space left on device writing {path}")
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr


GRID = ("--x=-1:1:11", "--y=-1:1:9")


def equal_surfaces(project, path):
    assert main(command(project, "surface", project / "ref.h5", *GRID)) == 0
    ref, res = load_surface(project / "ref.h5"), load_surface(path)
    assert res.attrs["num_computed"] == res.attrs["num_points"] == 99
    for name in ref.metrics:
        assert np.array_equal(ref[name], res[name]), name


def test_a_disk_too_small_for_the_planned_file_is_refused_before_any_write(project):
    disk = project / "S"
    args = command(project, "surface", disk / "s.h5", *GRID)
    steps = [["run", args, False], ["remount", "2m"], ["run", args, False],
             ["copy", str(disk / "s.h5"), str(project / "s.h5")]]  # fmt: skip
    (status, err, files), (again, again_err, again_files) = on_tmpfs(disk, "16k", steps)
    assert status == 1, err
    one_line(err, disk / "s.h5")
    assert "it needs about" in err and files == []  # refused before anything was written
    assert again == 0 and again_err == "" and again_files == ["s.h5"]
    equal_surfaces(project, project / "s.h5")


def test_a_disk_that_fills_while_the_file_is_written_is_one_line_and_no_crash(project):
    disk = project / "S"
    args = command(project, "surface", disk / "s.h5", *GRID)
    steps = [["run", args, True], ["rm", str(disk / "filler")], ["run", args, False],
             ["copy", str(disk / "s.h5"), str(project / "s.h5")]]  # fmt: skip
    (status, err, files), (again, again_err, again_files) = on_tmpfs(disk, "1m", steps)
    assert status == 1, err
    one_line(err, disk / "s.h5")
    assert "it needs about" not in err  # the check passed: the writes met the full disk
    assert files == ["filler"]  # no temporary file left
    assert again == 0 and again_err == "" and again_files == ["s.h5"]
    equal_surfaces(project, project / "s.h5")


def test_a_full_disk_while_adding_results_leaves_the_file_as_it_was(project):
    disk = project / "S"
    out = disk / "r.h5"
    first = command(project, "sharpness", out, "--metric", "rise", "--num-samples", "2")
    second = command(project, "sharpness", out, "--metric", "avg_l2", "--num-samples", "2")
    steps = [["run", first, False], ["copy", str(out), str(project / "before.h5")],
             ["run", second, True], ["copy", str(out), str(project / "after.h5")],
             ["rm", str(disk / "filler")], ["run", second, False],
             ["copy", str(out), str(project / "r.h5")]]  # fmt: skip
    reports = on_tmpfs(disk, "1m", steps)
    assert [r[0] for r in reports] == [0, 1, 0], reports
    err = reports[1][1]
    assert err.startswith(f"landscape sharpness: error: no space left on device writing {out}")
    assert err.count("\n") == 1 and reports[1][2] == ["filler", "r.h5"]
    assert (project / "after.h5").read_bytes() == (project / "before.h5").read_bytes()
    assert main(command(project, "sharpness", project / "ref.h5", "--metric", "rise", "avg_l2",
                        "--num-samples", "2")) == 0  # fmt: skip
    assert load_sharpness(project / "r.h5") == load_sharpness(project / "ref.h5")
