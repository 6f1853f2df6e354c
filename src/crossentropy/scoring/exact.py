"""Exact, mergeable sums of floats: the arithmetic under every accumulator.

A prediction file is scored chunk by chunk, and a large one partition by
partition on several machines; the report must not depend on where the cuts
fall nor on the order in which partial results meet.  Floating-point addition
is not associative, so every sum here is kept **exactly**, as an integer:

* every finite double is ``±M · 2^(s − 1075)`` with an integer mantissa
  ``M < 2^53`` and a scale index ``s`` in ``1 … 2046`` (subnormals share
  ``s = 1``);
* ``M`` is split into ``hi = M >> 26`` and ``lo = M mod 2^26``; a vectorised
  ``np.bincount`` over the scale index (and the group) adds the ``hi`` and
  ``lo`` parts of up to 2^26 values **exactly** in float64 (each partial sum
  stays below 2^53), and the chunk's sums are folded into ``int64`` state
  arrays indexed by scale;
* the value of a sum is that exact integer (a Python ``int``) times
  ``2^-1075``, rounded **once** to the nearest double when read — so a mean is
  ``exact_sum / count`` correctly rounded (CPython's ``int / int`` is), and
  two finite values that add up past the largest double still give the exact
  mean instead of an ``OverflowError``.

Values in [2^-40, 1] (probabilities, confidences: most of what a report adds
up) take a faster road to the same exact sum: such a value is a whole
multiple of 2^-93, so three 31-bit limbs of ``x · 2^93`` (cut with three
multiplications and floors, exactly) are added by ``np.bincount`` per group;
smaller non-zero values take the scale-index road above.

``+inf``, ``-inf`` and NaN are counted apart, per group, and decide the value
(``inf`` if any ``+inf``, NaN if NaN or both infinities).

Every class here is a small state object with ``add``/``merge`` and plain
``int``/``numpy`` state, so it pickles (Dask ships it between workers) and
merges in any order to the same bits.

>>> s = ExactSums(); s.add(np.array([1e16, 1.0, -1e16])); s.add(np.full(10, 0.1))
>>> s.value()  # left-to-right float addition gives 1.9999999999999998
2.0
>>> big = ExactSums(); big.add(np.array([1.5e308, 1.5e308]))
>>> big.value(), big.mean(2)
(inf, 1.5e+308)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ExactSums", "split_exact", "exact_ratio", "widen", "SlotState", "BIAS", "sorted_run_sums"]

BIAS = 1075  # value = integer · 2^-BIAS for every double (2^-1074 is the smallest subnormal)
_HALF = 26  # bits in the ``lo`` part
_MASK = (1 << _HALF) - 1
_CALL_LIMIT = 1 << 25  # values per bincount: Σ|hi| < 2^25 · 2^27 = 2^52, exact in float64
_FOLD_AFTER = 1 << 31  # values before the int64 state is folded into Python ints (no overflow)
_DENSE_CELLS = 1 << 21  # largest (groups × scales) table built by bincount; beyond: unique + bincount
_FIXED_MIN = 2.0 ** -40  # values in [2^-40, 1] are whole multiples of 2^-93: three 31-bit limbs
_FIXED_BITS = 93
_FIXED_CALL = 1 << 22  # values per bincount of limbs (< 2^31 each): partial sums stay below 2^53


def split_exact(values: np.ndarray):
    """``(scale, hi, lo)`` of finite doubles: ``x = hi·2^(s−1049) + lo·2^(s−1075)`` exactly.

    ``scale`` is an ``intp`` array in ``1 … 2046``; ``hi`` and ``lo`` are
    float64 arrays holding signed integers (``|hi| < 2^27``, ``|lo| < 2^26``).

    >>> s, hi, lo = split_exact(np.array([1.0, -0.75]))
    >>> s.tolist(), (hi * 2.0 ** 26 + lo).tolist()  # M · 2^(s - 1075): 2^52 · 2^-52, -(3 · 2^51) · 2^-53
    ([1023, 1022], [4503599627370496.0, -6755399441055744.0])
    """
    x = np.ascontiguousarray(values, dtype=np.float64)
    bits = x.view(np.uint64)
    e = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.intp)
    m = bits & np.uint64((1 << 52) - 1)
    m |= (e != 0).astype(np.uint64) << np.uint64(52)  # the implicit leading bit of normal numbers
    np.maximum(e, 1, out=e)  # subnormals: M·2^(1-1075)
    hi = (m >> np.uint64(_HALF)).astype(np.float64)
    lo = (m & np.uint64(_MASK)).astype(np.float64)
    if bits.max() >> np.uint64(63):  # some value has its sign bit set
        neg = np.signbit(x)
        np.negative(hi, out=hi, where=neg)
        np.negative(lo, out=lo, where=neg)
    return e, hi, lo


def widen(arr: np.ndarray, base: int, lo: int, hi: int, axis: int):
    """``(array, base)`` covering positions ``lo … hi`` along ``axis`` (zeros added; ``base``: position of index 0).

    >>> a, b = widen(np.ones((1, 2), dtype=np.int64), 5, 3, 7, 1); a.tolist(), b
    ([[0, 0, 1, 1, 0]], 3)
    """
    width = arr.shape[axis]
    if width == 0:
        shape = list(arr.shape)
        shape[axis] = hi - lo + 1
        return np.zeros(shape, dtype=arr.dtype), lo
    new_lo, new_hi = min(lo, base), max(hi, base + width - 1)
    if (new_lo, new_hi) == (base, base + width - 1):
        return arr, base
    pad = [(0, 0)] * arr.ndim
    pad[axis] = (base - new_lo, new_hi - (base + width - 1))
    return np.pad(arr, pad), new_lo


class SlotState:
    """Pickling for ``__slots__`` classes: the state is the slots' values."""

    __slots__ = ()

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        for k, v in state.items():
            setattr(self, k, v)


def _limbs(x):
    """``(a, b, c)`` with ``x · 2^93 = a·2^62 + b·2^31 + c`` for ``x`` in [2^-40, 1]: whole numbers below 2^31."""
    t = x * 2147483648.0
    a = np.floor(t)
    t -= a
    t *= 2147483648.0
    b = np.floor(t)
    t -= b
    t *= 2147483648.0  # c: exact, as x is a multiple of 2^-93
    return a, b, t


_PIECE = 4096  # 52-bit mantissa fractions per uint64 partial sum (4096 · 2^52 = 2^64)


def sorted_run_sums(bits, starts) -> list:
    """Exact sums of runs of non-negative finite doubles in ascending order, as integers (units of ``2^-BIAS``).

    ``bits``: the doubles' bit patterns (``uint64``), ascending; run ``g`` is
    ``bits[starts[g]:starts[g + 1]]`` (the last, to the end).  Sorted, equal
    exponents are neighbours: each slice of one exponent adds its mantissas as
    integers (pieces of 4096, whose sums fit in ``uint64``), then shifts once.

    >>> b = np.array([0.25, 0.5, 0.5, 3.0]).view(np.uint64)
    >>> [v / 2 ** BIAS for v in sorted_run_sums(b, [0, 1])]
    [0.25, 4.0]
    """
    n = int(bits.size)
    st = np.asarray(starts, dtype=np.int64)
    out = [0] * st.size
    if n == 0:
        return out
    e_lo, e_hi = int(bits[0] >> np.uint64(52)), int(bits[-1] >> np.uint64(52))
    firsts = np.searchsorted(bits, np.arange(e_lo + 1, e_hi + 1, dtype=np.uint64) << np.uint64(52))
    cuts = np.sort(np.concatenate((st, firsts, np.arange(0, n, _PIECE, dtype=np.int64))))
    keep = np.empty(cuts.size, dtype=bool)
    keep[0] = True
    np.not_equal(cuts[1:], cuts[:-1], out=keep[1:])
    cuts = cuts[keep & (cuts < n)]
    part = np.add.reduceat(bits & np.uint64((1 << 52) - 1), cuts)
    lens = np.diff(np.append(cuts, n))
    exps = (bits[cuts] >> np.uint64(52)).astype(np.int64)
    run = np.searchsorted(st, cuts, side="right") - 1
    for p, m, e, g in zip(part.tolist(), lens.tolist(), exps.tolist(), run.tolist()):
        # Σ m·2^(e-1075) with the implicit bit of normal numbers; subnormals: e = 0, scale of e = 1.
        out[g] += (p + (m << 52 if e else 0)) << (e if e else 1)
    return out


def exact_ratio(num: int, den: int) -> float:
    """``num / den`` of two Python ints, correctly rounded; ``±inf`` past the float range.

    >>> exact_ratio(1, 3) == 1 / 3, exact_ratio(10 ** 400, 1)
    (True, inf)
    """
    if den == 0:
        return math.nan
    try:
        return num / den  # CPython rounds int / int correctly
    except OverflowError:
        return math.inf if (num > 0) == (den > 0) else -math.inf


class ExactSums(SlotState):
    """``n_groups`` exact running sums of floats; group ``g`` receives ``values[groups == g]``.

    ``add(values, groups)`` takes float arrays (any non-finite values are
    counted apart) and int group indices in ``[0, n_groups)``.  Read with
    :meth:`value` (the sum, rounded once), :meth:`mean` (divided by an exact
    count, rounded once), :meth:`ratio` (of two exact sums) or :meth:`exact`
    (the integer numerator over ``2^BIAS``).

    >>> s = ExactSums(2); s.add(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 0]))
    >>> s.values()
    [0.4, 0.2]
    >>> t = ExactSums(2); t.add(np.array([0.3]), np.array([0])); t.add(np.array([0.2, 0.1]), np.array([1, 0]))
    >>> t.values() == s.values() and t.exact(0) == s.exact(0)
    True
    """

    __slots__ = ("n_groups", "_base", "_hi", "_lo", "_fixed", "_carry", "_added", "_posinf", "_neginf", "_nan")

    def __init__(self, n_groups: int = 1) -> None:
        self.n_groups = int(n_groups)
        self._base = 0  # scale index of column 0 of the state arrays
        self._hi = np.zeros((self.n_groups, 0), dtype=np.int64)
        self._lo = np.zeros((self.n_groups, 0), dtype=np.int64)
        self._fixed = np.zeros((self.n_groups, 3), dtype=np.int64)  # limbs of x · 2^93 (values in [2^-40, 1])
        self._carry: list[int] | None = None  # list of Python ints once the int64 state has been folded
        self._added = 0
        self._posinf = np.zeros(self.n_groups, dtype=np.int64)
        self._neginf = np.zeros(self.n_groups, dtype=np.int64)
        self._nan = np.zeros(self.n_groups, dtype=np.int64)

    def _widen(self, lo: int, hi: int) -> None:
        """Make the state arrays cover scale indices ``lo … hi``."""
        base = self._base
        self._hi, self._base = widen(self._hi, base, lo, hi, 1)
        self._lo, _ = widen(self._lo, base, lo, hi, 1)

    # -- feeding ------------------------------------------------------------------------

    def add(self, values, groups=None) -> None:
        """Add ``values`` (float array) to the sums of ``groups`` (int array; default: group 0)."""
        x = np.asarray(values, dtype=np.float64).ravel()
        if x.size == 0:
            return
        g = None if groups is None else np.asarray(groups, dtype=np.intp).ravel()
        finite = np.isfinite(x)
        if not finite.all():
            bad = ~finite
            gb = np.zeros(int(bad.sum()), dtype=np.intp) if g is None else g[bad]
            xb = x[bad]
            self._posinf += np.bincount(gb[xb == np.inf], minlength=self.n_groups)
            self._neginf += np.bincount(gb[xb == -np.inf], minlength=self.n_groups)
            self._nan += np.bincount(gb[np.isnan(xb)], minlength=self.n_groups)
            x = x[finite]
            if g is not None:
                g = g[finite]
        for start in range(0, x.size, _CALL_LIMIT):
            self._add_finite(x[start:start + _CALL_LIMIT], None if g is None else g[start:start + _CALL_LIMIT])

    def _add_finite(self, x, g) -> None:
        if x.size == 0:
            return
        if x.min() >= 0.0 and x.max() <= 1.0:
            big = x >= _FIXED_MIN
            if not big.all():
                small = ~big & (x > 0.0)
                self._add_scaled(x[small], None if g is None else g[small])
                x = x[big]
                g = None if g is None else g[big]
            self._add_fixed(x, g)
            return
        self._add_scaled(x, g)

    def _add_fixed(self, x, g) -> None:
        """Values in [2^-40, 1]: ``x · 2^93 = a·2^62 + b·2^31 + c``, each limb a whole number below 2^31."""
        for start in range(0, x.size, _FIXED_CALL):
            xs = x[start:start + _FIXED_CALL]
            limbs = _limbs(xs)
            if g is None:
                # Whole numbers below 2^31, fewer than 2^22 of them: every partial sum is exact.
                self._fixed[0] += np.array([int(limb.sum()) for limb in limbs], dtype=np.int64)
            else:
                gs = g[start:start + _FIXED_CALL]
                for j, limb in enumerate(limbs):
                    self._fixed[:, j] += np.bincount(gs, weights=limb, minlength=self.n_groups).astype(np.int64)
            self._added += int(xs.size)
        if self._added >= _FOLD_AFTER:
            self._fold()

    def add_runs(self, values, starts, counts=None) -> None:
        """Add contiguous runs: group ``g`` receives ``values[starts[g]:starts[g + 1]]`` (the last, to the end).

        ``starts`` has one non-decreasing entry per group, from 0.  With
        ``counts``, each value is added that many times (an exact product).
        The same sums as :meth:`add` with a group per value, cheaper for
        sorted data cut into bins: a sum per run instead of a ``bincount``.
        """
        x = np.asarray(values, dtype=np.float64)
        st = np.asarray(starts, dtype=np.intp)
        if x.size == 0:
            return
        if counts is not None:
            c = np.asarray(counts, dtype=np.int64)
            if c.size and int(c.min()) < 0:
                raise ValueError("counts must be non-negative")
            # Σ c·x = Σ_b 2^b · Σ_{bit b of c set} x: exact sums of subsets, scaled as integers.
            total = [0] * self.n_groups
            for bit in range(int(c.max()).bit_length() if c.size else 0):
                sel = ((c >> bit) & 1).astype(bool)
                if not sel.any():
                    continue
                part = ExactSums(self.n_groups)
                before = np.concatenate(([0], np.cumsum(sel, dtype=np.intp)))
                part.add_runs(x[sel], before[st])
                if part._special_any():
                    self._merge_special(part)
                total = [t + (v << bit) for t, v in zip(total, part._exact_all())]
            self._add_exact(total)
            return
        ok = (x >= _FIXED_MIN) & (x <= 1.0)
        if not ok.all():
            # The rest (0, tiny, large, non-finite values) by the general road, with a group each.
            idx = np.flatnonzero(~ok)
            self.add(x[idx], np.searchsorted(st, idx, side="right") - 1)
            keep = np.flatnonzero(ok)
            x = x[keep]
            st = np.searchsorted(keep, st, side="left")
        n = x.size
        for lo in range(0, n, _FIXED_CALL):
            hi = min(lo + _FIXED_CALL, n)
            b = np.clip(st, lo, hi) - lo
            ends = np.append(b[1:], hi - lo)
            live = np.flatnonzero(ends > b)  # reduceat gives a value, not 0, for an empty run
            if live.size == 0:
                continue
            for j, limb in enumerate(_limbs(x[lo:hi])):
                # Whole numbers below 2^31, fewer than 2^22 per run: every partial sum is exact.
                self._fixed[live, j] += np.add.reduceat(limb, b[live]).astype(np.int64)
            self._added += hi - lo
        if self._added >= _FOLD_AFTER:
            self._fold()

    def _special_any(self) -> bool:
        return bool(self._posinf.any() or self._neginf.any() or self._nan.any())

    def _merge_special(self, other: "ExactSums") -> None:
        self._posinf += other._posinf
        self._neginf += other._neginf
        self._nan += other._nan

    def _add_exact(self, ints) -> None:
        """Add integers (multiples of ``2^-BIAS``), one per group."""
        ints = [int(v) for v in ints]
        self._carry = ints if self._carry is None else [a + b for a, b in zip(self._carry, ints)]

    @classmethod
    def from_exact(cls, ints) -> "ExactSums":
        """Sums holding these exact values (integers, multiples of ``2^-BIAS``), one group each.

        >>> ExactSums.from_exact([3 << (BIAS - 1)]).value()
        1.5
        """
        out = cls(len(ints))
        out._add_exact(ints)
        return out

    def _add_scaled(self, x, g) -> None:
        if x.size == 0:
            return
        s, hi, lo = split_exact(x)
        smin, smax = int(s.min()), int(s.max())
        span = smax - smin + 1
        cells = self.n_groups * span
        key = s - smin
        if g is not None and self.n_groups > 1:
            key += g * span
        if cells <= _DENSE_CELLS:
            h = np.bincount(key, weights=hi, minlength=cells)
            lw = np.bincount(key, weights=lo, minlength=cells)
            h = h.reshape(self.n_groups, span)
            lw = lw.reshape(self.n_groups, span)
            self._widen(smin, smax)
            c0 = smin - self._base
            self._hi[:, c0:c0 + span] += h.astype(np.int64)
            self._lo[:, c0:c0 + span] += lw.astype(np.int64)
        else:
            # Many groups (e.g. 1000 classes × bins): only the cells that occur.
            uk, inv = np.unique(key, return_inverse=True)
            h = np.bincount(inv, weights=hi).astype(np.int64)
            lw = np.bincount(inv, weights=lo).astype(np.int64)
            rows, cols = np.divmod(uk, span)
            self._widen(smin, smax)
            cols = cols + (smin - self._base)
            np.add.at(self._hi, (rows, cols), h)
            np.add.at(self._lo, (rows, cols), lw)
        self._added += int(x.size)
        if self._added >= _FOLD_AFTER:
            self._fold()

    def _fold(self) -> None:
        """Move the int64 state into Python ints (keeps the arrays far from overflow)."""
        totals = self._array_totals()
        self._carry = totals if self._carry is None else [a + b for a, b in zip(self._carry, totals)]
        self._hi[:] = 0
        self._lo[:] = 0
        self._fixed[:] = 0
        self._added = 0

    def _array_totals(self) -> list:
        tot = np.zeros(self.n_groups, dtype=object)
        tot[:] = 0
        if self._fixed.any():
            f = self._fixed.astype(object)
            tot += ((f[:, 0] << 62) + (f[:, 1] << 31) + f[:, 2]) << (BIAS - _FIXED_BITS)
        for j in range(self._hi.shape[1]):
            h, lw = self._hi[:, j], self._lo[:, j]
            if not (h.any() or lw.any()):
                continue
            shift = self._base + j
            tot += (h.astype(object) * (1 << _HALF) + lw.astype(object)) * (1 << shift)
        return [int(t) for t in tot]

    def merge(self, other: "ExactSums") -> None:
        """Add everything ``other`` holds (same number of groups)."""
        if other.n_groups != self.n_groups:
            raise ValueError(f"cannot merge sums of {other.n_groups} groups into {self.n_groups}")
        if other._hi.shape[1]:
            self._widen(other._base, other._base + other._hi.shape[1] - 1)
            c0 = other._base - self._base
            w = other._hi.shape[1]
            self._hi[:, c0:c0 + w] += other._hi
            self._lo[:, c0:c0 + w] += other._lo
        self._fixed += other._fixed
        if other._carry is not None:
            self._carry = list(other._carry) if self._carry is None else \
                [a + b for a, b in zip(self._carry, other._carry)]
        self._added += other._added
        self._posinf += other._posinf
        self._neginf += other._neginf
        self._nan += other._nan
        if self._added >= _FOLD_AFTER:
            self._fold()

    # -- reading ------------------------------------------------------------------------

    def exact(self, g: int = 0) -> int:
        """The finite part of sum ``g`` as an integer multiple of ``2^-BIAS``."""
        t = self._exact_all()[g]
        return t

    def _exact_all(self) -> list:
        tot = self._array_totals()
        if self._carry is not None:
            tot = [a + b for a, b in zip(tot, self._carry)]
        return tot

    def _special(self, g: int):
        if self._nan[g] or (self._posinf[g] and self._neginf[g]):
            return math.nan
        if self._posinf[g]:
            return math.inf
        if self._neginf[g]:
            return -math.inf
        return None

    def value(self, g: int = 0) -> float:
        """Sum ``g``, rounded once."""
        sp = self._special(g)
        return sp if sp is not None else exact_ratio(self.exact(g), 1 << BIAS)

    def values(self) -> list:
        """Every sum, rounded once."""
        ex = self._exact_all()
        return [self._special(g) if self._special(g) is not None else exact_ratio(ex[g], 1 << BIAS)
                for g in range(self.n_groups)]

    def mean(self, count, g: int = 0) -> float:
        """Sum ``g`` divided by the integer ``count``, rounded once (NaN when ``count`` is 0)."""
        if not count:
            return math.nan
        sp = self._special(g)
        return sp if sp is not None else exact_ratio(self.exact(g), int(count) << BIAS)

    def ratio(self, other: "ExactSums", g: int = 0, h: int | None = None) -> float:
        """Sum ``g`` of ``self`` over sum ``h`` (default ``g``) of ``other``, rounded once."""
        h = g if h is None else h
        a, b = self._special(g), other._special(h)
        if a is not None or b is not None:
            fa = self.value(g) if a is None else a
            fb = other.value(h) if b is None else b
            return fa / fb if fb else math.nan
        return exact_ratio(self.exact(g), other.exact(h))

    def ratios(self, den) -> list:
        """Every sum divided by ``den[g]`` (ints or an :class:`ExactSums` of the same groups)."""
        ex = self._exact_all()
        if isinstance(den, ExactSums):
            dx = den._exact_all()
            out = []
            for g in range(self.n_groups):
                if self._special(g) is not None or den._special(g) is not None:
                    out.append(self.ratio(den, g))
                else:
                    out.append(exact_ratio(ex[g], dx[g]))
            return out
        out = []
        for g in range(self.n_groups):
            sp = self._special(g)
            c = int(den[g])
            out.append(math.nan if not c else (sp if sp is not None else exact_ratio(ex[g], c << BIAS)))
        return out

    def nonfinite(self, g: int = 0) -> tuple:
        """``(+inf count, -inf count, NaN count)`` of group ``g``."""
        return int(self._posinf[g]), int(self._neginf[g]), int(self._nan[g])
