"""The ``crossentropy`` command: ``score`` prediction files, ``explain`` the loss.

``crossentropy`` alone (or ``crossentropy score`` with no file) scores the
bundled example; ``crossentropy FILE ...`` is short for ``crossentropy score
FILE ...``.  Exit status: 0 on success, 2 for bad input or usage (one line on
stderr naming the file, line or row, and column; never a traceback), 130 when
interrupted.

>>> main(["explain", "--probs", "0.8", "--labels", "1", "--base", "2"])  # doctest: +ELLIPSIS
Binary cross-entropy...
0
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["main", "build_parser"]

_SUBCOMMANDS = ("score", "explain")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``crossentropy`` command (both subcommands)."""
    from .. import __version__
    from . import explain, score
    from ._common import Parser

    p = Parser(
        prog="crossentropy",
        description="Score prediction files with cross-entropy, or walk through the computation step by step.",
        epilog="With no subcommand, 'crossentropy' runs 'crossentropy score' (the bundled example when no file "
               "is given).",
    )
    p.add_argument("--version", action="version", version=f"crossentropy {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{score,explain}", parser_class=Parser)
    score.add_parser(sub)
    explain.add_parser(sub)
    return p


def _route(argv: list[str]) -> list[str]:
    """Insert ``score`` where it is implied; refuse a mistyped subcommand with a hint."""
    if not argv:
        return ["score"]
    first = argv[0]
    if first in _SUBCOMMANDS or first in ("-h", "--help", "--version"):
        return argv
    if not first.startswith("-") and first != "-" and not os.path.exists(first) and "." not in first \
            and "/" not in first and os.sep not in first and not any(c in first for c in "*?["):
        import difflib

        from ._common import UsageError
        near = difflib.get_close_matches(first, _SUBCOMMANDS, n=1, cutoff=0.6)
        if near:
            raise UsageError(f"unknown command {first!r}; did you mean {near[0]!r}? (see 'crossentropy --help')")
    return ["score"] + argv


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        _error("interrupted; no output file was written")
        return 130


def _main(argv: Sequence[str] | None) -> int:
    from .._errors import CrossEntropyError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(_route(argv))
        return int(args.run(args) or 0)
    except CrossEntropyError as e:
        _error(str(e))
        return 2
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): nothing left to say.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except OSError as e:
        fn = getattr(e, "filename", None)
        _error(f"{fn}: {e.strerror or e}" if fn else f"{e.strerror or e}")
        return 2
    except MemoryError:
        _error("out of memory (try a smaller --chunk-rows, or --no-auc)")
        return 2
    except SystemExit as e:  # --help and --version exit through argparse
        return int(e.code or 0) if isinstance(e.code, int) else 0
    except Exception as e:  # a bug: say so in one line (the traceback with CROSSENTROPY_DEBUG=1)
        if os.environ.get("CROSSENTROPY_DEBUG"):
            raise
        _error(f"internal error ({type(e).__name__}: {e}); please report it, with CROSSENTROPY_DEBUG=1 for the "
               "traceback")
        return 2


def _error(msg: str) -> None:
    try:
        if sys.stdout:
            sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(f"crossentropy: error: {msg}", file=sys.stderr)
