"""Train a small MLP on scikit-learn's digits with torch.nn.CrossEntropyLoss and with
crossentropy.torch.CrossEntropyLoss from the same initial weights; plot both loss curves.

    python examples/torch_digits.py [--steps 200] [--out FILE.png]

Exits non-zero if the curves differ by more than --rtol (relative).
"""

from __future__ import annotations

import copy
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _common import load_digits, parse, report  # noqa: E402

import crossentropy.torch as ct  # noqa: E402


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))


def train(model, loss_fn, x, y, steps, lr=0.3):
    """Full-batch SGD; returns the loss curve and the first step's gradients."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    curve, first_grads = [], None
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        if first_grads is None:
            first_grads = [p.grad.detach().clone() for p in model.parameters()]
        opt.step()
        curve.append(float(loss.detach()))
    return curve, first_grads


def run(steps, n=None):
    x, y = load_digits(n)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    init = make_model()
    opts = dict(label_smoothing=0.05)
    ref = train(copy.deepcopy(init), torch.nn.CrossEntropyLoss(**opts), x, y, steps)
    ours = train(copy.deepcopy(init), ct.CrossEntropyLoss(**opts), x, y, steps)
    return ref, ours


def main(argv=None):
    a = parse(argv, 200, "torch")
    (ref, _), (ours, _) = run(a.steps)
    return report("torch", ref, ours, a.out, a.rtol, "torch.nn.CrossEntropyLoss", "crossentropy.torch.CrossEntropyLoss")


if __name__ == "__main__":
    sys.exit(main())
