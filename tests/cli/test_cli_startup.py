"""The command line starts at once: ``--help``, ``--version`` and argument errors load no
heavy library, Ctrl-C at any moment exits 130 in one line, and ``import landscape`` is lazy
with every public name still there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import landscape
from landscape.cli import build_parser, main

ROOT = Path(landscape.__file__).resolve().parents[1]
HEAVY = ("torch", "scipy", "matplotlib", "h5py")
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

#: The 64 public names of version 0.2: none may be lost.
NAMES_0_2 = (
    "BlockCurvature",
    "Comparison",
    "Correlation",
    "DensityResult",
    "Directions",
    "EigenResult",
    "ExtremeEigenvalues",
    "HessianOperator",
    "HessianResults",
    "MEASURES",
    "Objective",
    "SharpnessResult",
    "Surface",
    "TraceResult",
    "Tracker",
    "TrackingRun",
    "block_curvature",
    "compare_checkpoints",
    "compute_surface",
    "correlate",
    "extreme_eigenvalues",
    "file_sha256",
    "hessian_directions",
    "hessian_eigenpairs",
    "hessian_trace",
    "interpolation_direction",
    "landscape_style",
    "load_checkpoint",
    "load_hessian",
    "load_sharpness",
    "load_state",
    "load_surface",
    "load_tracking",
    "min_max_ratio",
    "normalize_direction",
    "parse_range",
    "pca_directions",
    "plot_block_curvature",
    "plot_comparison",
    "plot_contour",
    "plot_contourf",
    "plot_contours_compare",
    "plot_convexity",
    "plot_correlation",
    "plot_eigenvalues",
    "plot_heatmap",
    "plot_line",
    "plot_lines_compare",
    "plot_measures",
    "plot_spectral_density",
    "plot_surface3d",
    "plot_tracking",
    "project_states",
    "random_direction",
    "random_directions",
    "save_checkpoint",
    "save_figure",
    "save_hessian",
    "save_sharpness",
    "save_surface",
    "sharpness",
    "spectral_density",
    "write_correlation",
    "write_tables",
)


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter that imports this checkout; return its stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_help_version_and_argument_errors_import_no_heavy_library():
    code = (
        "import sys\n"
        "from landscape.cli import main\n"
        "codes = []\n"
        "for argv in (['--version'], ['--help'], ['surface', '--model', 'm:f'], ['nope'],\n"
        "             ['plot', 'f.h5', '--kind', 'nope', '-o', 'f.png'],\n"
        "             ['sharpness', '--model', 'm:f', '--seed', '-1']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit_:\n"
        "        codes.append(exit_.code)\n"
        f"print(codes, sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY})))"
    )
    assert run_python(code).splitlines()[-1] == "[0, 0, 2, 2, 2, 2] []"


def test_import_landscape_is_lazy_and_every_public_name_resolves():
    code = (
        "import sys, types, landscape as ls, landscape.cli\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY})))\n"
        "ls.compute_surface\n"
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)\n"
        "import landscape.sharpness, landscape.correlate\n"  # the submodules of the same name
        "from landscape import *\n"
        "missing = [n for n in ls.__all__ if n not in globals() or not hasattr(ls, n)]\n"
        "assert not missing, missing\n"
        "assert set(ls.__all__) <= set(dir(ls)), set(ls.__all__) - set(dir(ls))\n"
        "assert isinstance(ls.sharpness, types.FunctionType), ls.sharpness\n"
        "assert isinstance(ls.correlate, types.FunctionType), ls.correlate\n"
        "from landscape.sharpness import MEASURES\n"
        "assert MEASURES is ls.MEASURES and isinstance(ls.storage, types.ModuleType)\n"
        "print(len(ls.__all__))"
    )
    lines = run_python(code).splitlines()
    assert lines == ["[]", "True False", str(len(landscape.__all__))]
    assert set(NAMES_0_2) <= set(landscape.__all__)  # none lost
    with pytest.raises(AttributeError, match="no_such_name"):
        landscape.no_such_name  # noqa: B018


def test_help_opens_with_a_sentence_for_users(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    description = out.split("\n\n")[1]
    assert description.startswith("Loss landscapes of trained PyTorch models")
    assert "argparse" not in out and "landscape COMMAND --help" in out
    assert build_parser().description == description.replace("\n", " ")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored by main
    # the parser spells the library's choices itself (importing them would import torch)
    from landscape.cli.parser import LOSS_REDUCTIONS, NORMS
    from landscape.directions import NORMS as LIBRARY_NORMS
    from landscape.losses import LOSS_REDUCTIONS as LIBRARY_REDUCTIONS

    assert (NORMS, LOSS_REDUCTIONS) == (tuple(LIBRARY_NORMS), tuple(LIBRARY_REDUCTIONS))


SLEEPY_USER_CODE = """
import time

def model():
    time.sleep(60)

def data():
    return None
"""


@pytest.mark.parametrize("delay", [0.5, 1.0, 2.5])
def test_ctrl_c_during_the_start_exits_130_in_one_line(tmp_path, delay):
    """SIGINT while the modules load (or, later, in the user's code) ends in one line."""
    (tmp_path / "m.py").write_text(SLEEPY_USER_CODE)
    command = [sys.executable, "-m", "landscape", "surface", "--model", "m.py:model", "--data",
               "m.py:data", "--checkpoint", "c.pt", "--out", "o.h5", "--quiet"]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err == "landscape surface: interrupted; run it again to resume\n"
    assert not (tmp_path / "o.h5").exists()


def test_mismatch_hint_names_the_command_line_option(tmp_path, capsys):
    import torch
    from torch import nn

    from landscape.checkpoint import save_checkpoint

    code = (
        "import torch\nfrom torch import nn\n\n"
        "def model():\n    torch.manual_seed(0)\n    return nn.Linear(3, 2)\n\n"
        "def data():\n    return torch.ones(4, 3), torch.tensor([0, 1, 0, 1])\n"
    )
    (tmp_path / "m.py").write_text(code)
    model = nn.Linear(3, 2)
    state = dict(model.state_dict(), extra=torch.zeros(1))  # a name the model does not have
    save_checkpoint(state, tmp_path / "c.pt")
    user = {"--model": f"{tmp_path}/m.py:model", "--data": f"{tmp_path}/m.py:data"}
    user_args = [a for item in user.items() for a in item]
    args = ["sharpness", *user_args, "--checkpoint", str(tmp_path / "c.pt"),
            "--metric", "lambda_max", "--quiet"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a.h5")]) == 2
    err = capsys.readouterr().err
    assert "unexpected keys (1): extra" in err and "--no-strict" in err
    assert "strict=False" not in err and err.count("\n") == 1
    assert main([*args, "--no-strict", "--out", str(tmp_path / "b.h5")]) == 0
    assert "lambda_max" in capsys.readouterr().out
    # compare loads its checkpoints itself, with no such option: no hint then
    assert main(["compare", *user_args, str(tmp_path / "c.pt"), "--metric", "lambda_max",
                 "--x", "0:1:2", "--num-directions", "1", "--quiet",
                 "--out", str(tmp_path / "cmp")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "unexpected keys" in err and "strict" not in err
