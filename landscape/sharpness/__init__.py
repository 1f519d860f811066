"""Sharpness and flatness measures of a trained model, with error bars.

Every measure takes an :class:`~landscape.objective.Objective` (the exact mean loss over a
data set; the model is never changed) and returns a :class:`SharpnessResult`.
Perturbations apply to the weights (``model.named_parameters()``); buffers such as
BatchNorm running statistics stay as they are. Larger values mean sharper for every
measure. An objective that shards its data across ``torch.distributed`` ranks
(``shard_data=True``) works too: every sum over the data is all-reduced, so every rank
makes the same calls and gets the value that one process with all the data gets (up to
the order of float64 additions). Stochastic measures are reproducible from ``seed``: noise
is drawn from a ``torch.Generator`` (never the global one), on the CPU in float64 then cast
to each weight's dtype, or, for weights on a CUDA device, on that device (draws that differ
from the CPU's for the same seed but are reproducible on the same device).

One module per family, each registering its measures and their settings in
:mod:`~landscape.sharpness.registry`; by contract name (``L`` the mean loss, ``w`` the
weights, ``c = 1`` for the standard and ``c = |w|`` for the adaptive versions):

- ``lambda_max``, ``trace`` (:mod:`.curvature`): top Hessian eigenvalue (single-vector
  Lanczos, warm-started from a :class:`WarmStart`) and Hessian trace (Hutch++, its interval
  ``value +- 1.96 stderr`` from the same error model as its standard error).
- ``keskar`` (:mod:`.keskar`): epsilon-sharpness of Keskar et al. (2017),
  ``100 (max_{z in C_eps} L(w + A z) - L(w)) / (1 + L(w))`` over a box, by L-BFGS-B from
  several starts; ``A`` is the identity or a random ``n x p`` Gaussian matrix.
- ``worst_l2``, ``worst_linf``, ``adaptive_worst_l2``, ``adaptive_worst_linf``
  (:mod:`.worst_case`): ``max_{||delta / c||_p <= rho} L_B(w + delta) - L_B(w)``
  (Andriushchenko et al. 2023), by Auto-PGD with restarts, averaged over batches ``B``.
- ``avg_l2``, ``adaptive_avg_l2`` (:mod:`.average_case`):
  ``E_{delta ~ N(0, rho^2 diag(c^2))} L(w + delta) - L(w)``, by Monte Carlo.
- ``pacbayes``, ``pacbayes_mag`` (:mod:`.pacbayes`): PAC-Bayes flatness (Jiang et al.
  2020), ``1 / sigma^2`` for the noise level ``sigma`` that raises the loss by ``target``.
- ``fisher_rao`` (:mod:`.fisher_rao`): squared Fisher-Rao norm (Liang et al. 2019).
- ``relative_flatness`` (:mod:`.relative_flatness`): Petzka et al. (2021) on one layer.
- ``preconditioned_sharpness``, ``batch_sharpness``, ``gradient_share`` (:mod:`.optimizer`):
  ``lambda_1(P^-1 H)`` for an optimizer's diagonal preconditioner ``P`` (``optimizer=``),
  the mean over minibatches of ``g_B^T H_B g_B / ||g_B||^2``, and the share of the gradient
  in the top Hessian eigenspace (see :mod:`landscape.optim`).
- ``rise`` (:mod:`.rise`): ``L(w + rho d) - L(w)`` over filter-normalized random ``d``.

The worst-case values (``keskar``, ``*worst_*``) are the best of several local searches,
so LOWER BOUNDS of the true maxima; ``extra["num_agreed"]`` says how many searches agreed
with the best. Sampled values carry a standard error and a 95% ``interval``; a standard
error that cannot be estimated (one batch, one sample) is NaN. Every result's settings
also record its provenance (``model``, ``checkpoint_sha256``, ``data_sha256``,
``num_examples``, ``loss_name``, ``train_mode``, ``precision``). A
:class:`NotAMinimumWarning` says when the checkpoint is clearly not a minimum (see
:mod:`~landscape.sharpness._guards`). Every measure shows a tqdm bar unless
``progress=False``.
"""

from ..storage.sharpness import load_sharpness, save_sharpness
from ._guards import NotAMinimumWarning
from .api import sharpness
from .average_case import measure_average_case
from .curvature import measure_hessian
from .fisher_rao import measure_fisher_rao
from .keskar import keskar_subspace, measure_keskar
from .optimizer import measure_batch_sharpness, measure_gradient_share, measure_preconditioned
from .pacbayes import measure_pacbayes
from .registry import (
    DEFAULT_RHO,
    MEASURES,
    SETTINGS,
    Measure,
    Setting,
    WarmStart,
    check_settings,
)
from .relative_flatness import measure_relative_flatness
from .result import SharpnessResult
from .rise import measure_rise
from .worst_case import measure_worst_case

__all__ = [
    "DEFAULT_RHO",
    "MEASURES",
    "SETTINGS",
    "Measure",
    "NotAMinimumWarning",
    "Setting",
    "SharpnessResult",
    "WarmStart",
    "check_settings",
    "keskar_subspace",
    "load_sharpness",
    "measure_average_case",
    "measure_batch_sharpness",
    "measure_fisher_rao",
    "measure_gradient_share",
    "measure_hessian",
    "measure_keskar",
    "measure_pacbayes",
    "measure_preconditioned",
    "measure_relative_flatness",
    "measure_rise",
    "measure_worst_case",
    "save_sharpness",
    "sharpness",
]
