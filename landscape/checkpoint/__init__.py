"""Safe checkpoint loading, key/shape matching with clear errors, and saving.

Modules by job: :mod:`.reading` (a file's state_dict, safely: ``torch.load`` with
``weights_only=True`` or safetensors; wrappers opened, ``module.``/``_orig_mod.`` prefixes
stripped), :mod:`.loading` (checked against a model with
:func:`~landscape.checks.check_state`, loaded into it or into a copy) and :mod:`.writing`
(atomic saving, file hashes). Every name is importable from ``landscape.checkpoint``, as
in 0.2.
"""

from __future__ import annotations

from .loading import STRICT_HINT, checkpoint_state, load_checkpoint
from .reading import STRIP_PREFIXES, WRAPPER_KEYS, PathLike, load_state, state_from_object
from .writing import file_sha256, save_checkpoint

__all__ = [
    "STRICT_HINT",
    "STRIP_PREFIXES",
    "WRAPPER_KEYS",
    "PathLike",
    "checkpoint_state",
    "file_sha256",
    "load_checkpoint",
    "load_state",
    "save_checkpoint",
    "state_from_object",
]
