"""Print the adapter × option table of the largest differences against the originals (Markdown).

    python tests/adapters/report.py > /tmp/parity.md

Uses the same cases as the parity tests; Keras's JAX and PyTorch backends run in
subprocesses.  Each cell is ``max|Δvalue| / max|Δgradient|`` (absolute).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import warnings

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.simplefilter("ignore")


def fmt(dv, dg=None):
    f = lambda v: "0" if v == 0 else f"{v:.1e}"  # noqa: E731
    return f(dv) if dg is None else f"{f(dv)} / {f(dg)}"


def torch_table():
    import torch

    import _torch_cases as tc

    print("### crossentropy.torch vs torch.nn (value / input gradient)\n")
    print("| case | float64 | float32 | float16 | bfloat16 |\n|---|---|---|---|---|")
    for name in tc.CASES:
        cells = [fmt(*tc.compare(name, dt)[:2]) for dt in tc.DTYPES]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()


def torch_autodiff_table():
    """Autodiff modes × losses: max |ours − torch| over the cases of each loss (float64)."""
    import _torch_autodiff_cases as ac

    families = ["cross_entropy (index)", "cross_entropy (prob)", "nll_loss", "binary_cross_entropy",
                "bce_with_logits"]
    print("### crossentropy.torch vs torch.nn.functional in every autodiff mode (float64, max |Δ|)\n")
    print("| mode | " + " | ".join(families) + " |\n|---|" + "---|" * len(families))
    for mode in ac.MODES:
        cells = []
        for fam in families:
            names = [c for c in ac.CASES if ac.family(ac.CASES[c]) == fam and ac.applies(mode, c)]
            worst, raised = None, 0
            for name in names:
                try:
                    d, _ = ac.compare(mode, name)
                except ac.BothRaise:
                    raised += 1
                    continue
                worst = d if worst is None else max(worst, d)
            cell = "n/a" if not names else fmt(worst) if worst is not None else "raises, as torch"
            cells.append(cell + (f" ({len(names)})" if names else ""))
        print(f"| {mode} | " + " | ".join(cells) + " |")
    print()


def keras_table():
    import _keras_cases as kc

    res = {"tensorflow": kc.run_all()}
    for b in ("jax", "torch"):
        env = dict(os.environ, KERAS_BACKEND=b, PYTHONPATH=os.pathsep.join([str(HERE)] + sys.path))
        out = subprocess.run([sys.executable, str(HERE / "_keras_cases.py")], env=env, capture_output=True, text=True)
        res[b] = json.loads(out.stdout)["results"]
    print("### crossentropy.keras vs keras.losses, float32 (value / gradient w.r.t. y_pred)\n")
    print("| case | TensorFlow | JAX | PyTorch |\n|---|---|---|---|")
    for name in kc.CASES:
        print(f"| {name} | " + " | ".join(fmt(*res[b][name][:2]) for b in ("tensorflow", "jax", "torch")) + " |")
    print()


def jax_table():
    import test_jax as tj

    print("### crossentropy.jax vs optax, float32 (value / gradient)\n")
    print("| case | difference |\n|---|---|")
    for name in tj.CASES:
        print(f"| {name} | {fmt(*tj.compare(name)[:2])} |")
    print()


def sklearn_table():
    import sklearn.metrics

    import test_sklearn_and_imports as ts
    from crossentropy.sklearn import log_loss

    print("### crossentropy.sklearn.log_loss vs sklearn.metrics.log_loss (value)\n")
    print("| case | difference |\n|---|---|")
    for name, (args, kw) in ts.CASES.items():
        print(f"| {name} | {fmt(abs(log_loss(*args, **kw) - sklearn.metrics.log_loss(*args, **kw)))} |")
    print()


TABLES = {"torch": torch_table, "torch-autodiff": torch_autodiff_table, "keras": lambda: keras_table(),
          "jax": lambda: jax_table(), "sklearn": lambda: sklearn_table()}

if __name__ == "__main__":
    # python tests/adapters/report.py [table ...]   (default: every table)
    for name in sys.argv[1:] or list(TABLES):
        TABLES[name]()
