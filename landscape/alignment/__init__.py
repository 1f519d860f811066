"""Connectivity modulo symmetry: networks permuted into one another's frame.

Two networks trained from different seeds differ mostly by a permutation of their hidden
units; most of the loss barrier between them is an artefact of that symmetry.
:func:`align` removes it (Git Re-Basin, Ainsworth et al. 2023) by weight matching or
activation matching over permutation groups derived from the module graph
(:func:`permutation_spec`); :class:`Repairer` corrects the variance collapse of the
interpolated networks (REPAIR, Jordan et al. 2023); :func:`merge` averages aligned
checkpoints and measures the average's loss beside theirs (:class:`MergeResult`).
Barriers after alignment: :func:`landscape.paths.connect_checkpoints` with ``align=`` and
``repair=``.

One module per job: ``spec`` (the groups, from ``torch.fx``; ``gpt2`` and ``llama`` for
Hugging Face GPT-2 and Llama, written by hand, with ``residual`` for their residual stream's
group (opt-in, ``residual=True``); ``repeated`` for grouped-query attention's shared heads;
``probes`` for where their groups' activations are recorded, by forward hooks),
``permute`` (applying permutations), ``weights`` and ``activations`` (the two matchings),
``align`` (the result), ``repair`` (REPAIR) and ``merge``.
"""

from .activations import activation_correlations, activation_matching
from .align import Alignment, align, align_states
from .merge import MergeResult, merge
from .permute import identity_permutations, permute_state
from .repair import Repairer
from .spec import PermutationSpec, permutation_spec
from .weights import weight_matching, weight_objective

__all__ = [
    "Alignment",
    "MergeResult",
    "PermutationSpec",
    "Repairer",
    "activation_correlations",
    "activation_matching",
    "align",
    "align_states",
    "identity_permutations",
    "merge",
    "permutation_spec",
    "permute_state",
    "weight_matching",
    "weight_objective",
]
