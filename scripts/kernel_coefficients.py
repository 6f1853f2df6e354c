"""Fit the polynomial coefficients of the compiled kernels' vector math (ck_vmath.h).

    python scripts/kernel_coefficients.py          # prints each fit and its max error

Near-minimax fits of the *relative* error by Lawson's iteratively reweighted
least squares on Chebyshev nodes, in mpmath (60 digits); the printed errors
are re-measured with the coefficients rounded to double.  Fits:

* ``exp(r) = 1 + r·q(r)`` on ``|r| ≤ ln2/2`` (the Cody–Waite reduced range;
  the constant term is pinned to 1 so that ``exp(0) = 1`` exactly): degree 6
  (float32 data, ~2e-9) and degree 11 (float64 data, ~1.2e-17);
* ``expm1(r) = r + r²·q(r)``: degree 12 (softcap's tanh);
* ``atanh(s)/s − 1`` as a polynomial in ``s²`` on ``|s| ≤ 3 − 2√2`` (log1p's
  series): degrees 4 (float32) and 7 (float64).

Takes a minute or two (mpmath linear algebra).
"""

from __future__ import annotations

import mpmath as mp

mp.mp.dps = 60


def lawson_fit(f, basis, lo, hi, weight, npts=300, iters=40):
    """Coefficients minimising max |weight(x)·(f(x) − Σ c_i b_i(x))| (approximately), and that max."""
    xs = [(lo + hi) / 2 + (hi - lo) / 2 * mp.cos(mp.pi * (k + mp.mpf(0.5)) / npts) for k in range(npts)]
    lw = [mp.mpf(1) / npts] * npts
    m = len(basis)
    for _ in range(iters):
        A = mp.matrix(m, m)
        b = mp.matrix(m, 1)
        for x, w8 in zip(xs, lw):
            wx = weight(x) ** 2 * w8
            bx = [bf(x) for bf in basis]
            fx = f(x)
            for i in range(m):
                b[i] += wx * bx[i] * fx
                for j in range(m):
                    A[i, j] += wx * bx[i] * bx[j]
        c = mp.lu_solve(A, b)
        errs = [abs(weight(x) * (f(x) - sum(c[i] * basis[i](x) for i in range(m)))) for x in xs]
        s = sum(w8 * e for w8, e in zip(lw, errs))
        lw = [w8 * e / s for w8, e in zip(lw, errs)]
    return [c[i] for i in range(m)]


def powers(start, n):
    return [(lambda k: (lambda x: x ** k))(k) for k in range(start, start + n)]


def main():
    a = mp.log(2) / 2 * mp.mpf("1.0001")
    tiny = mp.mpf("1e-40")
    for deg in (6, 11):
        g = lambda r: mp.expm1(r) / r if r else mp.mpf(1)  # noqa: E731
        c = lawson_fit(g, powers(0, deg), -a, a, lambda r: abs(r) / mp.exp(r) + tiny)
        cf = [mp.mpf(float(x)) for x in c]
        err = max(abs((1 + r * sum(cf[i] * r ** i for i in range(deg))) / mp.exp(r) - 1)
                  for r in (-a + 2 * a * k / 1000 for k in range(1001)))
        print(f"exp, degree {deg}: max relative error {mp.nstr(err, 3)}\n  ", [float(x) for x in c])
    g = lambda r: (mp.expm1(r) - r) / r ** 2 if r else mp.mpf(0.5)  # noqa: E731
    c = lawson_fit(g, powers(0, 11), -a, a, lambda r: r ** 2 / abs(mp.expm1(r)) + tiny)
    print("expm1, degree 12:\n  ", [float(x) for x in c])
    smax = mp.mpf("0.17158") ** 2 * mp.mpf("1.0001")
    h = lambda z: mp.atanh(mp.sqrt(z)) / mp.sqrt(z) - 1 if z else mp.mpf(0)  # noqa: E731
    for deg in (4, 7):
        c = lawson_fit(h, powers(1, deg), mp.mpf(0), smax, lambda z: mp.mpf(1), npts=200)
        print(f"atanh(s)/s - 1, degree {deg} in s^2:\n  ", [float(x) for x in c])


if __name__ == "__main__":
    main()
