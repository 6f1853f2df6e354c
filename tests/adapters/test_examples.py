"""The examples train for a few steps here: curves and first-step gradients agree, PNGs are written."""

from __future__ import annotations

import importlib.util
import os
import pathlib

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _close(a, b, rtol):
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=rtol * 1e-2)


def test_torch_example(tmp_path):
    m = _load("torch_digits")
    (ref, g_ref), (ours, g_ours) = m.run(steps=8, n=400)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    _close(g_ours, g_ref, 1e-5)
    out = tmp_path / "t.png"
    assert m.main(["--steps", "3", "--out", str(out)]) == 0 and out.stat().st_size > 1000


def test_jax_example(tmp_path):
    m = _load("jax_digits")
    (ref, g_ref), (ours, g_ours) = m.run(steps=8, n=400)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    _close([g_ours[k] for k in sorted(g_ours)], [g_ref[k] for k in sorted(g_ref)], 1e-5)
    out = tmp_path / "j.png"
    assert m.main(["--steps", "3", "--out", str(out)]) == 0 and out.stat().st_size > 1000


def test_keras_example(tmp_path):
    m = _load("keras_digits")
    import keras

    (ref, w_ref), (ours, w_ours), (x, y, w0) = m.run(epochs=2, n=400)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    _close(w_ours, w_ref, 1e-5)
    g_ref = m.first_gradients(keras.losses.SparseCategoricalCrossentropy(), w0, x, y)
    import crossentropy.keras as ck

    g_ours = m.first_gradients(ck.SparseCategoricalCrossentropy(), w0, x, y)
    _close(g_ours, g_ref, 1e-5)
    out = tmp_path / "k.png"
    assert m.main(["--steps", "2", "--out", str(out)]) == 0 and out.stat().st_size > 1000


def test_diverging_curves_exit_non_zero(tmp_path, capsys):
    from importlib import import_module  # noqa: F401

    common = _load("_common")
    assert common.report("x", [1.0, 0.5], [1.0, 0.9], "", 1e-3, "a", "b") == 1
    assert "DIVERGED" in capsys.readouterr().out


def test_default_plot_is_written_outside_the_repository():
    common = _load("_common")
    repo = EXAMPLES.parent.resolve()
    for name in ("torch", "keras", "jax"):
        out = pathlib.Path(common.parse([], 1, name).out).resolve()
        assert repo not in out.parents and out.suffix == ".png"
        assert pathlib.Path(common.parse(["--out", "x.png"], 1, name).out) == pathlib.Path("x.png")
