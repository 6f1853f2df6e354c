"""Train a small MLP on scikit-learn's digits with optax's softmax cross-entropy and with
crossentropy.jax's, from the same initial parameters; plot both loss curves.

    python examples/jax_digits.py [--steps 200] [--out FILE.png]

Exits non-zero if the curves differ by more than --rtol (relative).
"""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _common import load_digits, parse, report  # noqa: E402

import crossentropy.jax as cj  # noqa: E402


def init_params(seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return {"w1": jax.random.normal(k1, (64, 32)) / 8.0, "b1": jnp.zeros(32),
            "w2": jax.random.normal(k2, (32, 10)) / jnp.sqrt(32.0), "b2": jnp.zeros(10)}


def forward(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def train(loss_fn, params, x, y, steps, lr=0.3):
    """Full-batch SGD with momentum (jit-compiled step); returns the curve and the first gradients."""
    opt = optax.sgd(lr, momentum=0.9)
    state = opt.init(params)

    def objective(p):
        return loss_fn(forward(p, x), y).mean()

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(objective)(p)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss, g

    curve, first = [], None
    for _ in range(steps):
        params, state, loss, g = step(params, state)
        first = g if first is None else first
        curve.append(float(loss))
    return curve, first


def run(steps, n=None):
    x, y = load_digits(n)
    x, y = jnp.asarray(x), jnp.asarray(y, dtype=jnp.int32)
    p0 = init_params()
    ref = train(optax.losses.softmax_cross_entropy_with_integer_labels, p0, x, y, steps)
    ours = train(cj.softmax_cross_entropy_with_integer_labels, p0, x, y, steps)
    return ref, ours


def main(argv=None):
    a = parse(argv, 200, "jax")
    (ref, _), (ours, _) = run(a.steps)
    return report("jax", ref, ours, a.out, a.rtol, "optax softmax_cross_entropy_with_integer_labels",
                  "crossentropy.jax softmax_cross_entropy_with_integer_labels")


if __name__ == "__main__":
    sys.exit(main())
