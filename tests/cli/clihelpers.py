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


def write_csv(path, y, p, prefix="p", sep=",", extra=None):
    """A CSV with a ``label`` column and ``{prefix}{j}`` prediction columns (``extra``: more named columns)."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
        names = [prefix]
    else:
        names = [f"{prefix}{j}" for j in range(p.shape[1])]
    extra = extra or {}
    with open(path, "w") as f:
        f.write(sep.join(["label"] + names + list(extra)) + "\n")
        for i, (t, row) in enumerate(zip(y, p)):
            cells = [str(t if isinstance(t, str) else int(t))] + [repr(float(v)) for v in row]
            cells += [str(v[i]) for v in extra.values()]
            f.write(sep.join(cells) + "\n")
    return path


def reference_ece(conf, hit, bins=10, weights=None):
    """ECE and MCE with scikit-learn's bins (``calibration_curve``: a value on an inner edge goes to the lower bin)."""
    conf = np.asarray(conf, dtype=np.float64)
    hit = np.asarray(hit, dtype=np.float64)
    w = np.ones_like(conf) if weights is None else np.asarray(weights, dtype=np.float64)
    b = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], conf)
    total, worst = 0.0, 0.0
    for i in range(bins):
        m = (b == i) & (w > 0)
        if m.any():
            gap = abs(np.average(hit[m], weights=w[m]) - np.average(conf[m], weights=w[m]))
            total += w[m].sum() / w.sum() * gap
            worst = max(worst, gap)
    return total, worst


def softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def run_inproc(args):
    """Run ``crossentropy ARGS`` in this process (fast, for fuzzing); same exit codes and streams."""
    import io

    from crossentropy.cli import main

    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    err = io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        rc = main([str(a) for a in args])
    finally:
        try:
            out.flush()
        except ValueError:
            pass
        sys.stdout, sys.stderr = old

    class R:
        pass
    r = R()
    r.rc, r.out, r.err = rc, raw.getvalue().decode("utf-8", "replace"), err.getvalue()
    r.json = lambda: json.loads(r.out)
    return r


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test interrupts: SIGINT back to its default disposition.

    A shell starts a background job (``bash .ci/run &``) with SIGINT *ignored*, children inherit
    that, and Python then installs no KeyboardInterrupt handler: Ctrl-C would never reach the
    command.  A user's terminal gives it the default disposition, which is what these tests model.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
