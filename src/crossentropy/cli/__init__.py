"""The ``crossentropy`` command: ``score`` prediction files, ``explain`` the loss.

``crossentropy`` alone (or ``crossentropy score`` with no file) scores the
bundled example; ``crossentropy FILE`` is short for ``crossentropy score
FILE``.  Exit status: 0 on success, 2 for bad input or usage (one line on
stderr, no traceback), 130 when interrupted.

>>> main(["explain", "--probs", "0.8", "--labels", "1", "--base", "2"])  # doctest: +ELLIPSIS
Binary cross-entropy...
0
"""

from __future__ import annotations

import argparse
import sys

from .._errors import CrossEntropyError

__all__ = ["main", "build_parser"]

_SUBCOMMANDS = ("score", "explain")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``crossentropy`` command (both subcommands)."""
    from .. import __version__
    from . import explain, score

    p = argparse.ArgumentParser(
        prog="crossentropy",
        description="Score prediction files with cross-entropy, or walk through the computation step by step.",
        epilog="With no subcommand, 'crossentropy' runs 'crossentropy score' (the bundled example when no file "
               "is given).",
    )
    p.add_argument("--version", action="version", version=f"crossentropy {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{score,explain}")
    score.add_parser(sub)
    explain.add_parser(sub)
    return p


def main(argv=None) -> int:
    """Run the command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in _SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv = ["score"] + argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CrossEntropyError as e:
        _error(str(e))
        return 2
    except KeyboardInterrupt:
        _error("interrupted; no output file was written")
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): nothing left to say.
        try:
            sys.stdout = None  # type: ignore[assignment]
        except Exception:  # pragma: no cover
            pass
        return 0
    except OSError as e:
        _error(f"{getattr(e, 'filename', None) or ''}{': ' if getattr(e, 'filename', None) else ''}"
               f"{e.strerror or e}")
        return 2


def _error(msg: str) -> None:
    sys.stdout.flush() if sys.stdout else None
    print(f"crossentropy: error: {msg}", file=sys.stderr)
