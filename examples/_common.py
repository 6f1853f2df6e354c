"""Shared bits of the examples: the digits data set and the curve plot/check."""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np


def load_digits(n=None):
    """scikit-learn's 8×8 digits (ships with scikit-learn, works offline), standardised."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = d.data.astype("float32")
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = d.target.astype("int64")
    if n is not None:
        x, y = x[:n], y[:n]
    return x, y


def parse(argv, default_steps, name):
    p = argparse.ArgumentParser(description=f"Train on digits with the framework's loss and with crossentropy's ({name}).")
    p.add_argument("--steps", type=int, default=default_steps)
    default = os.path.join(tempfile.gettempdir(), "crossentropy-examples", f"{name}_loss_curves.png")
    p.add_argument("--out", default=default,
                   help=f"PNG to write ('' for none; default {default}, outside the repository)")
    p.add_argument("--rtol", type=float, default=1e-3, help="largest allowed relative difference of the curves")
    return p.parse_args(argv)


def max_rel_diff(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12)))


def report(name, ref, ours, out, rtol, ref_label, our_label):
    """Plot both curves, print the verdict, return the exit status (0: curves agree)."""
    d = max_rel_diff(ref, ours)
    if out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(ref, label=ref_label, lw=3, alpha=0.5)
        ax.plot(ours, label=our_label, ls="--")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_yscale("log")
        ax.set_title(f"{name}: digits, max relative difference {d:.2e}")
        ax.legend()
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        fig.savefig(out, dpi=100)
        plt.close(fig)
    ok = d <= rtol
    print(f"{name}: {len(ref)} steps, final loss {ref[-1]:.6f} (reference) vs {ours[-1]:.6f} (crossentropy), "
          f"max relative difference {d:.3e} -> {'OK' if ok else 'DIVERGED'}" + (f"; wrote {out}" if out else ""))
    return 0 if ok else 1
