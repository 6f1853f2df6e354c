"""Cases for the Triton kernels, run by Triton's CPU interpreter in a fresh process.

``TRITON_INTERPRET=1`` only takes effect if it is set before :mod:`triton` is
first imported, and in a pytest process torch.compile/inductor (or the
doctest collection) may have imported it already; so ``test_triton.py`` runs
``python _triton_cases.py GROUP...`` with ``TRITON_INTERPRET=1`` and reads
back one JSON object ``{case: null | "failure message"}``.

Every case compares the kernels with the library's reference
(``crossentropy.value_and_grad(crossentropy.cross_entropy, ...)`` on float64
CPU tensors, softcap applied by hand) on small shapes, with tiles smaller
than the rows so that the online (tiled) paths run.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback

import torch

GROUPS: dict[str, list[str]] = {}
_CASES = {}


def case(group):
    def deco(fn):
        GROUPS.setdefault(group, []).append(fn.__name__)
        _CASES[fn.__name__] = fn
        return fn

    return deco


# ---------------------------------------------------------------------------------------------
# reference and comparison helpers
# ---------------------------------------------------------------------------------------------

EPS32 = torch.finfo(torch.float32).eps


def kt():
    import crossentropy._kernels.triton as m

    return m


def reference(x, y, *, weight=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0, softcap=None, scale=None):
    """(loss, lse, grad) per row in float64 from the library's reference path."""
    import crossentropy as ce

    x64 = x.detach().to(torch.float64)
    xc = softcap * torch.tanh(x64 / softcap) if softcap else x64
    w = None if weight is None else weight.to(torch.float64)
    g_out = None
    if scale is not None:
        g_out = (scale if isinstance(scale, torch.Tensor) else torch.full((x.shape[0],), float(scale))).to(torch.float64)
    loss, g = ce.value_and_grad(ce.cross_entropy, xc, y, weight=w, ignore_index=ignore_index,
                                label_smoothing=label_smoothing, z_loss=z_loss, reduction="none", grad_output=g_out)
    lse = ce.logsumexp(xc, axis=-1)
    if softcap:
        t = torch.tanh(x64 / softcap)
        g = g * (1.0 - t * t)
    return loss, lse, g


def close(name, got, want, rtol, atol):
    """assert_close with NaN in the same places and a message naming the quantity."""
    got = got.detach().to(torch.float64)
    want = want.detach().to(torch.float64)
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, equal_nan=True,
                               msg=lambda m: f"{name}: {m}\n got={got.tolist()}\nwant={want.tolist()}")


def tolerances(x, dtype, softcap=None, z_loss=0.0, weight=None):
    """(rtol, atol) for float32 quantities and (rtol, atol) for a gradient stored in ``dtype``.

    The kernels compute in float32; the error of a loss is a few roundings of
    its largest terms (``|x|``, the z-loss ``z·lse²``), the error of a stored
    gradient one rounding in its own dtype on top.
    """
    xf = x.detach().to(torch.float64)
    fin = xf[torch.isfinite(xf)]
    big = float(fin.abs().max()) if fin.numel() else 1.0
    if softcap:
        big = min(big, softcap)
    wmax = 1.0 if weight is None else float(weight.abs().max())
    scale = (1.0 + big) * wmax * (1.0 + z_loss * (big + 8.0) ** 2)
    r32 = 64 * EPS32
    a32 = 64 * EPS32 * scale
    fi = torch.finfo(dtype)
    rg = fi.eps + r32
    ag = (fi.eps + r32) * wmax * (1.0 + z_loss * (big + 8.0)) + fi.smallest_normal * fi.eps
    return r32, a32, rg, ag


def check_chunk(x, y, *, dtype=torch.float32, scale=1.0, block_v=16, block_rows=8, in_place=True, **opts):
    """chunk_cross_entropy (loss, lse, gradient) against the reference, in ``dtype``."""
    xd = x.to(dtype)
    ref_loss, ref_lse, ref_g = reference(xd, y, scale=scale, **opts)
    work = xd.clone()
    out = work if in_place else torch.full_like(work, 7.0)
    loss, lse = kt().chunk_cross_entropy(work, y, grad_scale=scale, grad_into=out, block_v=block_v,
                                         block_rows=block_rows, **opts)
    r32, a32, rg, ag = tolerances(xd, dtype, opts.get("softcap"), opts.get("z_loss", 0.0), opts.get("weight"))
    sc = float(scale.abs().max()) if isinstance(scale, torch.Tensor) else abs(float(scale))
    close("loss", loss, ref_loss, r32, a32)
    close("lse", lse, ref_lse, r32, a32)
    assert out.dtype == dtype
    close("grad", out, ref_g, rg, ag * max(sc, 1e-30))
    if not in_place:
        assert torch.equal(work, xd), "logits changed although grad_into was another tensor"
    return loss, lse, out


def rows(n, v, seed, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g) * spread, torch.randint(0, v, (n,), generator=g)


def ulps32(got, want):
    """|got − want| in float32 ulps of ``want`` (want in float64)."""
    w32 = want.to(torch.float32)
    spacing = (torch.nextafter(w32.abs(), torch.tensor(math.inf)) - w32.abs()).to(torch.float64)
    return ((got.to(torch.float64) - want).abs() / spacing)


# ---------------------------------------------------------------------------------------------
# in-chunk kernel: every option, alone and combined
# ---------------------------------------------------------------------------------------------

@case("chunk")
def plain_tiles_ragged():
    x, y = rows(5, 300, 1)
    check_chunk(x, y, block_v=64, block_rows=1)


@case("chunk")
def plain_row_blocks():
    x, y = rows(7, 37, 2)
    check_chunk(x, y, block_v=8, block_rows=4)


@case("chunk")
def default_tiles():
    x, y = rows(9, 50, 3)
    check_chunk(x, y, block_v=None, block_rows=None)


@case("chunk")
def class_weights():
    x, y = rows(6, 70, 4)
    w = torch.rand(70, generator=torch.Generator().manual_seed(4)) * 3
    check_chunk(x, y, weight=w, block_v=16, block_rows=8)


@case("chunk")
def negative_and_zero_weights_smoothed():
    x, y = rows(6, 45, 5)
    w = torch.randn(45, generator=torch.Generator().manual_seed(5))
    w[::7] = 0.0
    check_chunk(x, y, weight=w, label_smoothing=0.3, block_v=16, block_rows=8)


@case("chunk")
def ignore_index_rows():
    x, y = rows(8, 40, 6)
    y[[1, 4, 5]] = -100
    check_chunk(x, y, ignore_index=-100, block_v=16, block_rows=4)
    y2 = y.clone()
    y2[[1, 4, 5]] = 3
    loss, _, g = check_chunk(x, y2, ignore_index=3, block_v=16, block_rows=4)
    assert float(loss[1]) == 0.0 and float(g[1].abs().max()) == 0.0, "an ignored row must give loss 0 and gradient 0"


@case("chunk")
def label_smoothing():
    x, y = rows(6, 90, 7)
    for eps in (0.1, 1.0):
        check_chunk(x, y, label_smoothing=eps, block_v=32, block_rows=8)


@case("chunk")
def z_loss():
    x, y = rows(6, 90, 8)
    check_chunk(x, y, z_loss=1e-2, block_v=32, block_rows=8)


@case("chunk")
def softcap():
    x, y = rows(6, 90, 9, spread=20.0)
    check_chunk(x, y, softcap=15.0, block_v=32, block_rows=8)
    # far beyond the cap: tanh saturates and sech² is computed without the 1 − tanh² cancellation
    x[:, :5] = torch.tensor([400.0, -400.0, 60.0, -60.0, 0.0])
    _, _, g = check_chunk(x, y, softcap=5.0, block_v=32, block_rows=8)
    _, _, want = reference(x, y, softcap=5.0, scale=1.0)
    # at |x/s| = 12, 1 − tanh² rounds to 0 in float32 while sech² is 1.5e-10: relative accuracy there
    close("saturated softcap gradient", g[:, 2:4], want[:, 2:4], 64 * EPS32, 0.0)


@case("chunk")
def grad_scale_vector_and_scalar():
    x, y = rows(6, 50, 10)
    s = torch.tensor([0.5, -2.0, 0.0, 1e-3, 3.0, 1.0])
    check_chunk(x, y, scale=s, block_v=16, block_rows=4)
    check_chunk(x, y, scale=0.25, block_v=16, block_rows=4)
    check_chunk(x, y, scale=torch.tensor(-0.75), block_v=16, block_rows=4)  # a 0-d tensor (device scalar)


@case("chunk")
def everything_float32():
    x, y = rows(9, 130, 11, spread=6.0)
    y[2] = -1
    w = torch.rand(130, generator=torch.Generator().manual_seed(11)) + 0.25
    s = torch.linspace(-1, 2, 9)
    check_chunk(x, y, weight=w, ignore_index=-1, label_smoothing=0.15, z_loss=1e-3, softcap=4.0, scale=s,
                block_v=32, block_rows=8)


@case("dtypes")
def everything_bfloat16():
    x, y = rows(9, 130, 12, spread=6.0)
    y[4] = -1
    w = torch.rand(130, generator=torch.Generator().manual_seed(12)) + 0.25
    check_chunk(x, y, dtype=torch.bfloat16, weight=w, ignore_index=-1, label_smoothing=0.15, z_loss=1e-3,
                softcap=4.0, scale=torch.linspace(-1, 2, 9), block_v=32, block_rows=8)
    check_chunk(x, y, dtype=torch.bfloat16, ignore_index=-1, block_v=64, block_rows=1)


@case("dtypes")
def everything_float16():
    x, y = rows(9, 130, 13, spread=6.0)
    w = torch.rand(130, generator=torch.Generator().manual_seed(13)) + 0.25
    check_chunk(x, y, dtype=torch.float16, weight=w, label_smoothing=0.15, z_loss=1e-3, softcap=4.0,
                scale=torch.linspace(-1, 2, 9), block_v=32, block_rows=8)
    check_chunk(x, y, dtype=torch.float16, block_v=64, block_rows=4)


@case("dtypes")
def low_precision_no_worse_than_unfused():
    """bfloat16/float16 logits: the kernel's error against float64 is no larger than that of the
    library's reference computed in the same precision (the unfused computation)."""
    import crossentropy as ce

    x, y = rows(12, 200, 29, spread=4.0)
    for dt in (torch.bfloat16, torch.float16):
        xd = x.to(dt)
        ref_loss, _, ref_g = reference(xd, y, label_smoothing=0.1)
        work = xd.clone()
        loss, _ = kt().chunk_cross_entropy(work, y, label_smoothing=0.1, grad_scale=1.0, grad_into=work,
                                           block_v=64)
        un_loss, un_g = ce.value_and_grad(ce.cross_entropy, xd, y, label_smoothing=0.1, reduction="none")
        for name, ours, unfused, want in (("loss", loss, un_loss, ref_loss), ("grad", work, un_g, ref_g)):
            e_ours = float((ours.double() - want).abs().max())
            e_unf = float((unfused.double() - want).abs().max())
            assert e_ours <= e_unf, f"{dt} {name}: kernel error {e_ours:.3g} > unfused {dt} error {e_unf:.3g}"


@case("chunk")
def random_configs():
    """A seeded sweep over shapes (1 row, 1 class, ragged tiles), tiles, options and dtypes."""
    g = torch.Generator().manual_seed(30)

    def pick(*xs):
        return xs[int(torch.randint(0, len(xs), (1,), generator=g))]

    for _ in range(24):
        n, v = int(torch.randint(1, 17, (1,), generator=g)), pick(1, 2, 3, 17, 64, 129, 300)
        x = torch.randn(n, v, generator=g) * pick(0.5, 3.0, 30.0)
        y = torch.randint(0, v, (n,), generator=g)
        opts = {}
        if pick(0, 1):
            opts["weight"] = torch.rand(v, generator=g) + pick(0.0, 0.5)
        if pick(0, 1):
            y[torch.rand(n, generator=g) < 0.3] = -100
            opts["ignore_index"] = -100
        for key, vals in (("label_smoothing", (0.0, 0.05, 0.5)), ("z_loss", (0.0, 1e-3)), ("softcap", (None, 2.0, 30.0))):
            val = pick(*vals)
            if val:
                opts[key] = val
        dt = pick(torch.float32, torch.float32, torch.bfloat16, torch.float16)
        scale = pick(1.0, -0.5, torch.randn(n, generator=g))
        cfg = dict(n=n, v=v, dtype=str(dt), block_v=pick(4, 16, 64), block_rows=pick(1, 2, 8, 16),
                   **{k: (val if not isinstance(val, torch.Tensor) else "tensor") for k, val in opts.items()})
        try:
            check_chunk(x, y, dtype=dt, scale=scale, block_v=cfg["block_v"], block_rows=cfg["block_rows"], **opts)
        except AssertionError as e:
            raise AssertionError(f"config {cfg}: {e}") from None


@case("dtypes")
def separate_buffer_and_no_grad():
    x, y = rows(5, 40, 14)
    check_chunk(x, y, in_place=False, block_v=16, block_rows=8)
    work = x.clone()
    loss, lse = kt().chunk_cross_entropy(work, y, block_v=16)
    ref_loss, ref_lse, _ = reference(x, y)
    close("loss", loss, ref_loss, 64 * EPS32, 64 * EPS32 * 10)
    close("lse", lse, ref_lse, 64 * EPS32, 64 * EPS32 * 10)
    assert torch.equal(work, x), "logits changed without grad_scale"


@case("dtypes")
def strided_rows():
    # a column slice of a wider tensor: row stride 50, unit column stride
    big, y = rows(6, 50, 15)
    view = big[:, 5:45]
    y = y % 40
    ref_loss, ref_lse, ref_g = reference(view, y)
    work = big.clone()
    loss, _ = kt().chunk_cross_entropy(work[:, 5:45], y, grad_scale=1.0, grad_into=work[:, 5:45], block_v=16)
    close("loss", loss, ref_loss, 64 * EPS32, 64 * EPS32 * 10)
    close("grad", work[:, 5:45], ref_g, 64 * EPS32, 64 * EPS32 * 10)
    assert torch.equal(work[:, :5], big[:, :5]) and torch.equal(work[:, 45:], big[:, 45:]), "wrote outside the view"


@case("dtypes")
def empty_rows():
    loss, lse = kt().chunk_cross_entropy(torch.zeros(0, 7), torch.zeros(0, dtype=torch.int64), grad_scale=1.0,
                                         grad_into=torch.zeros(0, 7))
    assert loss.shape == (0,) and lse.shape == (0,)
    p = kt().vocab_partials(torch.zeros(3, 0), torch.zeros(3, dtype=torch.int64), class_offset=2, num_classes=4)
    assert p.stats.shape == (3, 15) and bool((p.stats[:, 0] == -math.inf).all())


@case("dtypes")
def unvalidated_bad_target_is_nan():
    x, y = rows(4, 20, 16)
    y[2] = 25
    work = x.clone()
    loss, _ = kt().chunk_cross_entropy(work, y, grad_scale=1.0, grad_into=work, validate=False, block_v=8)
    assert math.isnan(float(loss[2])) and bool(torch.isnan(work[2]).all()), "an out-of-range target must give NaN"
    ok = [0, 1, 3]
    ref_loss, _, ref_g = reference(x[ok], y[ok])
    close("loss", loss[ok], ref_loss, 64 * EPS32, 64 * EPS32 * 10)
    close("grad", work[ok], ref_g, 64 * EPS32, 64 * EPS32 * 10)


# ---------------------------------------------------------------------------------------------
# exactness: confident rows, ties, non-finite rows
# ---------------------------------------------------------------------------------------------

def _confident(n=8, v=100, seed=17):
    g = torch.Generator().manual_seed(seed)
    x = -70.0 - 5.0 * torch.rand(n, v, generator=g)
    y = torch.randint(0, v, (n,), generator=g)
    x[torch.arange(n), y] = 0.0
    # a row whose running maximum rises through the tiles before the target's
    x[1] = torch.linspace(-90.0, -70.0, v)
    x[1, 70] = 0.0
    y[1] = 70
    return x, y


@case("exact")
def confident_rows_ulps():
    import crossentropy as ce

    x, y = _confident()
    ref_loss, _, ref_g = reference(x, y)
    assert float(ref_loss.max()) < 1e-27 and float(ref_loss.min()) > 1e-33
    work = x.clone()
    loss, _ = kt().chunk_cross_entropy(work, y, grad_scale=1.0, grad_into=work, block_v=16, block_rows=8)
    r = torch.arange(x.shape[0])
    # the reference itself in float32 (CPU), for the same bound
    core_loss, core_g = ce.value_and_grad(ce.cross_entropy, x, y, reduction="none")
    for name, got, core, want in (("loss", loss, core_loss, ref_loss),
                                  ("target gradient", work[r, y], core_g[r, y], ref_g[r, y])):
        u = ulps32(got, want)
        uc = ulps32(core, want)
        assert float(u.max()) <= 4.0, f"{name}: {u.tolist()} ulp (float32 reference: {uc.tolist()})"
        assert float(uc.max()) <= 4.0
    close("grad", work, ref_g, 64 * EPS32, 1e-40)


@case("exact")
def confident_rows_split():
    x, y = _confident(seed=18)
    ref_loss, _, ref_g = reference(x, y)
    loss, _, grad = split_run(x, y, [0, 23, 64, 100], block_v=16)
    r = torch.arange(x.shape[0])
    for name, got, want in (("loss", loss, ref_loss), ("target gradient", grad[r, y], ref_g[r, y])):
        u = ulps32(got, want)
        assert float(u.max()) <= 4.0, f"{name}: {u.tolist()} ulp"


@case("exact")
def ties_across_tiles():
    x, y = rows(4, 64, 19, spread=1.0)
    x[0, [3, 20, 50]] = 5.0  # the first stays the argmax; the others are ordinary classes
    y[0] = 20
    x[1, [40, 41]] = 5.0
    y[1] = 40
    x[2] = 0.0  # every class tied
    x[3, [10, 60]] = 30.0
    y[3] = 60
    check_chunk(x, y, block_v=16, block_rows=2)
    check_chunk(x, y, label_smoothing=0.2, weight=torch.linspace(0.5, 2.0, 64), block_v=16, block_rows=4)
    check_split(x, y, [0, 16, 40, 64], block_v=8, label_smoothing=0.2)


NF_V = 24


def nonfinite_rows():
    """Rows with −inf, +inf and NaN in different tiles (tile 8), and targets on and off them."""
    inf, nan = math.inf, math.nan
    g = torch.Generator().manual_seed(20)
    x = torch.randn(12, NF_V, generator=g)
    y = torch.randint(0, NF_V, (12,), generator=g)
    x[0, [2, 17]] = -inf                   # finite max, some −inf (one the target)
    y[0] = 17
    x[1] = -inf                            # all −inf
    x[2, 13] = inf                         # one +inf
    x[3, [5, 19]] = inf                    # two +inf; target on the first
    y[3] = 5
    x[4, 9] = nan
    x[5, [1, 22]] = torch.tensor([inf, nan])
    x[6, [0, 23]] = torch.tensor([-inf, inf])
    y[6] = 0
    x[7, :12] = -inf                       # first tiles all −inf, finite later
    x[8, 20] = inf                         # +inf whose target is ignored
    y[8] = -100
    x[9, 4] = nan                          # NaN in an ignored row
    y[9] = -100
    x[10, 11] = inf
    y[10] = 11                             # target on the only +inf
    x[11, 12:] = -inf                      # last tiles all −inf
    return x, y


@case("nonfinite")
def nonfinite_plain_and_z():
    x, y = nonfinite_rows()
    check_chunk(x, y, ignore_index=-100, block_v=8, block_rows=8)
    check_chunk(x, y, ignore_index=-100, z_loss=1e-2, block_v=8, block_rows=8)


@case("nonfinite")
def nonfinite_smoothing_weights():
    x, y = nonfinite_rows()
    check_chunk(x, y, ignore_index=-100, label_smoothing=0.1, block_v=8, block_rows=8)
    w = torch.linspace(0.5, 2.0, NF_V)
    w[[13, 20, 5]] = 0.0  # zero weight on some +inf classes: the smoothed loss is then +inf, not NaN
    check_chunk(x, y, ignore_index=-100, label_smoothing=0.1, weight=w, block_v=8, block_rows=8)
    w2 = w.clone()
    w2[3] = -1.0  # mixed signs: +inf − inf
    check_chunk(x, y, ignore_index=-100, label_smoothing=0.1, weight=w2, z_loss=1e-3, block_v=8, block_rows=8)


@case("nonfinite")
def nonfinite_softcap():
    x, y = nonfinite_rows()
    check_chunk(x, y, ignore_index=-100, softcap=3.0, label_smoothing=0.05, block_v=8, block_rows=8)


@case("nonfinite")
def nonfinite_split():
    x, y = nonfinite_rows()
    w = torch.linspace(0.5, 2.0, NF_V)
    w[[13, 20]] = 0.0
    for opts in ({}, {"label_smoothing": 0.1, "weight": w, "z_loss": 1e-3}):
        check_split(x, y, [0, 7, 15, 24], block_v=4, ignore_index=-100, **opts)


# ---------------------------------------------------------------------------------------------
# vocabulary split
# ---------------------------------------------------------------------------------------------

def split_run(x, y, bounds, *, block_v=16, block_rows=8, weight=None, order=None, scale=1.0, **opts):
    """Partials per slice, merge (in ``order``), finish per slice: (loss, lse, grad)."""
    m = kt()
    V = x.shape[1]
    smooth = {"label_smoothing": opts.get("label_smoothing", 0.0), "softcap": opts.get("softcap")}
    parts = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        ws = None if weight is None else weight[a:b]
        parts.append(m.vocab_partials(x[:, a:b], y, class_offset=a, num_classes=V, weight=ws, block_v=block_v,
                                      block_rows=block_rows, **smooth))
    merged = m.merge_partials([parts[i] for i in (order or range(len(parts)))])
    grad = torch.empty_like(x)
    loss = lse = None
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        ws = None if weight is None else weight[a:b]
        gs = grad[:, a:b]
        l_, s_ = m.vocab_finish(x[:, a:b], y, merged, class_offset=a, num_classes=V, weight=ws, grad_scale=scale,
                                grad_into=gs, block_v=block_v, block_rows=block_rows, write_loss=i == 0, **opts)
        if i == 0:
            loss, lse = l_, s_
    return loss, lse, grad


def check_split(x, y, bounds, *, block_v=16, dtype=torch.float32, **opts):
    """Split against unsplit (a few ulp: only the order of the sums differs) and against the reference."""
    xd = x.to(dtype)
    ref_loss, ref_lse, ref_g = reference(xd, y, scale=opts.get("scale"), **{k: v for k, v in opts.items() if k != "scale"})
    loss, lse, grad = split_run(xd, y, bounds, block_v=block_v, **opts)
    work = xd.clone()
    kw = {k: v for k, v in opts.items() if k != "scale"}
    u_loss, u_lse = kt().chunk_cross_entropy(work, y, grad_scale=opts.get("scale", 1.0), grad_into=work,
                                             block_v=block_v, **kw)
    r32, a32, rg, ag = tolerances(xd, dtype, opts.get("softcap"), opts.get("z_loss", 0.0), opts.get("weight"))
    close("split loss vs unsplit", loss, u_loss, 16 * EPS32, a32 / 4)
    close("split lse vs unsplit", lse, u_lse, 16 * EPS32, a32 / 4)
    close("split grad vs unsplit", grad, work, rg / 4, ag / 4)
    close("split loss", loss, ref_loss, r32, a32)
    close("split lse", lse, ref_lse, r32, a32)
    close("split grad", grad, ref_g, rg, ag)


@case("split")
def split_every_option():
    x, y = rows(7, 300, 21, spread=5.0)
    y[3] = -100
    w = torch.rand(300, generator=torch.Generator().manual_seed(21)) + 0.3
    check_split(x, y, [0, 50, 173, 173, 300], block_v=32, weight=w, ignore_index=-100, label_smoothing=0.1,
                z_loss=1e-3, softcap=4.0, scale=torch.linspace(0.5, 1.5, 7))


@case("split")
def split_plain_bfloat16():
    x, y = rows(6, 120, 22)
    check_split(x, y, [0, 33, 120], block_v=16, dtype=torch.bfloat16)


@case("split")
def split_merge_order_and_single_slice():
    m = kt()
    x, y = rows(6, 90, 23)
    a = split_run(x, y, [0, 30, 60, 90], label_smoothing=0.2)
    b = split_run(x, y, [0, 30, 60, 90], order=[2, 0, 1], label_smoothing=0.2)
    for name, p, q in zip(("loss", "lse", "grad"), a, b):
        close(f"merge order: {name}", p, q, 8 * EPS32, 1e-6)
    # one slice: partial → merge → finish is the fused kernel, bit for bit
    p = m.vocab_partials(x, y, class_offset=0, num_classes=90, label_smoothing=0.2, block_v=16)
    merged = m.merge_partials([p])
    assert torch.equal(merged.stats, p.stats) and torch.equal(merged.index, p.index), "a single state must merge to itself"
    g1 = torch.empty_like(x)
    l1, s1 = m.vocab_finish(x, y, merged, class_offset=0, num_classes=90, label_smoothing=0.2, grad_scale=1.0,
                            grad_into=g1, block_v=16)
    g2 = x.clone()
    l2, s2 = m.chunk_cross_entropy(g2, y, label_smoothing=0.2, grad_scale=1.0, grad_into=g2, block_v=16)
    assert torch.equal(l1, l2) and torch.equal(s1, s2) and torch.equal(g1, g2), "single-slice split != fused"


@case("split")
def split_partial_state_values():
    # the state's fields against their definitions, computed directly in float64
    m = kt()
    x, y = rows(5, 40, 24)
    x[0, 15] = x[0, 30] = 9.0  # a tie inside the slice: the first is K
    w = torch.rand(40, generator=torch.Generator().manual_seed(24)) + 0.1
    p = m.vocab_partials(x[:, 10:40], y, class_offset=10, num_classes=40, weight=w[10:40], label_smoothing=0.1,
                         block_v=8)
    xs, ws = x[:, 10:40].double(), w[10:40].double()
    M, k = xs.max(1)
    e = torch.exp(xs - M[:, None])
    e[torch.arange(5), k] = 0.0
    want = {"M": M, "S_OFF": e.sum(1), "D": ((M[:, None] - xs) * ws).sum(1), "W": ws.sum().expand(5),
            "WK": ws[k], "WOFF": ws.sum() - ws[k]}
    from crossentropy._kernels.triton import _layout as L

    for name, val in want.items():
        close(f"state {name}", p.stats[:, getattr(L, name)], val, 64 * EPS32, 1e-5)
    assert p.index[:, 0].tolist() == (k + 10).tolist() and int(p.index[0, 0]) == 15, p.index[:, 0].tolist()
    hit = (y >= 10) & (y < 40)
    assert p.stats[:, L.HIT].tolist() == hit.double().tolist()


# ---------------------------------------------------------------------------------------------
# cross_entropy_cuda (run on CPU tensors by the interpreter) against value_and_grad
# ---------------------------------------------------------------------------------------------

def check_ce(x, y, *, dtype=torch.float32, **opts):
    import crossentropy as ce

    xd = x.to(dtype)
    got = kt().cross_entropy_cuda(xd, y, **opts)
    assert got is not NotImplemented, "cross_entropy_cuda declined a case it should handle"
    value, grad = got
    o64 = {k: (v.to(torch.float64) if isinstance(v, torch.Tensor) and v.dtype.is_floating_point else v)
           for k, v in opts.items() if k not in ("need_grad", "grad_into")}
    want_v, want_g = ce.value_and_grad(ce.cross_entropy, xd.to(torch.float64), y, **o64)
    assert value.dtype == dtype and value.shape == want_v.shape
    r32, a32, rg, ag = tolerances(xd, dtype, None, opts.get("z_loss", 0.0), opts.get("weight"))
    fi = torch.finfo(dtype)
    fin = want_v[torch.isfinite(want_v)]
    close("value", value, want_v, max(r32, fi.eps), a32 + fi.eps * float(fin.abs().max() if fin.numel() else 0))
    if opts.get("need_grad", True):
        assert grad.dtype == dtype and grad.shape == x.shape
        close("grad", grad, want_g, rg, ag)
    else:
        assert grad is None
    return value, grad


@case("plain")
def ce_reductions():
    x, y = rows(10, 60, 25)
    y[[2, 7]] = -100
    w = torch.rand(60, generator=torch.Generator().manual_seed(25)) + 0.2
    sw = torch.rand(10, generator=torch.Generator().manual_seed(26))
    for red in ("none", "sum", "mean", "sum_over_batch_size"):
        check_ce(x, y, reduction=red, ignore_index=-100, weight=w)
        check_ce(x, y, reduction=red, ignore_index=-100, sample_weight=sw, base=2, label_smoothing=0.1,
                 z_loss=1e-3)
    check_ce(x, y, reduction="none", ignore_index=-100, grad_output=torch.linspace(-1, 1, 10))
    check_ce(x, y, reduction="mean", ignore_index=-100, weight=w, grad_output=3.0)


@case("plain")
def ce_shapes_dtypes_inplace():
    import crossentropy as ce

    x, y = rows(12, 33, 27)
    x3, y3 = x.reshape(3, 4, 33), y.reshape(3, 4)
    check_ce(x3, y3, reduction="mean")
    check_ce(x3, y3, dtype=torch.bfloat16, reduction="sum", label_smoothing=0.1)
    check_ce(x[0], y[0], reduction="mean")  # unbatched
    v, g = check_ce(x, y, need_grad=False)
    # in place: the gradient replaces the input
    xi = x.clone()
    want_v, want_g = ce.value_and_grad(ce.cross_entropy, x.double(), y)
    v, g = kt().cross_entropy_cuda(xi, y, grad_into=xi)
    assert g.data_ptr() == xi.data_ptr()
    close("in-place grad", xi, want_g, 64 * EPS32, 1e-6)
    # all rows ignored: 'mean' is NaN (0/0) and the gradient 0, as in the reference
    yi = torch.full_like(y, -100)
    check_ce(x, yi, ignore_index=-100, reduction="mean")
    check_ce(x, yi, ignore_index=-100, reduction="sum_over_batch_size")
    # no rows
    check_ce(torch.zeros(0, 5), torch.zeros(0, dtype=torch.int64), reduction="sum")
    check_ce(torch.zeros(0, 5), torch.zeros(0, dtype=torch.int64), reduction="mean")


@case("plain")
def ce_declines_and_errors():
    from crossentropy._errors import TargetOutOfRangeError

    m = kt()
    x, y = rows(4, 6, 28)
    assert m.cross_entropy_cuda(x, y, axis=0) is NotImplemented
    assert m.cross_entropy_cuda(x.double(), y) is NotImplemented
    assert m.cross_entropy_cuda(x, torch.softmax(x, -1)) is NotImplemented
    try:
        m.cross_entropy_cuda(x, torch.tensor([0, 1, 6, 2]))
    except TargetOutOfRangeError as e:
        assert "target[2] = 6 is outside [0, 6) classes" in str(e), str(e)
    else:
        raise AssertionError("an out-of-range target must raise TargetOutOfRangeError")


# ---------------------------------------------------------------------------------------------
# the GPU build, compiled ahead of time for sm_80 and sm_90 (no GPU needed: Triton ships ptxas)
# ---------------------------------------------------------------------------------------------

def compile_for_gpu():
    """Compile each kernel to PTX/cubin as a launch on an A100/H100 would, and check the
    arithmetic the exactness scheme relies on: IEEE division, no flush-to-zero."""
    import re

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from crossentropy._kernels.triton import _ce_triton

    k = _ce_triton.build()
    assert not k.INTERPRET
    opts = {"enable_fp_fusion": False, "enable_reflect_ftz": False, "num_warps": 8}
    scalars = dict(keep="fp32", eps_v="fp32", z="fp32", cap="fp32", scale="fp32", ignore_index="i32")
    fused = dict(X="*bf16", stride_x="i64", G="*bf16", stride_g="i64", Y="*i64", W="*fp32", SCALE="*fp32",
                 LOSS="*fp32", LSE="*fp32", n_rows="i32", V="i32", **scalars)
    partial = dict(X="*fp16", stride_x="i64", Y="*i32", W="*fp32", STATS="*fp32", INDEX="*i64", n_rows="i32",
                   width="i32", v0="i32", cap="fp32")
    finish = dict(X="*fp32", stride_x="i64", G="*fp32", stride_g="i64", Y="*i64", W="*fp32", STATS="*fp32",
                  INDEX="*i64", SCALE="*fp32", LOSS="*fp32", LSE="*fp32", n_rows="i32", width="i32", v0="i32",
                  **scalars)
    on = dict(HAS_W=True, HAS_IGNORE=True, SMOOTH=True, HAS_Z=True, SOFTCAP=True, GRAD=True, SCALE_VEC=True)
    off = {n: False for n in on}
    jobs = [(k.ce_fused_kernel, fused, dict(BLOCK_R=1, BLOCK_V=4096, **on), 90),
            (k.ce_fused_kernel, fused, dict(BLOCK_R=1, BLOCK_V=4096, **on), 80),
            (k.ce_fused_kernel, fused, dict(BLOCK_R=16, BLOCK_V=256, **dict(off, GRAD=True)), 90),
            (k.ce_partial_kernel, partial, dict(BLOCK_R=2, BLOCK_V=2048, HAS_W=True, SMOOTH=True, SOFTCAP=True), 90),
            (k.ce_finish_kernel, finish, dict(BLOCK_R=1, BLOCK_V=4096, WRITE_LOSS=True, **on), 90)]
    out = {}
    for fn, sig, consts, arch in jobs:
        name = f"{fn.__name__}/sm_{arch}/{'+'.join(c for c, v in consts.items() if v is True) or 'plain'}"
        src = ASTSource(fn=fn, signature={**sig, **{c: "constexpr" for c in consts}}, constexprs=consts)
        try:
            ptx = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=opts).asm["ptx"]
        except Exception as e:  # noqa: BLE001
            out[name] = f"does not compile: {type(e).__name__}: {str(e)[:3000]}"
            continue
        insns = re.findall(r"^\s*(?:@%p\d+\s+)?([a-z][a-z0-9_.]*)", ptx, flags=re.M)
        ftz = sorted({i for i in insns if ".ftz" in i and ".approx" not in i})
        approx_div = sorted({i for i in insns if i.startswith("div.") and not i.startswith("div.rn")})
        problems = []
        if ftz:
            problems.append(f"flush-to-zero arithmetic {ftz}")
        if approx_div:
            problems.append(f"approximate division {approx_div}")
        if not any(i.startswith("div.rn.f32") for i in insns):
            problems.append("no IEEE division (div.rn.f32) where div_rn was written")
        out[name] = "; ".join(problems) or None
    return out


def main(groups):
    import numpy as np

    np.seterr(all="ignore")  # the interpreter evaluates inf − inf etc. in NumPy on purpose
    out = {}
    names = [n for g in groups for n in GROUPS[g]]
    for name in names:
        try:
            _CASES[name]()
            out[name] = None
        except BaseException as e:  # noqa: BLE001 - every failure goes back to its pytest item
            out[name] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--compile"]:
        print(json.dumps(compile_for_gpu()))
        sys.exit(0)
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("run with TRITON_INTERPRET=1 (set before triton is imported)")
    import crossentropy._kernels.triton._ce_triton as k

    assert k.build().INTERPRET, "triton was imported without the interpreter"
    print(json.dumps(main(sys.argv[1:])))
