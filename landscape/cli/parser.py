"""The argparse parser of every subcommand, and the option types it checks.

It imports nothing heavy (no torch, numpy, scipy, matplotlib or h5py): ``--help``,
``--version`` and a mistyped option answer at once, and each subcommand's function is
imported from :mod:`~landscape.cli.commands` only when it runs.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable

from .. import options
from ..options import values

DESCRIPTION = (
    "Loss landscapes of trained PyTorch models: surfaces around a checkpoint, Hessian "
    "spectra, sharpness measures, comparisons of checkpoints, and their plots."
)
EPILOG = "Run 'landscape COMMAND --help' for the options of a command."
RANGE_OPTIONS = ("--x", "--y")
NORMS = values(options.Norm)  # landscape.directions.NORMS (a test checks)
LOSS_REDUCTIONS = ("auto", "sum", "mean")  # landscape.losses.LOSS_REDUCTIONS (a test checks)
_NUMBER_RANGE = re.compile(r"^-[0-9.]")
# Figure types every matplotlib writes; another extension is checked with matplotlib itself.
_FIGURE_TYPES = ("eps", "jpeg", "jpg", "pdf", "pgf", "png", "ps", "svg", "svgz", "tif", "tiff")


def _command(name: str) -> Callable[[argparse.Namespace], None]:
    """``cmd_<name>`` of :mod:`~landscape.cli.commands`, imported when the command runs."""

    def run(args: argparse.Namespace) -> None:
        from . import commands

        return getattr(commands, f"cmd_{name}")(args)

    run.__name__ = run.__qualname__ = f"cmd_{name}"
    return run


# ---------------------------------------------------------------- parser
def _add_model_options(
    p: argparse.ArgumentParser, checkpoint: bool = True, strict: bool = True
) -> None:
    p.add_argument("--model", required=True, help="M:F, path/file.py:F or a built-in name")
    if checkpoint:
        p.add_argument("--checkpoint", required=True, help="checkpoint file (.pt or .safetensors)")
    if strict:
        p.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True,
                       help="require the checkpoints' names to be the model's (default); "
                       "--no-strict allows missing and unexpected names")  # fmt: skip
    p.add_argument("--data", required=True, help="M:F, path/file.py:F or a built-in name")
    p.add_argument("--loss", default="cross_entropy",
                   help="cross_entropy, mse, bce, causal_lm, token_ce or M:F")  # fmt: skip
    p.add_argument("--loss-reduction", choices=LOSS_REDUCTIONS, default="auto",
                   help="whether --loss M:F returns the batch sum or mean "
                   "(default: found on the first batch)")  # fmt: skip
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--train-mode", action="store_true",
                   help="evaluate in train mode (BatchNorm batch statistics, dropout)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="go on when a checkpoint or the first batch holds NaN or inf "
                   "(refused by default)")  # fmt: skip


def _add_measure_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", nargs="+", metavar="NAME", help="measure names (default: a set)")
    p.add_argument("--rho", type=float,
                   help="radius, for every chosen measure (default: each its own)")  # fmt: skip
    p.add_argument("--eps", type=float, help="Keskar box size, PAC-Bayes magnitude floor")
    p.add_argument("--num-samples", type=int,
                   help="Monte-Carlo samples or direction seeds, for every measure")  # fmt: skip
    p.add_argument("--target", type=float, help="PAC-Bayes loss increase target")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    _add_params_option(p)


def _add_params_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", nargs="+", metavar="PATTERN", default=None,
                   help="move only these weights: names or glob patterns ('*.lora_*', "
                   "'transformer.h.3.*'), or 'trainable' (default: all)")  # fmt: skip


def _add_block_options(p: argparse.ArgumentParser) -> None:
    """``hessian --per-block``'s extras, all ``None`` unless given: a file made without
    them records none of them, and still resumes (see ``_resume``)."""
    p.add_argument("--off-block", action="store_true", default=None,
                   help="with --per-block: also each block's off-block share "
                   "||H_{-b,b}||_F / ||H_{:,b}||_F and the whole Hessian's, with standard "
                   "errors")  # fmt: skip
    p.add_argument("--off-block-probes", type=_count, default=None, metavar="N",
                   help="Gaussian probes a block for --off-block (default 50)")  # fmt: skip
    p.add_argument("--block-density", action="store_true", default=None,
                   help="with --per-block: also each block's spectral density (SLQ) and the "
                   "Jensen-Shannon distance between every two blocks' densities")  # fmt: skip
    p.add_argument("--block-density-probes", type=_count, default=None, metavar="N",
                   help="probes a block for --block-density (default 10)")  # fmt: skip
    p.add_argument("--block-lanczos-steps", type=_count, default=None, metavar="N",
                   help="Lanczos steps a probe for --block-density (default 80)")  # fmt: skip


def _seed(text: str) -> int:
    """``--seed``: an integer in 0 .. 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in 0 .. 2**63 - 1, got {text!r}")
    return value


def _bytes(text: str) -> int:
    """A positive number of bytes, ``8e9`` or ``8000000000``."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected a positive number of bytes, got {text!r}")
    return int(value)


def _count(text: str) -> int:
    """A positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _levels(text: str) -> int | list[float]:
    """``--levels``: a count (``20``) or comma-separated values (``0.1,0.2,0.5``)."""
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return count
        return sorted(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive count (20) or comma-separated values (0.1,0.2,0.5), got {text!r}"
        ) from None


def _figure_path(text: str) -> str:
    """``-o``: a file name with an extension matplotlib knows."""
    stem, ext = os.path.splitext(os.path.basename(text))
    ext = ext[1:].lower()
    if stem and ext and ext not in _FIGURE_TYPES:  # a rarer type: ask matplotlib
        from matplotlib.backend_bases import FigureCanvasBase

        if ext in FigureCanvasBase.get_supported_filetypes():
            return text
    if not stem or ext not in _FIGURE_TYPES:
        raise argparse.ArgumentTypeError(
            f"expected a figure file name ending in one of .png, .pdf, .svg, ... got {text!r}"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(prog="landscape", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"landscape {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("surface", help="loss on a line or plane around a checkpoint")
    _add_model_options(p)
    p.add_argument("--out", required=True, help="HDF5 file to write (resumed if unfinished)")
    p.add_argument("--x", default="-1:1:51", help="START:STOP:NUM (default -1:1:51)")
    p.add_argument("--y", default=None, help="START:STOP:NUM; leave out for a 1D line")
    p.add_argument("--directions", choices=("random", "hessian", "interp", "pca"),
                   default="random")  # fmt: skip
    p.add_argument("--target", help="second checkpoint, for --directions interp")
    p.add_argument("--trajectory", nargs="+", metavar="CKPT",
                   help="checkpoints along training, for --directions pca")  # fmt: skip
    p.add_argument("--dir-file", help="reuse the directions stored in this landscape file")
    p.add_argument("--norm", choices=NORMS, default="filter")
    p.add_argument("--ignore", choices=values(options.Ignore), default="biasbn")
    p.add_argument("--x-norm", choices=NORMS, default=None, help="--norm for x only")
    p.add_argument("--y-norm", choices=NORMS, default=None, help="--norm for y only")
    p.add_argument("--dir-type", choices=values(options.DirType), default=None,
                   help="default: states for --directions interp (BatchNorm stats too), "
                   "else weights")  # fmt: skip
    p.add_argument("--orthogonalize", action="store_true")
    p.add_argument("--recipe", action="store_true",
                   help="random directions that are never stored: made again from the seed "
                   "at every point (memory: one perturbed copy of what moves)")  # fmt: skip
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace a file made by another run")
    p.add_argument("--precision", choices=values(options.Precision), default="fp32")
    p.add_argument("--points-per-pass", type=int, default=None,
                   help="grid points per pass over a batch (default: automatic)")  # fmt: skip
    p.add_argument("--no-cache-data", action="store_true",
                   help="re-read the data at every point (for data too big to keep)")  # fmt: skip
    p.add_argument("--convexity", action="store_true",
                   help="also map |lambda_min/lambda_max| of the Hessian (slow)")  # fmt: skip
    _add_params_option(p)
    p.set_defaults(func=_command("surface"))

    p = sub.add_parser("hessian", help="Hessian eigenpairs, trace and spectral density")
    _add_model_options(p)
    p.add_argument("--num-eigenpairs", "--top-k", dest="num_eigenpairs", type=_count, default=5,
                   help="number of eigenpairs (default 5; --top-k is its old name)")  # fmt: skip
    p.add_argument("--which", choices=values(options.Which), default="LA",
                   help="LA/SA largest/smallest algebraic, LM largest magnitude, "
                   "BE both ends (num-eigenpairs // 2 smallest, the rest largest)")  # fmt: skip
    p.add_argument("--trace", action="store_true", help="also the trace (Hutch++)")
    p.add_argument("--num-probes", type=int, default=99, help="trace probes (default 99)")
    p.add_argument("--density", action="store_true", help="also the spectral density (SLQ)")
    p.add_argument("--density-probes", type=int, default=10)
    p.add_argument("--float64", action="store_true", help="compute in float64")
    p.add_argument("--hvp", choices=values(options.HvpBackend), default=argparse.SUPPRESS,
                   help="Hessian-vector products: exact (double backward, the default), fd "
                   "(central differences of gradients, with a measured error) or auto; "
                   "--per-block stays exact")  # fmt: skip
    p.add_argument("--per-block", action="store_true",
                   help="also lambda_max and trace of each block's Hessian (layers, embeddings, "
                   "head)")  # fmt: skip
    _add_block_options(p)
    _add_params_option(p)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--max-memory", type=_bytes, default=None,
                   help="bytes the solvers may hold (default: the device's free memory); "
                   "a job that fits nowhere is refused before any HVP")  # fmt: skip
    p.add_argument(
        "--plan",
        action="store_true",
        help="print each job's memory plan and exit, computing nothing",
    )
    p.add_argument("--out", required=True, help="HDF5 file (results go to /hessian)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.set_defaults(func=_command("hessian"))

    p = sub.add_parser("sharpness", help="sharpness and flatness measures of a checkpoint")
    _add_model_options(p)
    _add_measure_options(p)
    p.add_argument("--out", required=True, help="HDF5 file (results go to /sharpness/NAME)")
    p.set_defaults(func=_command("sharpness"))

    p = sub.add_parser("compare", help="compare checkpoints: measures, lines, planes, table")
    _add_model_options(p, checkpoint=False, strict=False)
    p.add_argument("checkpoints", nargs="+", metavar="CKPT")
    p.add_argument("--test-data", help="held-out data (M:F or built-in), for the gap")
    _add_measure_options(p)
    p.add_argument("--x", default="-1:1:21", help="START:STOP:NUM of the lines")
    p.add_argument("--y", default=None, help="START:STOP:NUM: also a plane (x by y)")
    p.add_argument("--num-directions", type=_count, default=3, help="direction seeds per line")
    p.add_argument("--barriers", action="store_true",
                   help="also the loss barrier between every pair of checkpoints, stored in "
                   "/barriers and drawn as compare_barriers.png")  # fmt: skip
    p.add_argument("--align", choices=values(options.AlignMethod), default=None,
                   help="the barriers also after permuting each pair into one frame "
                   "(implies --barriers)")  # fmt: skip
    p.add_argument("--repair", choices=values(options.Repair), default=None,
                   help="at every point of the barriers' lines: reset_bn or REPAIR's "
                   "rescaling (implies --barriers)")  # fmt: skip
    p.add_argument("--barrier-points", type=_count, default=11,
                   help="points along each line between two checkpoints")  # fmt: skip
    p.add_argument("--residual", action="store_true", default=None,
                   help="with --align, for Hugging Face GPT-2 and Llama: permute the "
                   "residual stream too")  # fmt: skip
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_command("compare"))

    p = sub.add_parser("plot", help="plot a surface file")
    p.add_argument("file")
    kinds = ("line", "contour", "contourf", "heatmap", "surface3d", "density", "eigenvalues",
             "blocks", "trajectory", "paths", "tracking")  # fmt: skip
    p.add_argument("--kind", choices=kinds, default="contour",
                   help="density, eigenvalues and blocks (the curvature of each block, from "
                   "hessian --per-block, and its density with --block-density) are for "
                   "Hessian files, trajectory and paths "
                   "for those of landscape trajectory and connect, tracking for a "
                   "Tracker's file")  # fmt: skip
    p.add_argument("--metric", default="loss")
    p.add_argument("--log", action=argparse.BooleanOptionalAction, default=None,
                   help="log scale (default: when values span over 2 decades)")  # fmt: skip
    p.add_argument("--levels", type=_levels, default=None,
                   help="contour levels: a count (20) or values (0.1,0.2,0.5)")  # fmt: skip
    p.add_argument("--vmin", type=float, default=None, help="lowest value shown")
    p.add_argument("--vmax", type=float, default=None, help="highest value shown")
    p.add_argument("--title", default=None, help="axes title")
    p.add_argument("-o", "--output", required=True, type=_figure_path,
                   help="figure file (.png, .pdf, .svg)")  # fmt: skip
    p.set_defaults(func=_command("plot"))

    p = sub.add_parser("trajectory", help="a training run on its PCA plane, and the surface")
    _add_model_options(p, checkpoint=False)
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="the run's checkpoints, in order")
    p.add_argument("--steps", nargs="+", type=float, default=None,
                   help="step or epoch of each checkpoint (default 0, 1, ...)")  # fmt: skip
    p.add_argument("--num-points", type=int, default=21, help="grid points per axis")
    p.add_argument("--margin", type=float, default=0.25, help="grid margin around the path")
    p.add_argument("--out", required=True, help="HDF5 file (surface and /trajectory)")
    p.add_argument("--overwrite", action="store_true", help="replace a file made by another run")
    p.set_defaults(func=_command("trajectory"))

    p = sub.add_parser("connect", help="loss along the line and a fitted curve between minima")
    _add_model_options(p, checkpoint=False)
    p.add_argument("checkpoint_a", metavar="CKPT_A")
    p.add_argument("checkpoint_b", metavar="CKPT_B")
    p.add_argument("--curve", choices=("bezier", "polychain", "line"), default="bezier")
    p.add_argument("--num-points", type=int, default=25, help="points along each path")
    p.add_argument("--num-steps", type=int, default=500, help="optimizer steps of the fit")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate of the fit (Adam)")
    p.add_argument("--bn-reestimate", action="store_true",
                   help="recompute BatchNorm statistics at every point")  # fmt: skip
    p.add_argument("--align", choices=values(options.AlignMethod), default=None,
                   help="first permute CKPT_B's units into CKPT_A's frame (Git Re-Basin); "
                   "the line as given goes to /paths/unaligned")  # fmt: skip
    p.add_argument("--residual", action="store_true", default=None,
                   help="with --align, for Hugging Face GPT-2 and Llama: permute the "
                   "residual stream too")  # fmt: skip
    p.add_argument(
        "--repair",
        choices=values(options.Repair),
        default=None,
        help="at every point: reset_bn (as --bn-reestimate) or REPAIR's rescaling",
    )
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", required=True, help="HDF5 file (results go to /paths/KIND)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.set_defaults(func=_command("connect"))

    p = sub.add_parser("export", help="a landscape file as ParaView (vts), Plotly HTML or GIF")
    p.add_argument("file")
    p.add_argument("--format", choices=("vts", "html", "gif"), required=True)
    p.add_argument("--metric", default="loss", help="metric shown (the height for vts)")
    p.add_argument("-o", "--output", required=True, help="file to write")
    p.set_defaults(func=_command("export"))

    p = sub.add_parser("import-li", help="read a surface file of Li et al.'s code")
    p.add_argument("surface", metavar="SURFACE.h5")
    p.add_argument("--model", required=True, help="M:F, path/file.py:F or a built-in name")
    p.add_argument("--dir-file", default=None, help="their direction file (default: as named)")
    p.add_argument("--dir-type", choices=values(options.DirType), default="weights")
    p.add_argument("--out", required=True, help="landscape surface file to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out")
    p.set_defaults(func=_command("import_li"))

    p = sub.add_parser("correlate", help="Kendall's tau of each measure with the gap, many models")
    p.add_argument("file", metavar="COMPARE.h5", help="the compare.h5 of landscape compare")
    p.add_argument("--hparams", default=None,
                   help="CSV: a checkpoint column and one column per hyperparameter")  # fmt: skip
    p.add_argument("--gap", choices=("accuracy", "loss"), default="accuracy",
                   help="train - test accuracy (default) or test - train loss")  # fmt: skip
    p.add_argument("--num-bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the resamples")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_command("correlate"))

    p = sub.add_parser("info", help="what a landscape file holds, and how complete it is")
    p.add_argument("file")
    p.set_defaults(func=_command("info"))

    p = sub.add_parser("demo", help="train the digits models and make every figure")
    p.add_argument("--out", default="figures")
    p.add_argument("--readme", default=None, help="a README whose demo table to update")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_command("demo"))
    return parser
