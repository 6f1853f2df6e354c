"""Plumbing shared by the subcommands: safe output, progress, usage errors with hints, matplotlib."""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import stat
import sys
import tempfile
import time

from .._errors import CrossEntropyError

__all__ = ["CLIError", "UsageError", "Parser", "OutputTarget", "write_outputs", "Progress", "need_matplotlib",
           "json_ready", "parse_base", "current_umask"]


class CLIError(CrossEntropyError, ValueError):
    """A problem with the command line itself (bad option value, missing dependency, bad path, ...)."""


class UsageError(CLIError):
    """An argument the parser refused (unknown option, bad choice, ...), with a hint when one is close."""


# ---------------------------------------------------------------------------------------------
# Argument parsing with "did you mean"
# ---------------------------------------------------------------------------------------------

def _close(word, candidates):
    m = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return m[0] if m else None


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line with a "did you mean" hint, raised as :class:`UsageError`."""

    def _all_options(self):
        opts = set(self._option_string_actions)
        for a in self._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    opts |= set(sub._option_string_actions)
        return opts

    def error(self, message):
        hint = ""
        m = re.search(r"unrecognized arguments: (.*)", message)
        if m:
            for word in m.group(1).split():
                if word.startswith("-"):
                    near = _close(word.split("=")[0], self._all_options())
                    if near:
                        hint = f"; did you mean {near}?"
                        break
        m = re.search(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(3))
            near = _close(m.group(2), choices)
            if near:
                hint = f"; did you mean {near!r}?"
        prog = self.prog
        raise UsageError(f"{message}{hint} (see '{prog} --help')")


# ---------------------------------------------------------------------------------------------
# Output: atomic for regular files, direct for FIFOs, devices and stdout
# ---------------------------------------------------------------------------------------------

def current_umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


class OutputTarget:
    """Where one output goes, worked out before the (long) scoring starts.

    * ``-``: standard output;
    * a symbolic link is followed to its target (a dangling link creates the
      target, as ``open()`` would);
    * a FIFO or a character device (``/dev/null``, ``/dev/stdout``, a
      terminal) is opened and written directly: it is never replaced;
    * a regular file, existing or not, is written to a temporary file in its
      folder and renamed over it once complete — atomic, so a failed or
      interrupted run leaves the old file (or none) — with the permissions a
      plain ``open()`` would give: the existing file's mode (and owner, when
      run as root), or ``0666 & ~umask`` for a new one.
    """

    def __init__(self, path: str, option: str):
        self.path, self.option = str(path), option
        self.kind = "stdout" if self.path == "-" else None
        self.mode = self.owner = None
        if self.kind:
            return
        real = os.path.realpath(self.path)
        try:
            st = os.stat(real)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise CLIError(f"{option} {self.path}: {e.strerror or e}") from None
        if st is None:
            folder = os.path.dirname(real) or "."
            if not os.path.isdir(folder):
                raise CLIError(f"{option} {self.path}: the folder {folder} does not exist")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise CLIError(f"{option} {self.path}: the folder {folder} is not writable")
            self.kind, self.real, self.mode = "file", real, 0o666 & ~current_umask()
        elif stat.S_ISDIR(st.st_mode):
            raise CLIError(f"{option} {self.path}: is a directory")
        elif stat.S_ISREG(st.st_mode):
            folder = os.path.dirname(real) or "."
            if not os.access(folder, os.W_OK | os.X_OK):
                raise CLIError(f"{option} {self.path}: the folder {folder} is not writable (the file is replaced "
                               "atomically)")
            self.kind, self.real = "file", real
            self.mode = stat.S_IMODE(st.st_mode)
            self.owner = (st.st_uid, st.st_gid)
        elif stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
            self.kind, self.real = "direct", real
        else:
            raise CLIError(f"{option} {self.path}: not a regular file, FIFO or character device")

    def same_as(self, other: "OutputTarget") -> bool:
        if self.kind == "stdout" or other.kind == "stdout":
            return self.kind == other.kind
        return self.real == other.real


def write_outputs(items) -> None:
    """Write ``[(OutputTarget, bytes)]``: every regular file to a temporary first, then all renamed.

    An exception (Ctrl-C included) before the renames removes the
    temporaries and leaves every target as it was.
    """
    pending = []
    try:
        for target, data in items:
            if target.kind != "file":
                continue
            folder = os.path.dirname(target.real) or "."
            fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target.real) + ".", suffix=".part", dir=folder)
            pending.append((tmp, target))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, target.mode)
            if target.owner is not None and hasattr(os, "chown") and os.geteuid() == 0:
                try:
                    os.chown(tmp, *target.owner)
                except OSError:
                    pass
        for tmp, target in pending:
            os.replace(tmp, target.real)
        pending = []
    finally:
        for tmp, _ in pending:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    for target, data in items:
        if target.kind == "direct":
            with open(target.real, "wb") as fh:
                fh.write(data)
        elif target.kind == "stdout":
            sys.stdout.flush()
            buf = getattr(sys.stdout, "buffer", None)
            if buf is None:  # a text-only stream (a doctest, an IDE console): the reports are UTF-8 text
                sys.stdout.write(data.decode("utf-8"))
            else:
                buf.write(data)
                buf.flush()


# ---------------------------------------------------------------------------------------------
# Progress, matplotlib, JSON, --base
# ---------------------------------------------------------------------------------------------

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
    from ..scoring.report import json_ready as _jr

    return _jr(obj)


def parse_base(text, option: str = "--base") -> float | None:
    """A logarithm base: ``None`` for natural logs (``e``, ``nats``, ``ln``), else the base.

    ``--base`` means the same in every subcommand: the base of the logarithm
    in which losses are shown (e: nats, 2: bits, 10, any b > 0 other than 1).

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
        raise CLIError(f"{option} must be a number > 0 other than 1, 'e' or 'bits'; got {text!r}") from None
    if not (b > 0 and b != 1 and math.isfinite(b)):
        raise CLIError(f"{option} must be a number > 0 other than 1; got {text!r}")
    if b == math.e:
        return None
    return b
