"""Plumbing shared by the subcommands: atomic output files, progress, matplotlib."""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time

from .._errors import CrossEntropyError

__all__ = ["CLIError", "OutputFiles", "Progress", "need_matplotlib", "json_ready"]


class CLIError(CrossEntropyError, ValueError):
    """A problem with the command line itself (missing optional dependency, bad path, ...)."""


class OutputFiles:
    """Output files that appear whole or not at all.

    Each file is written to a temporary name in its destination folder;
    :meth:`commit` renames all of them at the end (``os.replace`` is atomic on
    one filesystem).  Leaving the ``with`` block by an exception, including
    Ctrl-C, deletes the temporaries, so a failed or interrupted run never
    leaves a truncated PNG or report behind.

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with OutputFiles() as out:
    ...     with open(out.temp(os.path.join(d, "r.txt")), "w") as f:
    ...         _ = f.write("ok")
    ...     out.commit()
    >>> os.listdir(d)
    ['r.txt']
    """

    def __init__(self):
        self._pending: list = []

    def temp(self, path: str) -> str:
        """A temporary path next to ``path``; it becomes ``path`` on :meth:`commit`."""
        path = os.path.abspath(path)
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            raise CLIError(f"{path}: the folder {folder} does not exist")
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".part", dir=folder)
        os.close(fd)
        self._pending.append((tmp, path))
        return tmp

    def commit(self) -> None:
        for tmp, path in self._pending:
            os.replace(tmp, path)
        self._pending = []

    def discard(self) -> None:
        for tmp, _ in self._pending:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self._pending = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.discard()
        return False


class Progress:
    """A one-line progress bar on stderr, shown only for runs longer than ``delay`` s.

    Enabled when stderr is a terminal or when forced (``--progress``);
    :meth:`update` is cheap to call per chunk (it redraws at most 10 times
    a second).
    """

    def __init__(self, enabled: bool, label: str, stream=None, delay: float = 0.5):
        self.stream = stream or sys.stderr
        self.enabled, self.label, self.delay = enabled, label, delay
        self.t0 = time.monotonic()
        self.last = 0.0
        self.drawn = False

    def update(self, done, total, samples: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.t0 < self.delay or now - self.last < 0.1:
            return
        self.last = now
        rate = samples / max(now - self.t0, 1e-9)
        if total:
            frac = min(max(done / total, 0.0), 1.0)
            bar = "#" * int(frac * 30)
            line = f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}%  {samples:,} samples  {rate:,.0f}/s"
        else:
            line = f"\r{self.label} {samples:,} samples  {rate:,.0f}/s"
        self.stream.write(line)
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False


def need_matplotlib():
    """``matplotlib.pyplot`` on the file-only Agg backend, or a one-line error."""
    try:
        import matplotlib
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install 'crossentropy[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def json_ready(obj):
    """Replace non-finite floats by the strings ``"inf"``/``"-inf"``/``"nan"`` (strict JSON has none).

    >>> json_ready({"a": [1.0, float("inf")]})
    {'a': [1.0, 'inf']}
    """
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def parse_base(text) -> float | None:
    """The ``--base`` option: ``None`` for natural logs (``e``, ``nats``, ``ln``), else the base.

    >>> parse_base("bits"), parse_base("10"), parse_base("e")
    (2.0, 10.0, None)
    """
    t = str(text).strip().lower()
    if t in ("e", "nats", "ln"):
        return None
    if t in ("2", "bits"):
        return 2.0
    try:
        b = float(t)
    except ValueError:
        raise CLIError(f"--base must be a number > 0 other than 1, 'e' or 'bits'; got {text!r}") from None
    if not (b > 0 and b != 1 and math.isfinite(b)):
        raise CLIError(f"--base must be a number > 0 other than 1; got {text!r}")
    return b
