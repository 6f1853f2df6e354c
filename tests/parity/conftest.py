"""Parity-test plumbing: compare ours with a reference and record the largest difference.

Every parity test calls ``parity.check(reference, loss, options, ours=..., ref=...,
grad_ours=..., grad_ref=..., dtype=...)``.  It asserts agreement within a
tolerance derived from the dtype (``tests/conftest.py::tol``) and records the
largest absolute difference per (reference, loss, options) cell, separately for
the loss value and the input gradient.

When ``CROSSENTROPY_PARITY_OUT`` names a directory, each pytest process (each
xdist worker) writes its maxima there as JSON at the end of the session;
``python tests/parity/report.py`` runs the parity tests that way and turns the
merged maxima into ``docs/parity-matrix.md``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.conftest import tol


def _np(a):
    if a is None:
        return None
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    elif hasattr(a, "numpy") and not isinstance(a, np.ndarray):
        a = a.numpy()
    return np.asarray(a, dtype=np.float64)


def max_abs_diff(a, b) -> float:
    """Largest |a − b| over entries where the two are not identical.

    Equal infinities and NaN-vs-NaN count as a difference of 0; an infinity or
    NaN that appears on one side only counts as ``inf``.
    """
    a, b = np.broadcast_arrays(_np(a), _np(b))
    if a.size == 0:
        return 0.0
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    d = np.where(same, 0.0, np.abs(np.where(same, 0.0, a) - np.where(same, 0.0, b)))
    d = np.where(np.isnan(d), np.inf, d)
    return float(d.max())


class Recorder:
    def __init__(self):
        self.cells: dict[tuple[str, str, str], dict] = {}

    def _cell(self, ref, loss, opts):
        return self.cells.setdefault((ref, loss, opts), {"value": 0.0, "grad": None, "n": 0, "dtypes": []})

    def check(self, ref, loss, opts, *, ours, theirs, grad_ours=None, grad_theirs=None, dtype=np.float64,
              factor=64.0, grad_factor=None, scale=None):
        """Assert closeness (rtol = atol = tol(dtype, factor) relative to ``scale``) and record.

        ``scale`` defaults to max(1, max |theirs|) so that large sums are compared
        relatively and small numbers absolutely.
        """
        o, t = _np(ours), _np(theirs)
        assert o.shape == t.shape, f"{ref} {loss} [{opts}]: shape {o.shape} vs reference {t.shape}"
        assert np.array_equal(np.isnan(o), np.isnan(t)), f"{ref} {loss} [{opts}]: NaN pattern differs"
        assert np.array_equal(np.isinf(o) & (o > 0), np.isinf(t) & (t > 0)), f"{ref} {loss} [{opts}]: +inf differs"
        d = max_abs_diff(o, t)
        finite = np.isfinite(t)
        s = scale if scale is not None else max(1.0, float(np.abs(t[finite]).max()) if finite.any() else 1.0)
        limit = tol(dtype, factor) * s
        cell = self._cell(ref, loss, opts)
        cell["value"] = max(cell["value"], d)
        cell["n"] += 1
        name = np.dtype(dtype).name
        if name not in cell["dtypes"]:
            cell["dtypes"].append(name)
        assert d <= limit, f"{ref} {loss} [{opts}] {name}: value differs by {d:.3g} > {limit:.3g}\nours={o}\nref={t}"
        if grad_theirs is not None:
            go, gt = _np(grad_ours), _np(grad_theirs)
            assert go.shape == gt.shape, f"{ref} {loss} [{opts}]: grad shape {go.shape} vs {gt.shape}"
            assert np.array_equal(np.isnan(go), np.isnan(gt)), f"{ref} {loss} [{opts}]: grad NaN pattern differs"
            dg = max_abs_diff(go, gt)
            fin = np.isfinite(gt)
            sg = max(1.0, float(np.abs(gt[fin]).max()) if fin.any() else 1.0)
            glimit = tol(dtype, grad_factor or factor) * sg
            cell["grad"] = max(cell["grad"] or 0.0, dg)
            assert dg <= glimit, (f"{ref} {loss} [{opts}] {name}: gradient differs by {dg:.3g} > {glimit:.3g}\n"
                                  f"ours={go}\nref={gt}")

    def record_exact(self, ref, loss, opts, *, ours, theirs, dtype, ulps=0, grad_ours=None, grad_theirs=None):
        """Assert agreement within ``ulps`` units in the last place (0 = bitwise) and record."""
        o, t = _np(ours), _np(theirs)
        spacing = np.spacing(np.abs(t).astype(dtype)).astype(np.float64)
        d = max_abs_diff(o, t)
        cell = self._cell(ref, loss, opts)
        cell["value"] = max(cell["value"], d)
        cell["n"] += 1
        name = np.dtype(dtype).name
        if name not in cell["dtypes"]:
            cell["dtypes"].append(name)
        ok = (o == t) | (np.abs(o - t) <= ulps * spacing) | (np.isnan(o) & np.isnan(t))
        with np.errstate(invalid="ignore", divide="ignore"):
            measured = np.nanmax(np.where(o == t, 0.0, np.abs(o - t) / spacing)) if o.size else 0.0
        cell["ulps"] = max(cell.get("ulps", 0.0), float(measured))
        assert ok.all(), f"{ref} {loss} [{opts}] {name}: {measured:.3g} ulp apart > {ulps}\nours={o!r}\nref={t!r}"
        if grad_theirs is not None:
            self.check(ref, loss, opts, ours=ours, theirs=theirs, grad_ours=grad_ours, grad_theirs=grad_theirs,
                       dtype=dtype)


_RECORDER = Recorder()


@pytest.fixture(scope="session")
def parity():
    yield _RECORDER
    out = os.environ.get("CROSSENTROPY_PARITY_OUT")
    if out and _RECORDER.cells:
        os.makedirs(out, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        rows = [{"reference": r, "loss": l, "options": o, **v} for (r, l, o), v in _RECORDER.cells.items()]
        with open(os.path.join(out, f"{worker}-{os.getpid()}.json"), "w") as f:
            json.dump(rows, f)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: reproducible, different per test."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)
