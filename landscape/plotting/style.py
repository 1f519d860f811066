"""Publication styling as a context manager, and saving figures.

Nothing in :mod:`landscape.plotting` changes matplotlib's global settings; :func:`landscape_style`
applies its settings inside a ``with`` block only and restores them on exit (like seaborn's).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import matplotlib as mpl
from matplotlib.figure import Figure

__all__ = ["landscape_style", "save_figure"]

# The metadata key of each format's creation date, left out so the bytes are reproducible.
_DATED_FORMATS = {"pdf": "CreationDate", "svg": "Date"}
_CONTEXT_FONT = {"paper": 8.0, "notebook": 10.0, "talk": 13.0, "poster": 16.0}
_CONTEXT_SIZE = {
    "paper": (3.4, 2.6),  # one column of a two-column paper
    "notebook": (6.0, 4.5),
    "talk": (8.0, 6.0),
    "poster": (10.0, 7.5),
}


@contextmanager
def landscape_style(
    context: Literal["paper", "notebook", "talk", "poster"] = "paper",
    *,
    font_scale: float = 1.0,
    rc: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Temporarily style matplotlib for publication figures; the settings are restored on exit.

    Fonts are embedded as TrueType in PDF/PS (``fonttype 42``) and kept as text in SVG, so figures
    stay editable; sizes follow ``context``; saved figures are cropped tight at 300 dpi.

    Args:
        context: ``"paper"`` (8 pt, one-column width), ``"notebook"``, ``"talk"`` or ``"poster"``.
        font_scale: multiplies every font size.
        rc: extra rcParams, applied last.

    Yields:
        The rcParams in effect inside the block.

    Raises:
        ValueError: for an unknown context or a non-positive font_scale.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> with landscape_style("talk"):
        ...     fig, ax = plt.subplots()
        >>> plt.close(fig)
    """
    if context not in _CONTEXT_FONT:
        raise ValueError(f"context must be one of {sorted(_CONTEXT_FONT)}, got {context!r}")
    if not font_scale > 0:
        raise ValueError(f"font_scale must be positive, got {font_scale}")
    base = _CONTEXT_FONT[context] * font_scale
    params: dict[str, Any] = {
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "svg.fonttype": "none",
        "font.size": base,
        "axes.titlesize": base * 1.1,
        "axes.labelsize": base,
        "xtick.labelsize": base * 0.9,
        "ytick.labelsize": base * 0.9,
        "legend.fontsize": base * 0.9,
        "figure.figsize": _CONTEXT_SIZE[context],
        "figure.dpi": 100,
        "figure.constrained_layout.use": True,
        "savefig.dpi": 300,
        "savefig.bbox": "tight",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "lines.linewidth": 1.0 if context == "paper" else 1.5,
        "image.cmap": "viridis",
    }
    params.update(rc or {})
    with mpl.rc_context(params):  # type: ignore[arg-type]  # a dict of known keys
        yield dict(params)


def save_figure(fig: Figure, path: str | Path, **kwargs: Any) -> Path:
    """Save a figure, making the parent folder; the format comes from the suffix (pdf, png, svg).

    The bytes depend only on the figure (no creation date in PDF or SVG), and an existing
    file that already holds them is left untouched, so remaking unchanged figures changes
    no file.

    Args:
        fig: the figure.
        path: where to write it.
        **kwargs: passed to ``Figure.savefig`` (default ``bbox_inches="tight"``).

    Returns:
        The path written (or found up to date).

    Example:
        >>> import tempfile, os
        >>> import matplotlib.pyplot as plt
        >>> fig = plt.figure()
        >>> save_figure(fig, os.path.join(tempfile.mkdtemp(), "f.png")).suffix
        '.png'
        >>> plt.close(fig)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("bbox_inches", "tight")
    kind = kwargs.get("format") or path.suffix.lstrip(".").lower()
    if kind in _DATED_FORMATS:
        kwargs["metadata"] = {_DATED_FORMATS[kind]: None, **kwargs.get("metadata", {})}
    buffer = io.BytesIO()
    with mpl.rc_context({"svg.hashsalt": "landscape"}):  # SVG ids from a fixed salt
        fig.savefig(buffer, format=kind or None, **kwargs)
    data = buffer.getvalue()
    if not path.is_file() or path.read_bytes() != data:
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)  # never a half-written figure
    return path
