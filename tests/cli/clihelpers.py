"""Shared helpers for the end-to-end tests of the ``crossentropy`` command.

Every test runs the command in a subprocess, as a user would, with the
interpreter that runs the tests (``python -m crossentropy``).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np


class Result:
    def __init__(self, proc):
        self.rc, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    def json(self):
        return json.loads(self.out)


def run_cli(args, cwd=None, timeout=120, stdin=None, pre=None):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    if pre is None:
        cmd = [sys.executable, "-m", "crossentropy", *map(str, args)]
    else:
        # Run Python code first (e.g. hide an optional dependency), then the CLI.
        code = pre + "\nimport sys\nfrom crossentropy.cli import main\nsys.exit(main(sys.argv[1:]))"
        cmd = [sys.executable, "-c", code, *map(str, args)]
    return Result(subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env,
                                 input=stdin))


def assert_clean_error(r, *fragments):
    """Exit status 2, one line on stderr that names the given fragments, no traceback."""
    assert r.rc == 2, (r.rc, r.out, r.err)
    assert "Traceback" not in r.err, r.err
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1, r.err
    assert lines[0].startswith("crossentropy: error: "), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert r.out == ""


def png_size(path):
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    with open(path, "rb") as f:
        head = f.read(33)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert head[12:16] == b"IHDR"
    w, h = struct.unpack(">II", head[16:24])
    return w, h


def make_multiclass(n=500, k=4, seed=0, zero_rows=0):
    """Random probabilities (rows sum to 1), logits and labels."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 2.0
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = rng.integers(0, k, size=n)
    return p, z, y
