"""The Objective: exact mean loss and metrics of a model over a data set, at any point.

Values are exact means over examples: every batch contributes its *sum* and its example
count, and the sums are accumulated in float64, so ragged batches weigh what they should.
For the token losses (``causal_lm``, ``token_ce``) the count is the batch's number of
non-ignored tokens, kept on the device until the end of a pass: the mean is over every
token of the data. A batch's sums (the loss and every metric) are computed by one method,
:meth:`Objective.output_sums`, whichever way the model was called.

Batches are ``(inputs, targets)`` pairs or mappings (Hugging Face style), split by
:func:`~landscape.data.split_batch`: the model is called as ``model(**inputs)`` without
the label keys, and the labels go to the loss. From an output that is not a tensor the
loss takes ``.logits`` (a ``ModelOutput`` or dict) or the first element (a tuple).

How the model is called. The caller's model is never written to, and its train/eval flags
are the same afterwards:

- values at a point (``objective(state)`` and :meth:`Objective.evaluate_points` one point
  per pass) run a *private module* (:mod:`landscape.objective.workspace`): the model's module
  tree, made once and shared by every Objective made from this one with
  :meth:`Objective.at`, whose tensors point at the state evaluated (nothing is copied).
  A point is written into a perturbed copy of the tensors its directions move, and
  nothing else: the extra memory of a surface is the directions and that copy, so a
  landscape along a few LoRA tensors of a large model costs little beyond the model;
- differentiable sums (:meth:`Objective.batch_sums`, used by the Hessian and the sharpness
  measures) and K points per pass call the caller's model through
  :func:`torch.func.functional_call` with the state passed in (stacked states through
  ``vmap`` for K points, see :mod:`landscape.objective.points`), with its train/eval flags set for
  the call and restored afterwards.

Data are prepared once by :class:`~landscape.data.EvaluationData` (device cache,
fingerprint, sharding over ``torch.distributed`` ranks with the sums all-reduced).
``precision`` runs the model in TF32 or bfloat16 while sums stay float64.

The package's modules, one job each: :mod:`~landscape.objective.core` (the class: options,
data, values at one state), :mod:`~landscape.objective.calling` (calling the model),
:mod:`~landscape.objective.checks` (first-batch checks, loss-reduction detection),
:mod:`~landscape.objective.points` (K points per pass, ``vmap`` and out-of-memory
fallbacks), :mod:`~landscape.objective.vmap_errors` (what ``vmap`` refuses),
:mod:`~landscape.objective.workspace` (the private module),
:mod:`~landscape.objective.sharded` (FSDP2 and tensor-parallel models, evaluated in place
on their local shards) and :mod:`~landscape.objective.layouts` (layouts refused).
"""

# ruff: noqa: F401  (re-exports: the names of the 0.2 module landscape.objective)
from .calling import (
    PRECISIONS,
    BatchLoss,
    Precision,
    State,
    _attention_for_gradients,
    _ClosureModule,
    _functional_call,
    _mode,
    _seeded,
    precision_context,
    prediction,
    upcast,
)
from .core import Objective
from .points import (
    ACTIVATION_TARGET,
    MAX_AUTO_POINTS,
    MEMORY_SHARE,
    auto_points_per_pass,
    move_directions,
    stack_points,
    state_bytes,
)
from .workspace import PointPlan, Workspace

__all__ = ["BatchLoss", "Objective", "prediction"]
