"""Curvature during training: a :class:`Tracker` logs measures from the user's own loop.

A few lines in any training loop::

    tracker = Tracker(data, path="run.h5", every=50, measures=["lambda_max", "trace"])
    for step in range(num_steps):
        ...                                  # the user's own update
        tracker.log(model, step)             # the values recorded, or None if skipped
    run = load_tracking("run.h5")            # run.steps, run.values["lambda_max"], run.stderr

Measures (:data:`TRACKED`): ``loss`` and ``accuracy`` (exact means over ``data``);
``lambda_max`` and ``trace``, the sharpness measures of those names
(:data:`landscape.sharpness.MEASURES`, one estimator per name): ``lambda_max`` by
single-vector Lanczos warm-started from the previous log's eigenvector (a
:class:`~landscape.sharpness.WarmStart`), so a log costs a few Hessian-vector products
when the weights moved little, and ``trace`` by Hutch++ with ``num_probes`` products and
its standard error, computed at the steps that are multiples of ``trace_every`` (NaN, "not
computed", at the other logs); ``lambda_min``, the same Lanczos for the smallest
eigenvalue; ``slice``, the loss along one random direction: the same Gaussian draw
(``seed``) at every log, filter-normalized to the weights of that log, so that its
coordinates are in units of the current filters' norms (Li et al. 2018) as the weights
grow or shrink; and any other sharpness measure by name (settings as keywords), among
them ``preconditioned_sharpness`` (``lambda_1(P^-1 H)`` for the ``optimizer`` given, with
its threshold, 38/lr for Adam) and ``batch_sharpness`` (over the objective's minibatches:
give the training ``batch_size``; threshold ``2 / lr``).

Thresholds: each log also records, as the column ``<measure>_threshold``, the stability
threshold of ``preconditioned_sharpness`` and ``batch_sharpness`` and, with an SGD
``optimizer``, of ``lambda_max`` (``(2 + 2 momentum) / lr``), read at that log (a learning
rate schedule moves it). A :class:`~landscape.optim.StabilityGuard` given as ``guard`` sees
every measure with its threshold after each log.

Errors: ``lambda_max`` and ``lambda_min`` are logged with their residual
``||H v - lambda v||`` (``v`` the unit eigenvector found), the column
``<measure>_residual``: an eigenvalue of the Hessian lies within it of the value, and
within ``residual**2 / gap`` when the eigenvalue is ``gap`` away from the rest of the
spectrum. Lanczos stops at a residual of ``tol * ||H||``: by default, for ``lambda_max``
of float32 and lower models, 1e-2 (tracking: the eigenvalue then within about
``1e-4 ||H||**2 / gap``; on the digits MLP below 1e-4 relative, the logged residual about
3e-3 of the value), for their ``lambda_min`` (often among close eigenvalues near 0) 1e-4,
and 1e-8 for float64 models (a ``RuntimeWarning`` says when Lanczos stopped above it). The
residual comes from one explicit product with the eigenvector, in float64 at the steps
that are multiples of ``verify_every`` (default every 10th log) and at every log of a
float64 or lower-precision model, else in float32 (its round-off ``1e-7 ||H||`` on the
digits MLP, far below the tolerance; no float64 copy of the model and data). Each trace
carries its standard error in ``stderr`` (``value +- 1.96 stderr`` covers the trace in
about 95% of seeds); the other measures carry theirs (0 for exact values, the eigenvalues
included: their error is the residual). Cost, on the demo's digits MLP
(``benchmarks/bench_tracking.py``, in steps of its small-batch training): a warm log of
``loss`` and ``lambda_max`` 35-38 (5.5 Hessian-vector products; 0.2's defaults: 69-73),
50-53 with the float64 check at every log, 44-47 with ``tol=1e-3``, 43-45 into a file
(36-37 with ``write_every=10``); the trace at its default cadence adds about 13 a log on
average (30 products every 10th log, standard error about 9% of the value).

Each log builds one Hessian operator for its eigenvalues (the loss is checked to be
deterministic at the first log only, the weights are not fingerprinted: the step names
them), and with ``lambda_max`` and without ``accuracy`` the logged loss is that
operator's pass over the data.

The data go to the model's device once: one :class:`~landscape.objective.Objective` (given
as ``objective=``, or built at the first log from ``data`` and the loss options) is
re-pointed at each log's weights with :meth:`~landscape.objective.Objective.at`. The model
is only read: its parameters, buffers, gradients and train/eval flags are the same after
:meth:`Tracker.log`, and nothing is printed unless ``progress=True``.

With ``path``, each log is appended to ``/tracking`` (:mod:`landscape.storage.tracking`)
and flushed, or ``write_every`` logs at a time (each append rewrites a copy of the file,
so that a kill never leaves half a row; :meth:`Tracker.flush`, :attr:`Tracker.run` and the
training callbacks at the end of training write the logs held). A run restarted with a new
Tracker on the same file continues it: steps up to the last one recorded are skipped, and
a Tracker whose settings differ from the file's (measures, every, loss, data, lr, seeds,
...) is refused, naming each differing setting. A restarted run's first eigenvalues start
Lanczos cold, so they agree with an unbroken run's to the Lanczos tolerance rather than
bit for bit. A file written before the residual columns is read as it is, and a run
continuing it adds them (NaN for the earlier rows). Under torchrun only rank 0 writes;
a log is collective only when the data or the model are sharded
(:meth:`Tracker.collective`), else rank 0 may log alone.
"""

from .run import TrackingRun, load_tracking
from .tracker import TRACKED, Tracker

__all__ = ["TRACKED", "Tracker", "TrackingRun", "load_tracking"]
