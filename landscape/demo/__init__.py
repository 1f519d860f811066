"""The built-in digits models and data behind ``make demo``.

Everything here runs offline on a CPU in seconds: the data is scikit-learn's 8x8 handwritten
digits, the models are a small MLP and a small CNN with BatchNorm, and :func:`train_demo_pair`
trains the classic small-batch / large-batch pair whose minima differ in sharpness (Keskar et
al. 2017). Nothing here reads or changes torch's global random state.

The package has one module per job: ``data`` (digits data, models, the CLI's built-in
names), ``training`` (:func:`train_classifier`), ``run`` (:func:`run_demo`) and ``readme``
(the README's demo table, written by ``make readme-table``).
"""

from __future__ import annotations

from .data import BUILTIN_DATA, BUILTIN_MODELS, DigitsSplit, digits_cnn, digits_data, digits_mlp  # noqa: F401 (documented in demo.data)
from .readme import README_TABLE_MARKERS, update_readme_table
from .run import run_demo
from .training import (
    DEMO_RECIPES,  # noqa: F401 (documented in demo.training)
    train_classifier,
    train_demo_pair,
)

__all__ = [
    "DigitsSplit",
    "digits_data",
    "digits_mlp",
    "digits_cnn",
    "train_classifier",
    "train_demo_pair",
    "README_TABLE_MARKERS",
    "update_readme_table",
    "run_demo",
]

# names of the single module before 0.3, kept importable from here; the registries
# (BUILTIN_MODELS, BUILTIN_DATA, DEMO_RECIPES) are documented where their comments are
from .data import NUM_CLASSES, NUM_FEATURES, TEST_EVERY, _digits_arrays  # noqa: F401, I001
from .data import _digits_test, _digits_train, _seeded  # noqa: F401
from .run import _demo_figures  # noqa: F401
from .training import _check_data, _threads  # noqa: F401
