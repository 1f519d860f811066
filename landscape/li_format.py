"""Li et al.'s result files: import their surfaces and directions, export our directions.

Li et al.'s code (github tomgoldstein/loss-landscape) stores a surface's values with the
point ``(x[i], y[j])`` at ``raw.ravel()[j * len(x) + i]`` (the order of
``np.meshgrid(x, y)``), whatever shape the dataset declares: for a square grid that is the
transpose of the ``[i, j]`` order, and for a non-square grid a scrambled array that reads
wrong in every orientation. :func:`decode_li_grid` puts the values back at ``[i, j]``.
Their direction files hold tensors by position in ``model.parameters()`` (or
``model.state_dict()``) order, so the model is needed to name them. Accuracy is stored in
percent (here a fraction) and ``-1`` marks a point not computed (here NaN).

:func:`import_li` turns a surface file (and its direction file) into a landscape surface
file; :func:`export_li_directions` writes our directions so that their scripts can reuse
them (``--dir_file``).
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import torch
from torch import nn

from .checks import check_choice, check_state
from .directions import Directions
from .options import DirType
from .surface import Surface, save_surface

__all__ = [
    "LI_METRICS",
    "decode_li_grid",
    "export_li_directions",
    "import_li",
    "load_li_directions",
]

#: Li et al.'s metric names -> ours, and the scale applied (percent -> fraction).
LI_METRICS = {
    "train_loss": ("loss", 1.0),
    "train_acc": ("accuracy", 0.01),
    "test_loss": ("test_loss", 1.0),
    "test_acc": ("test_accuracy", 0.01),
}


def decode_li_grid(raw: np.ndarray, nx: int, ny: int | None = None) -> np.ndarray:
    """Values of a Li et al. surface at ``[i, j]`` for ``(x[i], y[j])``.

    Args:
        raw: the stored array, any declared shape with ``nx * ny`` entries.
        nx, ny: the lengths of the coordinates (``ny=None`` for a line).

    Returns:
        float64 ``(nx, ny)`` (or ``(nx,)``), ``-1`` replaced by NaN.

    Raises:
        ValueError: the array does not have ``nx * ny`` entries.

    Example:
        >>> x, y = np.array([0.0, 1.0, 2.0]), np.array([0.0, 10.0])
        >>> xx, yy = np.meshgrid(x, y)  # what Li et al.'s code loops over
        >>> raw = (xx + yy).ravel().reshape(3, 2)  # stored in a (len(x), len(y)) dataset
        >>> decode_li_grid(raw, 3, 2)
        array([[ 0., 10.],
               [ 1., 11.],
               [ 2., 12.]])
    """
    flat = np.asarray(raw, dtype=np.float64).reshape(-1)
    size = nx * (1 if ny is None else ny)
    if flat.size != size:
        raise ValueError(
            f"expected {size} values for a {nx} x {ny or 1} grid, got an array of shape "
            f"{np.shape(raw)}"
        )
    grid = flat.copy() if ny is None else flat.reshape(ny, nx).T.copy()
    grid[grid == -1] = np.nan  # Li et al.'s "not computed"
    return grid


def _names(model: nn.Module, dir_type: str, count: int) -> list[str]:
    if dir_type == "weights":
        names = [n for n, _ in model.named_parameters()]
    elif dir_type == "states":
        names = list(model.state_dict())
        if count != len(names):  # files from a torch without num_batches_tracked
            without = [n for n in names if not n.endswith("num_batches_tracked")]
            names = without if count == len(without) else names
    else:
        raise ValueError(f"dir_type must be 'weights' or 'states', got {dir_type!r}")
    if count != len(names):
        raise ValueError(
            f"the direction file holds {count} tensors; the model has {len(names)} "
            f"{'parameters' if dir_type == 'weights' else 'state_dict entries'}: another "
            "model, or the other dir_type?"
        )
    return names


def load_li_directions(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    dir_type: Literal["weights", "states"] = "weights",
) -> Directions:
    """Read a Li et al. direction file, naming its tensors from the model.

    Args:
        path: the direction file (groups ``xdirection`` and maybe ``ydirection``).
        model: the architecture the directions were made for.
        dir_type: ``"weights"`` (``model.parameters()`` order) or ``"states"``
            (``model.state_dict()`` order), as given to their ``--dir_type``.

    Returns:
        :class:`~landscape.directions.Directions` of kind ``"li"`` in the model's dtypes
        (integer entries such as ``num_batches_tracked`` are left out).

    Raises:
        ValueError: a count or a shape that does not fit the model.
    """
    from .storage.li import read_li_directions

    lists = read_li_directions(path)
    reference = dict(model.state_dict(keep_vars=True))
    states = []
    for axis, arrays in zip("xy", lists, strict=False):
        named = dict(zip(_names(model, dir_type, len(arrays)), arrays, strict=True))
        check_state(named, reference, name=f"the {axis}direction tensors", missing=False)
        state = {}
        for name, array in named.items():
            ref = reference[name]
            if ref.is_floating_point():
                state[name] = torch.from_numpy(np.array(array)).to(ref.dtype)
        states.append(state)
    settings = {"dir_type": dir_type, "dir_file": os.path.abspath(path)}
    return Directions(states[0], states[1] if len(states) > 1 else None, kind="li",
                      settings=settings)  # fmt: skip


def import_li(
    surface_path: str | os.PathLike,
    model: nn.Module | None = None,
    *,
    dir_file: str | os.PathLike | None = None,
    dir_type: Literal["weights", "states"] = "weights",
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Surface:
    """A Li et al. surface file as a :class:`~landscape.surface.Surface`, values at ``[i, j]``.

    ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc`` become ``loss``,
    ``accuracy``, ``test_loss``, ``test_accuracy`` (accuracies as fractions); other numeric
    datasets keep their names. With a model, the directions are read too (from
    ``dir_file``, or the file named in the surface file, looked up as written and then
    beside the surface file) and stored with the surface.

    Args:
        surface_path: their surface file.
        model: the architecture, to name the direction tensors (None: no directions).
        dir_file: their direction file (default: the one the surface file names).
        dir_type: as in :func:`load_li_directions`.
        out: a landscape surface file to write (optional).
        overwrite: replace ``out`` if it exists.

    Returns:
        The Surface (``attrs``: ``directions="li"``, ``li_file``, ``dir_file``, ...).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: no ``train_loss``, or arrays that do not fit the coordinates.
    """
    from .storage.li import read_li_surface

    stored = read_li_surface(surface_path)
    x, y = stored["x"], stored["y"]
    if "train_loss" not in stored["metrics"]:
        raise ValueError(
            f"{os.fspath(surface_path)} has no train_loss; found {sorted(stored['metrics'])}"
        )
    metrics = {}
    for name, raw in stored["metrics"].items():
        ours, scale = LI_METRICS.get(name, (name, 1.0))
        metrics[ours] = decode_li_grid(raw, len(x), None if y is None else len(y)) * scale
    order = ["loss", *[n for n in metrics if n != "loss"]]
    metrics = {n: metrics[n] for n in order}
    directions = None
    source = dir_file if dir_file is not None else stored["dir_file"]
    if model is not None:
        if source is None:
            raise ValueError(
                f"{os.fspath(surface_path)} names no dir_file; give the direction file"
            )
        source = os.fspath(source)
        if not os.path.exists(source) and dir_file is None:  # as written, else beside it
            source = os.path.join(
                os.path.dirname(os.path.abspath(surface_path)), os.path.basename(source)
            )
        directions = load_li_directions(source, model, dir_type=dir_type)
    attrs = {
        "directions": "li",
        "li_file": os.path.abspath(surface_path),
        "dir_file": "" if source is None else os.fspath(source),
        "dir_type": dir_type,
        "metrics": list(metrics),
        "x_label": "direction x",
        "y_label": "direction y",
    }
    surface = Surface(x, y, metrics, attrs=attrs)
    if out is not None:
        save_surface(surface, out, directions=directions, overwrite=overwrite)
    return surface


def export_li_directions(
    directions: Directions,
    model: nn.Module,
    path: str | os.PathLike,
    *,
    dir_type: Literal["weights", "states"] | None = None,
    overwrite: bool = False,
) -> None:
    """Write directions as a Li et al. direction file (for their ``--dir_file``).

    Tensors go by position in ``model.parameters()`` (``"weights"``) or
    ``model.state_dict()`` (``"states"``) order; an entry the direction lacks (an integer
    buffer, say) is written as zeros of its shape.

    Args:
        directions: ours (one or two).
        model: the architecture, for the order.
        path: the file to write.
        dir_type: the order to use (default: the directions' own ``dir_type``, else
            ``"weights"``).
        overwrite: replace an existing file.

    Raises:
        ValueError: names the model lacks, or shapes that differ.
    """
    from .storage.li import write_li_directions

    dir_type = dir_type or directions.settings.get("dir_type", "weights")
    if check_choice(dir_type, DirType, "dir_type") == "weights":
        reference = {n: p.detach() for n, p in model.named_parameters()}
        hint = "; pass dir_type='states' for buffers"
    else:
        reference = {n: t.detach() for n, t in model.state_dict().items()}
        hint = ""
    lists = []
    for axis, direction in (("x", directions.x), ("y", directions.y)):
        if direction is None:
            continue
        check_state(direction, reference, name=f"the {axis} direction",
                    against=f"the model's {dir_type}", missing=False, hint=hint)  # fmt: skip
        arrays = []
        for name, ref in reference.items():
            tensor = direction.get(name)
            if tensor is None:
                arrays.append(np.zeros(tuple(ref.shape), dtype=ref.cpu().numpy().dtype))
                continue
            arrays.append(tensor.detach().cpu().numpy())
        lists.append(arrays)
    write_li_directions(path, lists, overwrite=overwrite)
