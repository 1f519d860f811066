"""The ``landscape`` command line: a thin argparse front end over the public API.

User errors (missing file, bad range, unresolvable import string, model/checkpoint
mismatch) print one line on stderr and exit with status 2; a full disk prints one line
and exits with status 1; no traceback (``--debug`` shows it). Ctrl-C at any moment, the
start included, prints one line and exits with status 130; a run that writes a file
resumes when started again.

Start-up is quick: this package and :mod:`~landscape.cli.parser` import nothing heavy, so
``--help``, ``--version`` and a mistyped option answer without loading torch, scipy,
matplotlib or h5py; a subcommand imports what it uses when it runs.

Modules: :mod:`~landscape.cli.parser` (options), :mod:`~landscape.cli.commands` (one
function per subcommand), :mod:`~landscape.cli._common` (what they share).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence

from .parser import _NUMBER_RANGE, RANGE_OPTIONS, build_parser

__all__ = ["build_parser", "main"]

# Subcommands that write a file a second run resumes (or completes) instead of redoing.
_RESUMABLE = ("surface", "hessian", "sharpness", "compare", "trajectory", "connect")


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


# While the command starts (parsing, joining torchrun's group, loading torch and the rest)
# this holds the line a Ctrl-C prints; None once the command itself runs.
_starting: dict[str, str | None] = {"line": None}


def _on_sigint(signum: int, frame: object) -> None:
    """Ctrl-C. While the command starts there is nothing to clean up: print the line and exit
    at once (an interrupt inside an extension module's initialization would otherwise make
    Python end by SIGINT instead of status 130). Later, the first Ctrl-C stops the run (files
    are closed on the way out); a second one, during that clean-up, exits at once, quietly."""
    line = _starting["line"]
    if line is not None:
        if _rank() == 0:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        os._exit(130)
    signal.signal(signal.SIGINT, _exit_now)
    raise KeyboardInterrupt


def _exit_now(signum: int, frame: object) -> None:
    for stream in (sys.stdout, sys.stderr):  # what was printed is kept
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed, or gone at shutdown
            pass
    os._exit(130)


def _interrupted_line(command: str | None) -> str:
    if command is None:
        return "landscape: interrupted"
    again = "; run it again to resume" if command in _RESUMABLE else ""
    return f"landscape {command}: interrupted{again}"


def _rank() -> int:
    """This process's rank under torchrun, 0 otherwise; imports nothing (torch may be the
    import that was interrupted)."""
    distributed = sys.modules.get("landscape.distributed")
    return distributed.rank() if distributed is not None else 0


def _where(rank: int) -> str:
    """`` on rank N`` under torchrun (more than one rank), else nothing."""
    distributed = sys.modules.get("landscape.distributed")
    return f" on rank {rank}" if distributed is not None and distributed.world_size() > 1 else ""


def _is_user_error(err: Exception) -> bool:
    expected: tuple[type[Exception], ...] = (ValueError, TypeError, KeyError, OSError, RuntimeError)
    common = sys.modules.get(f"{__name__}._common")  # not imported: no UserError was raised
    return isinstance(err, expected + ((common.UserError,) if common is not None else ()))


def _message(err: Exception, args: object) -> str:
    """The error's one line, its Python-only hints said as the command line's options."""
    message = str(err.args[0] if isinstance(err, KeyError) and err.args else err)
    checkpoint = sys.modules.get("landscape.checkpoint")
    hint = getattr(checkpoint, "STRICT_HINT", None)
    if hint and hint in message:
        cli_hint = ", or pass --no-strict to allow missing/unexpected keys"
        message = message.replace(hint, cli_hint if hasattr(args, "strict") else "")
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: the arguments; default ``sys.argv[1:]``, as the ``landscape`` command does:
            then a Ctrl-C after the return (while Python shuts down) exits 130 quietly.
    """
    # Python's own handler is replaced (another one, installed by a caller, is kept)
    ours = threading.current_thread() is threading.main_thread()
    ours = ours and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if ours:
        _starting["line"] = _interrupted_line(None)
        signal.signal(signal.SIGINT, _on_sigint)
    try:
        return _run(sys.argv[1:] if argv is None else argv, starting=ours)
    finally:
        _starting["line"] = None
        if ours:  # a caller gets Python's handler back; a command line (argv None) ends
            # now, and a Ctrl-C while the interpreter shuts down exits quietly with 130
            after = signal.default_int_handler if argv is not None else _exit_now
            signal.signal(signal.SIGINT, after)


def _run(argv: Sequence[str], *, starting: bool) -> int:
    argv = _join_negative_ranges(argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    try:
        args = build_parser().parse_args([a for a in argv if a != "--debug"])
    except KeyboardInterrupt:
        print(_interrupted_line(None), file=sys.stderr)
        return 130
    if starting:
        _starting["line"] = _interrupted_line(args.command)
    launched = False
    try:
        if "RANK" in os.environ:  # under torchrun: join the group; every rank runs the command
            from .. import distributed

            launched = not distributed.is_distributed()
            if launched:
                distributed.init_from_env()
        from . import commands  # noqa: F401  (the subcommands' modules: torch and the rest)

        _starting["line"] = None  # started: from here a Ctrl-C unwinds, closing files
        args.func(args)
    except KeyboardInterrupt:
        if _rank() == 0:
            print(_interrupted_line(args.command), file=sys.stderr)
        return 130
    except Exception as err:  # one line for the user; --debug shows the traceback
        # printed by the rank that had it (an error shared with every rank, once: torchrun
        # may stop the others before they print); under torchrun the line names the rank
        source = getattr(err, "landscape_rank", None)
        if source is None or source == _rank():
            if debug:
                traceback.print_exc()
            else:
                internal = not _is_user_error(err)
                hint = (
                    " (an internal error: rerun with --debug for the traceback)" if internal else ""
                )
                where = _where(_rank() if source is None else source)
                print(f"landscape {args.command}: error{where}: {_message(err, args)}{hint}",
                      file=sys.stderr)  # fmt: skip
        return getattr(err, "exit_status", 2)  # 1 for a full disk: not the user's mistake
    finally:
        if launched:
            from .. import distributed

            if distributed.is_distributed():
                import torch.distributed

                torch.distributed.destroy_process_group()
    return 0
