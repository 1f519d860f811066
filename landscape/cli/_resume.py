"""Reruns of ``hessian``, ``sharpness`` and ``connect``: what a file already holds.

Each result group written by the command line records the options that shape its values
(``command``: every option but the output, the flags that choose which groups to make,
and the display options; an option that shapes one group alone, such as ``--off-block``,
only in that group). The same command on a finished file then exits 0 saying so,
and on a partial one computes only the groups that are missing; a group made by another
command (or by version 0.2, which recorded none) is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import os

from ._common import UserError, _print

# options that choose which groups to make or how to show them, not their values; and
# builder_sha256, set on args once the model is built (recorded beside, by _sources)
_NOT_IDENTITY = frozenset(
    {"func", "command", "out", "overwrite", "quiet", "debug", "device", "metric", "trace",
     "density", "per_block", "curve", "builder_sha256", "plan"}
)  # fmt: skip
# options that shape one group's values alone: recorded in that group's identity only (a
# rerun that adds --off-block still reuses /hessian/eigen)
_GROUP_ONLY = {
    name: "hessian/blocks"
    for name in ("off_block", "off_block_probes", "block_density", "block_density_probes",
                 "block_lanczos_steps")
}  # fmt: skip
# left out while unset: older files still resume
_NEW_OPTIONAL = frozenset({"max_memory", "residual", *_GROUP_ONLY})


def command_identity(args: argparse.Namespace, group: str | None = None) -> str:
    """The options of ``args`` that shape the values of ``group`` (a result group, e.g.
    ``"hessian/blocks"``; ``None`` for the options that shape every group), as one string.

    Example:
        >>> command_identity(argparse.Namespace(seed=0, out="a.h5", rho=None))
        '{"rho": null, "seed": 0}'
        >>> args = argparse.Namespace(seed=0, off_block=True, off_block_probes=50)
        >>> command_identity(args), command_identity(args, "hessian/blocks")
        ('{"seed": 0}', '{"off_block": true, "off_block_probes": 50, "seed": 0}')
    """
    found = {
        k: v
        for k, v in vars(args).items()
        if k not in _NOT_IDENTITY
        and not (k in _NEW_OPTIONAL and v is None)
        and _GROUP_ONLY.get(k, group) == group
    }
    return json.dumps(found, sort_keys=True, default=str)


def groups_to_compute(args: argparse.Namespace, path: str, groups: list[str]) -> list[str]:
    """The groups of ``groups`` that the command must compute; stops before any work
    when ``path`` cannot be written, the disk has no room for it, or it holds another
    command's results.

    Raises:
        UserError: a group exists, was made by another command, and no ``--overwrite``.
        DiskFullError: the disk cannot hold a copy of the file and a small result.
    """
    from ..storage import check_output, decode_attr, open_landscape_file
    from ..storage.diskguard import OVERHEAD_BYTES, check_space

    check_output(path)
    # a disk without room for a copy of the file and a small result: refused before work
    check_space(path, (os.path.getsize(path) if os.path.exists(path) else 0) + OVERHEAD_BYTES)
    if args.overwrite or not os.path.exists(path):
        return list(groups)
    missing = []
    with open_landscape_file(path) as f:
        for name in groups:
            if name not in f:
                missing.append(name)
            elif decode_attr(f[name].attrs.get("command")) != command_identity(args, name):
                raise UserError(
                    f"{path} already has /{name} from another command; pass --overwrite "
                    "to replace it"
                )
    if not missing:
        _print(f"{path}: complete (/{', /'.join(groups)}); nothing to compute")
    return missing
