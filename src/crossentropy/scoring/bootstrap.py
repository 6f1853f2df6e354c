"""Poisson bootstrap that gives the same numbers for any chunking or partitioning.

A classic bootstrap resamples whole rows, so it needs all of them at once.
The **Poisson bootstrap** gives each row ``i`` an independent weight
``w(i, b) ~ Poisson(1)`` in each replicate ``b`` instead; a replicate's
statistic is then a weighted sum over rows, which streams and merges.  What
makes it partition-independent here is where the weights come from:

* the weight of global row ``i`` (0-based, counted over the whole dataset) in
  replicate ``b`` is a pure function of ``(seed, i, b)``:
  rows are grouped into fixed blocks of ``ROW_BLOCK = 1024`` global rows, and
  block ``j = i // 1024`` draws its ``1024 × B`` weights from the counter-based
  generator Philox4x64-10 (:class:`numpy.random.Philox`) with key
  ``(seed mod 2^64, STREAM)`` and counter ``(0, j, 0, 0)``: ``256·B`` 64-bit
  words, each split into four 16-bit uniforms from the low bits up; row
  ``i mod 1024`` takes uniforms ``[(i mod 1024)·B, (i mod 1024 + 1)·B)``;
* a uniform ``u`` becomes ``w = #{k : u ≥ T_k}`` with
  ``T_k = round(2^16 · P(Poisson(1) ≤ k))`` for ``k = 0 … 7``: ``P(w = k)`` is
  the Poisson(1) probability rounded to a multiple of 2^-16, and ``w ≤ 8``;
* the replicate sums ``Σ_i w(i, b) · x_i`` are kept **exactly** (each ``x_i``
  is cut into three 24-bit limbs on a fixed binary grid, and a float64 matrix
  product of small integers is exact), so replicate states merge in any order
  to the same bits.

Any process that holds row ``i`` therefore draws the same weights, and the
percentile intervals are identical whatever the chunk size, the partitioning
or the merge order.  Changing the seed or the number of replicates changes
the draws.

>>> r = ReplicateSums(4, seed=7, n_stats=1)
>>> r.add(np.arange(3), np.array([[1.0], [2.0], [4.0]]))
>>> s = ReplicateSums(4, seed=7, n_stats=1)
>>> s.add(np.array([2]), np.array([[4.0]])); t = ReplicateSums(4, seed=7, n_stats=1)
>>> t.add(np.arange(2), np.array([[1.0], [2.0]])); s.merge(t)
>>> bool((s.means(0) == r.means(0)).all())
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .exact import BIAS, SlotState, exact_ratio, split_exact, widen

__all__ = ["ROW_BLOCK", "STREAM", "poisson_weights", "ReplicateSums", "percentile_interval", "paired_p_value"]

ROW_BLOCK = 1024
STREAM = 0xB0075  # second key word: the bootstrap's own stream of the seed
# round(2^16 · CDF of Poisson(1) at k), k = 0..7
_THRESHOLDS = np.array([round(65536 * sum(math.exp(-1) / math.factorial(j) for j in range(k + 1)))
                        for k in range(8)], dtype=np.uint16)
_LIMB = 24
_FOLD_ROWS = 1 << 31  # rows before the int64 replicate state is folded into Python ints


def _block_weights(seed: int, block: int, n_replicates: int) -> np.ndarray:
    """The ``(ROW_BLOCK, B)`` uint8 Poisson weights of global row block ``block``."""
    key = np.array([seed & 0xFFFFFFFFFFFFFFFF, STREAM], dtype=np.uint64)
    counter = np.array([0, block, 0, 0], dtype=np.uint64)
    bg = np.random.Philox(key=key, counter=counter)
    words = bg.random_raw(ROW_BLOCK * n_replicates // 4 + 1)
    # Four 16-bit uniforms per word, low bits first: little-endian words read as
    # little-endian halves give that order on any machine.
    u = words.astype("<u8", copy=False).view("<u2")[:ROW_BLOCK * n_replicates]
    w = np.zeros(u.size, dtype=np.uint8)
    hit = np.empty(u.size, dtype=bool)
    for t in _THRESHOLDS:
        np.greater_equal(u, t, out=hit)
        w += hit.view(np.uint8)
    return w.reshape(ROW_BLOCK, n_replicates)


def poisson_weights(rows, n_replicates: int, seed: int) -> np.ndarray:
    """The ``(len(rows), B)`` uint8 bootstrap weights of the given global rows (0-based).

    >>> w = poisson_weights(np.arange(5000), 200, seed=1)
    >>> w.shape, round(float(w.mean()), 1), bool((poisson_weights([4321], 200, seed=1)[0] == w[4321]).all())
    ((5000, 200), 1.0, True)
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((rows.size, n_replicates), dtype=np.uint8)
    if rows.size == 0:
        return out
    blocks = rows // ROW_BLOCK
    for j in np.unique(blocks).tolist():
        sel = np.flatnonzero(blocks == j)
        out[sel] = _block_weights(seed, j, n_replicates)[rows[sel] - j * ROW_BLOCK]
    return out


def _limbs(x: np.ndarray):
    """``(position, limb0, limb1, limb2)``: ``x = Σ_j limb_j · 2^(24·(position + j) − BIAS)`` exactly."""
    s, hi, lo = split_exact(np.abs(x))
    m = hi * float(1 << 26) + lo  # the mantissa, an exact integer < 2^53
    pos = s // _LIMB
    y = np.ldexp(m, (s - pos * _LIMB).astype(np.int32))  # < 2^76, exact
    y2 = np.floor(np.ldexp(y, -2 * _LIMB))
    r = y - np.ldexp(y2, 2 * _LIMB)
    y1 = np.floor(np.ldexp(r, -_LIMB))
    y0 = r - np.ldexp(y1, _LIMB)
    sign = np.where(np.signbit(x), -1.0, 1.0)
    return pos, y0 * sign, y1 * sign, y2 * sign


_BLAS_LIMIT: Any = None  # None: not looked for yet; False: none; else a ThreadpoolController


def _small_matmul(L: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(L.T @ w)`` as int64, for a few limb columns against the (rows, B) weights.

    The product is small (~1000 x 1024 x a dozen), where a multi-threaded BLAS
    only spins: on a busy machine it is ten times slower than one thread.  So
    BLAS runs on one thread here (threadpoolctl, when installed; else NumPy's
    own loops).  Exact either way: every partial sum is an integer below 2^53.
    """
    global _BLAS_LIMIT
    if _BLAS_LIMIT is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS_LIMIT = ThreadpoolController()
        except Exception:  # not installed (or no BLAS found): NumPy's einsum, no BLAS
            _BLAS_LIMIT = False
    wf = w.astype(np.float64)
    if _BLAS_LIMIT:
        with _BLAS_LIMIT.limit(limits=1, user_api="blas"):
            return (L.T @ wf).astype(np.int64)
    return np.einsum("ij,ik->jk", L, wf).astype(np.int64)


class ReplicateSums(SlotState):
    """Exact Poisson-bootstrap sums ``Σ_i w(i, b)·X[i, k]`` for each replicate ``b`` and statistic ``k``.

    ``add(rows, X)`` takes the rows' global indices and an ``(n, n_stats)``
    float array (``±inf`` allowed: a replicate that draws such a row gets
    ``±inf``).  The sum of the weights themselves (the replicate's row count)
    is kept too.  :meth:`means` gives ``sum_k / sum_den`` per replicate, where
    the denominator is another statistic or the row count.
    """

    __slots__ = ("n_replicates", "seed", "n_stats", "_base", "_state", "_carry", "_rows", "_count",
                 "_posinf", "_neginf", "_nan")

    def __init__(self, n_replicates: int, *, seed: int, n_stats: int) -> None:
        self.n_replicates, self.seed, self.n_stats = int(n_replicates), int(seed), int(n_stats)
        self._base = 0
        self._state = np.zeros((self.n_stats, 0, self.n_replicates), dtype=np.int64)
        self._carry: list[list[int]] | None = None
        self._rows = 0
        self._count = np.zeros(self.n_replicates, dtype=np.int64)
        z = np.zeros((self.n_stats, self.n_replicates), dtype=np.int64)
        self._posinf, self._neginf, self._nan = z, z.copy(), z.copy()

    def _widen(self, lo: int, hi: int) -> None:
        self._state, self._base = widen(self._state, self._base, lo, hi, 1)

    def add(self, rows, X) -> None:
        """Add the statistics ``X`` (``(n, n_stats)``) of the global ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        X = np.asarray(X, dtype=np.float64).reshape(rows.size, self.n_stats)
        if rows.size == 0:
            return
        blocks = rows // ROW_BLOCK
        cuts = np.flatnonzero(np.diff(blocks)) + 1
        if np.any(np.diff(blocks) < 0):
            # Rows out of order: process block by block all the same.
            order = np.argsort(rows, kind="stable")
            rows, X, blocks = rows[order], X[order], blocks[order]
            cuts = np.flatnonzero(np.diff(blocks)) + 1
        for sel in np.split(np.arange(rows.size), cuts):
            j = int(blocks[sel[0]])
            w = _block_weights(self.seed, j, self.n_replicates)[rows[sel] - j * ROW_BLOCK]
            self._add_block(w, X[sel])
        self._rows += rows.size
        if self._rows >= _FOLD_ROWS:
            self._fold()

    def _add_block(self, w: np.ndarray, X: np.ndarray) -> None:
        self._count += w.sum(axis=0, dtype=np.int64)
        finite = np.isfinite(X)
        if not finite.all():
            for k in range(self.n_stats):
                bad = ~finite[:, k]
                if bad.any():
                    xb = X[bad, k]
                    self._posinf[k] += w[bad][xb == np.inf].sum(axis=0, dtype=np.int64)
                    self._neginf[k] += w[bad][xb == -np.inf].sum(axis=0, dtype=np.int64)
                    self._nan[k] += w[bad][np.isnan(xb)].sum(axis=0, dtype=np.int64)
            X = np.where(finite, X, 0.0)
        n = X.shape[0]
        # One matrix of limbs for every statistic, side by side: (n, Σ widths).
        parts, spans = [], []
        idx = np.arange(n)
        for k in range(self.n_stats):
            pos, l0, l1, l2 = _limbs(X[:, k])
            pmin = int(pos.min())
            width = int(pos.max()) - pmin + 3
            L = np.zeros((n, width), dtype=np.float64)
            c = pos - pmin
            L[idx, c] += l0
            L[idx, c + 1] += l1
            L[idx, c + 2] += l2
            parts.append(L)
            spans.append((pmin, width))
        # Small integers times limbs < 2^28, summed over <= 1024 rows: exact in float64,
        # whatever order the product adds in.
        R = _small_matmul(np.concatenate(parts, axis=1), w)  # (Σ widths, B)
        at = 0
        for k, (pmin, width) in enumerate(spans):
            self._widen(pmin, pmin + width - 1)
            c0 = pmin - self._base
            self._state[k, c0:c0 + width] += R[at:at + width]
            at += width

    def _fold(self) -> None:
        totals = self._array_totals()
        self._carry = totals if self._carry is None else \
            [[a + b for a, b in zip(ca, cb)] for ca, cb in zip(self._carry, totals)]
        self._state[:] = 0
        self._rows = 0

    def _array_totals(self) -> list:
        out = []
        for k in range(self.n_stats):
            tot = np.zeros(self.n_replicates, dtype=object)
            tot[:] = 0
            for p in range(self._state.shape[1]):
                col = self._state[k, p]
                if col.any():
                    tot += col.astype(object) * (1 << (_LIMB * (self._base + p)))
            out.append([int(t) for t in tot])
        return out

    def merge(self, other: "ReplicateSums") -> None:
        """Add another state of the same replicates, seed and statistics."""
        if (other.n_replicates, other.seed, other.n_stats) != (self.n_replicates, self.seed, self.n_stats):
            raise ValueError("cannot merge bootstrap states of different replicates, seeds or statistics")
        if other._state.shape[1]:
            self._widen(other._base, other._base + other._state.shape[1] - 1)
            c0 = other._base - self._base
            self._state[:, c0:c0 + other._state.shape[1]] += other._state
        if other._carry is not None:
            self._carry = [list(c) for c in other._carry] if self._carry is None else \
                [[a + b for a, b in zip(ca, cb)] for ca, cb in zip(self._carry, other._carry)]
        self._rows += other._rows
        self._count += other._count
        self._posinf += other._posinf
        self._neginf += other._neginf
        self._nan += other._nan
        if self._rows >= _FOLD_ROWS:
            self._fold()

    # -- reading ------------------------------------------------------------------------

    def totals(self) -> list:
        """Per statistic, per replicate: the exact finite sum as an int over ``2^BIAS``."""
        tot = self._array_totals()
        if self._carry is not None:
            tot = [[a + b for a, b in zip(ta, tb)] for ta, tb in zip(tot, self._carry)]
        return tot

    def counts(self) -> np.ndarray:
        """Per replicate: the sum of the weights (the replicate's number of rows)."""
        return self._count.copy()

    def _special(self, k: int, b: int):
        if self._nan[k, b] or (self._posinf[k, b] and self._neginf[k, b]):
            return math.nan
        if self._posinf[k, b]:
            return math.inf
        if self._neginf[k, b]:
            return -math.inf
        return None

    def means(self, k: int, den: int | None = None) -> np.ndarray:
        """Per replicate: statistic ``k`` over statistic ``den`` (default: the row count), rounded once."""
        tot = self.totals()
        num = tot[k]
        out = np.empty(self.n_replicates)
        for b in range(self.n_replicates):
            sp = self._special(k, b)
            if den is None:
                d = int(self._count[b]) << BIAS
            else:
                d = tot[den][b]
                spd = self._special(den, b)
                if spd is not None:
                    out[b] = math.nan
                    continue
            out[b] = (sp if d else math.nan) if sp is not None else exact_ratio(num[b], d)
        return out


def percentile_interval(values, level: float) -> tuple:
    """The percentile interval ``(lo, hi)`` of the replicate values at confidence ``level``.

    Quantiles ``(1 − level)/2`` and ``(1 + level)/2`` with linear
    interpolation (NumPy's default); replicates whose value is NaN (an empty
    replicate) are left out.

    >>> percentile_interval(np.arange(101.0), 0.9)
    (5.0, 95.0)
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.quantile(v, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def paired_p_value(replicates, observed: float) -> float:
    """Two-sided bootstrap p-value of ``observed`` (a difference) against 0.

    The replicates of the difference, shifted to centre on 0, stand in for
    its null distribution: ``p = (1 + #{b : |Δ_b − Δ| ≥ |Δ|}) / (1 + B)``.

    >>> paired_p_value(np.array([0.9, 1.1, 1.0, 1.2, 0.8]), 1.0)
    0.16666666666666666
    """
    v = np.asarray(replicates, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0 or not math.isfinite(observed):
        return math.nan
    extreme = int(np.count_nonzero(np.abs(v - observed) >= abs(observed)))
    return (1 + extreme) / (1 + v.size)
