"""What a figure calls a measure: a title in words and an axis label for its value.

A measure's contract name (``lambda_max``, ``adaptive_worst_l2``) is what code and files
use; a figure says what the measure is. A name not listed here (a user's own measure) is
shown as it is.
"""

from __future__ import annotations

__all__ = ["MEASURE_LABELS", "measure_axis_label", "measure_title"]

_RISE = "loss increase"

#: ``{name: (title, axis label)}`` of every contract measure.
MEASURE_LABELS: dict[str, tuple[str, str]] = {
    "lambda_max": ("top Hessian eigenvalue", r"$\lambda_{\max}$"),
    "lambda_min": ("lowest Hessian eigenvalue", r"$\lambda_{\min}$"),
    "trace": ("Hessian trace", r"$\mathrm{tr}\,H$"),
    "keskar": ("Keskar sharpness", "loss increase (%)"),
    "worst_l2": ("worst-case sharpness (L2)", _RISE),
    "worst_linf": ("worst-case sharpness (L∞)", _RISE),
    "adaptive_worst_l2": ("adaptive worst-case (L2)", _RISE),
    "adaptive_worst_linf": ("adaptive worst-case (L∞)", _RISE),
    "avg_l2": ("average-case sharpness", "mean " + _RISE),
    "adaptive_avg_l2": ("adaptive average-case", "mean " + _RISE),
    "pacbayes": ("PAC-Bayes flatness", r"$1/\sigma^2$"),
    "pacbayes_mag": ("PAC-Bayes (magnitude)", r"$1/\sigma^2$"),
    "fisher_rao": ("Fisher-Rao norm", r"$\mathrm{E}\,\langle w, \nabla \ell\rangle^2$"),
    "relative_flatness": ("relative flatness", "relative flatness"),
    "rise": ("random-direction rise", "mean " + _RISE),
    "preconditioned_sharpness": ("preconditioned sharpness", r"$\lambda_1(P^{-1}H)$"),
    "batch_sharpness": ("batch sharpness", r"$\mathrm{E}_B\, g_B^T H_B g_B / \|g_B\|^2$"),
    "gradient_share": ("gradient in the top eigenspace", r"$\|V_k^T g\|^2 / \|g\|^2$"),
}


def measure_title(name: str) -> str:
    """What ``name`` is, in words (``"lambda_max"`` -> ``"top Hessian eigenvalue"``).

    Example:
        >>> measure_title("lambda_max"), measure_title("my_measure")
        ('top Hessian eigenvalue', 'my_measure')
    """
    return MEASURE_LABELS.get(name, (name, name))[0]


def measure_axis_label(name: str) -> str:
    """The label of an axis that shows ``name``'s value (``"trace"`` -> ``"$\\mathrm{tr}\\,H$"``).

    Example:
        >>> measure_axis_label("rise"), measure_axis_label("my_measure")
        ('mean loss increase', 'my_measure')
    """
    return MEASURE_LABELS.get(name, (name, name))[1]
