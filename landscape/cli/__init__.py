"""The ``landscape`` command line: a thin argparse front end over the public API.

User errors (missing file, bad range, unresolvable import string, model/checkpoint
mismatch) print one line on stderr and exit with status 2; a full disk prints one line
and exits with status 1; no traceback (``--debug`` shows it). Ctrl-C prints one line
and exits with status 130; the run resumes.

Modules: :mod:`~landscape.cli.parser` (options), :mod:`~landscape.cli.commands` (one
function per subcommand), :mod:`~landscape.cli._common` (what they share).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import torch

from .. import distributed
from ._common import _NUMBER_RANGE, RANGE_OPTIONS, UserError
from .parser import build_parser

__all__ = ["build_parser", "main"]


def _join_negative_ranges(argv: Sequence[str]) -> list[str]:
    """``--x -1:1:51`` -> ``--x=-1:1:51``: argparse would take ``-1:1:51`` for a flag."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in RANGE_OPTIONS and i + 1 < len(argv) and _NUMBER_RANGE.match(argv[i + 1]):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = _join_negative_ranges(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    try:
        args = build_parser().parse_args([a for a in argv if a != "--debug"])
    except KeyboardInterrupt:  # building the parser imports matplotlib: it takes a while
        print("landscape: interrupted", file=sys.stderr)
        return 130
    launched = "RANK" in os.environ and not distributed.is_distributed()
    try:
        if launched:  # under torchrun: join the group; every rank runs the same command
            distributed.init_from_env()
        args.func(args)
    except KeyboardInterrupt:
        if distributed.rank() == 0:
            print(f"landscape {args.command}: interrupted; run it again to resume",
                  file=sys.stderr)  # fmt: skip
        return 130
    except Exception as err:  # one line for the user; --debug shows the traceback
        if debug:
            traceback.print_exc()
        elif distributed.rank() == 0:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            expected = (UserError, ValueError, TypeError, KeyError, OSError, RuntimeError)
            internal = not isinstance(err, expected)
            hint = " (an internal error: rerun with --debug for the traceback)" if internal else ""
            print(f"landscape {args.command}: error: {message}{hint}", file=sys.stderr)
        return getattr(err, "exit_status", 2)  # 1 for a full disk: not the user's mistake
    finally:
        if launched and distributed.is_distributed():
            torch.distributed.destroy_process_group()
    return 0
