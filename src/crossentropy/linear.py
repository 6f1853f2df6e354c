"""Fused linear + cross-entropy: the LM head and its loss without the N×V logits.

In language-model training the last layer computes ``logits = hidden @ weightᵀ
(+ bias)`` over a vocabulary of 32k–256k classes; the logits and their
gradient then dominate memory (N = 32k tokens × V = 128k classes is 16 GiB in
float32).  :func:`linear_cross_entropy` computes the loss and the gradients
for ``hidden``, ``weight`` and ``bias`` in chunks of rows:

1. ``z = hidden[rows] @ weightᵀ + bias`` (the platform's matmul) into one
   reusable chunk buffer;
2. the cross-entropy of the chunk — loss per row and ``∂loss/∂z`` written in
   place over ``z`` — by the library's CE (its fast kernel where there is one),
   with every option: class weights, ``ignore_index``, label smoothing, z-loss,
   soft-capping; the reduction's per-row factor (``1/Σw``, a global
   ``num_items_in_batch``, sample weights, ``grad_output``) is known before the
   first chunk and folded in;
3. ``∂hidden[rows] = g @ weight``, ``∂weight += gᵀ @ hidden[rows]``,
   ``∂bias += Σ_rows g``.

No N×V buffer ever exists: the peak extra memory is one chunk, sized by
``memory_budget``.  NumPy float32/float64 arrays run the tiled engine
(:mod:`crossentropy._linear_engine`, :mod:`crossentropy._linear_backend`): BLAS
products into preallocated tiles and the compiled chunk kernels in place
(``docs/linear.md``).  Other array libraries run the chunks with their own
operations.  The unfused computation (:func:`_reference`) defines the
semantics and the tests hold the chunked one to it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._backend import Ops, namespace
from ._errors import InvalidDTypeError, InvalidOptionError, ShapeMismatchError
from ._grad import quiet, register, value_and_grad
from ._kernels import get as _kernels
from ._linear_engine import DEFAULT_MEMORY_BUDGET, Layout
from ._linear_engine import _budget as engine_budget
from ._linear_engine import cpu_layout
from ._linear_engine import run as run_engine
from ._validation import check_floating, check_index_target, check_reduction, check_softcap, check_unit_interval_option
from ._kernels import _chunk
from ._linear_backend import ChunkBackend, NumpyMM
from ._typing import Array, ArrayLike
from .categorical import cross_entropy

__all__ = ["linear_cross_entropy", "DEFAULT_MEMORY_BUDGET"]



def _engine_applies(xp: Ops, hidden: Array) -> bool:
    """NumPy float32/float64 with the compiled kernels: the tiled engine (:mod:`._linear_engine`)."""
    return xp.name == "numpy" and _kernels() is not None and hidden.dtype in (np.float32, np.float64)


class _Plan:
    """Validated arguments and the derived sizes, checked before any heavy work."""

    __slots__ = ("xp", "h", "w", "b", "y", "shape", "N", "D", "V", "cw", "sw", "ignore_index", "eps", "z",
                 "softcap", "reduction", "num_items", "rows", "vslice", "layout")

    xp: Ops
    h: Array
    w: Array
    b: Array | None
    y: Array
    shape: tuple[int, ...]
    N: int
    D: int
    V: int
    cw: Array | None
    sw: ArrayLike | None
    ignore_index: int | None
    eps: float
    z: float
    softcap: float | None
    reduction: str
    num_items: float | None
    rows: int
    vslice: int
    layout: Layout | None


def check_options(reduction: str, label_smoothing: float, z_loss: float, softcap: float | None,
                  num_items_in_batch: float | None) -> tuple[float, float, float | None, float | None]:
    """``(label_smoothing, z_loss, softcap, num_items)`` checked (shared with the torch adapter)."""
    check_reduction(reduction)
    eps = check_unit_interval_option(label_smoothing, "label_smoothing")
    try:
        z = float(z_loss)
    except (TypeError, ValueError):
        raise InvalidOptionError(f"z_loss must be a number >= 0; got {z_loss!r}") from None
    if not (z >= 0.0 and math.isfinite(z)):
        raise InvalidOptionError(f"z_loss must be a finite number >= 0; got {z_loss!r}")
    cap = check_softcap(softcap)
    num_items = None
    if num_items_in_batch is not None:
        if reduction != "mean":
            raise InvalidOptionError(
                f"num_items_in_batch divides the summed loss (a global mean); it needs reduction='mean', "
                f"got reduction={reduction!r}")
        try:
            num_items = float(num_items_in_batch)
        except (TypeError, ValueError):
            raise InvalidOptionError(f"num_items_in_batch must be a positive number; got {num_items_in_batch!r}") \
                from None
        if not (num_items > 0 and math.isfinite(num_items)):
            raise InvalidOptionError(f"num_items_in_batch must be a positive number; got {num_items_in_batch!r}")
    return eps, z, cap, num_items


def _plan(hidden: Array, weight: Array, target: Array, *, bias: Array | None, class_weight: Array | None,
          sample_weight: ArrayLike | None, ignore_index: int | None, label_smoothing: float, reduction: str,
          z_loss: float, softcap: float | None, num_items_in_batch: float | None,
          memory_budget: int | None) -> _Plan:
    xp = namespace(hidden, weight, target, bias, class_weight, sample_weight)
    p = _Plan()
    p.xp = xp
    check_floating(xp, hidden, "hidden")
    check_floating(xp, weight, "weight")
    if hidden.ndim < 1:
        raise ShapeMismatchError(f"hidden must have shape (..., D); got {tuple(hidden.shape)}")
    if weight.ndim != 2:
        raise ShapeMismatchError(f"weight must have shape (V, D); got {tuple(weight.shape)}")
    V, D = (int(s) for s in weight.shape)
    if int(hidden.shape[-1]) != D:
        raise ShapeMismatchError(
            f"hidden's last dimension must equal weight's second (D = {D}); got hidden {tuple(hidden.shape)} "
            f"and weight {tuple(weight.shape)}")
    if hidden.dtype != weight.dtype:
        raise InvalidDTypeError(f"hidden and weight must have one dtype; got {hidden.dtype} and {weight.dtype}")
    if bias is not None:
        check_floating(xp, bias, "bias")
        if tuple(bias.shape) != (V,):
            raise ShapeMismatchError(f"bias must have shape ({V},), one entry per class; got {tuple(bias.shape)}")
        if bias.dtype != weight.dtype:
            raise InvalidDTypeError(f"bias must have the dtype of weight ({weight.dtype}); got {bias.dtype}")
    if not hasattr(target, "dtype") or not xp.is_integer(target):
        raise InvalidDTypeError(
            f"target must hold integer class indices; got {getattr(target, 'dtype', type(target).__name__)}")
    p.shape = tuple(hidden.shape[:-1])
    check_index_target(xp, target, V, ignore_index, p.shape)
    if class_weight is not None and tuple(class_weight.shape) != (V,):
        raise ShapeMismatchError(f"class_weight must have shape ({V},), one entry per class; "
                                 f"got {tuple(class_weight.shape)}")
    p.eps, p.z, p.softcap, p.num_items = check_options(reduction, label_smoothing, z_loss, softcap,
                                                       num_items_in_batch)
    p.N = int(math.prod(p.shape))
    p.D, p.V = D, V
    item = np.dtype(str(hidden.dtype).replace("torch.", "")).itemsize if xp.name != "numpy" else hidden.dtype.itemsize
    p.layout = None
    if _engine_applies(xp, hidden):
        # fixed tile shapes (bitwise-identical results for every budget); a budget below one tile is an error
        p.layout = cpu_layout(p.N, V, item, memory_budget)
        budget = p.layout.tile_bytes
    else:
        budget = engine_budget(memory_budget, DEFAULT_MEMORY_BUDGET)
        if budget < V * item:
            raise InvalidOptionError(
                f"memory_budget={budget} bytes is too small for one row of logits (V = {V} classes × {item} bytes "
                f"= {V * item} bytes)")
    p.rows = max(1, min(p.N, budget // (V * item)))
    p.vslice = max(1, min(V, budget // max(1, D * item)))
    p.h = xp.reshape(hidden, (p.N, D))
    p.w, p.b = weight, bias
    p.y = xp.reshape(target, (p.N,))
    p.cw, p.sw = class_weight, sample_weight
    p.ignore_index = ignore_index
    p.reduction = reduction
    return p


def _ce_options(p: _Plan) -> dict[str, Any]:
    return dict(weight=p.cw, ignore_index=p.ignore_index, label_smoothing=p.eps, z_loss=p.z, softcap=p.softcap)


def _row_scale(p: _Plan, grad_output: ArrayLike | None) -> tuple[Any, Any]:
    """Per-row factor of ``∂loss/∂z``: what the reduction, sample weights and grad_output multiply it by.

    ``(scale, denominator)``: ``scale`` is None (all ones), a scalar, or an (N,) array; ``denominator``
    is what the summed loss is divided by (None for 'none' and 'sum').
    """
    xp, y = p.xp, p.y
    valid = None if p.ignore_index is None else (y != p.ignore_index)
    sw = None if p.sw is None else xp.reshape(xp.broadcast_to(xp.astype(p.sw, p.h), p.shape), (p.N,))
    if p.reduction == "none":
        scale = sw
        if grad_output is not None:
            go = xp.reshape(xp.broadcast_to(xp.astype(xp.asarray(grad_output, like=p.h), p.h), p.shape), (p.N,))
            scale = go if scale is None else scale * go
        return scale, None
    denom = None
    if p.reduction == "mean":
        if p.num_items is not None:
            denom = p.num_items
        else:
            # PyTorch's weighted mean: Σ w[y_i]·s_i over the counted rows
            yy = y if valid is None else xp.where(valid, y, xp.zeros_like(y))
            w = xp.ones_like(p.h[:, 0]) if p.cw is None else xp.take(xp.astype(p.cw, p.h), yy)
            if sw is not None:
                w = w * sw
            if valid is not None:
                w = xp.where(valid, w, xp.zeros_like(w))
            denom = xp.accurate_sum(w)
    elif p.reduction == "sum_over_batch_size":
        denom = float(p.N) if valid is None else xp.sum(xp.astype(valid, p.h))
    factor = 1.0
    if denom is not None:
        factor = 1.0 / xp.where(denom == 0, xp.ones_like(denom), denom) if hasattr(denom, "dtype") else 1.0 / denom
    if grad_output is not None:
        factor = factor * xp.astype(xp.asarray(grad_output, like=p.h), p.h)
    scale = factor if sw is None else sw * factor
    return scale, denom


def _value(p: _Plan, rows_loss: Array, denom: Any) -> Array:
    xp = p.xp
    if p.reduction == "none":
        return xp.reshape(rows_loss, p.shape)
    total = xp.accurate_sum(rows_loss)
    if p.reduction == "sum":
        return total
    if p.reduction == "sum_over_batch_size":
        return xp.where(denom > 0, total / xp.where(denom == 0, xp.ones_like(denom), denom), xp.zeros_like(total))
    return total / denom  # mean: 0/0 = NaN, as PyTorch


def _rows_of(scale: Any, i0: int, i1: int) -> Any:
    return scale[i0:i1] if getattr(scale, "ndim", 0) else scale


@quiet
def _linear_ce(hidden: Array, weight: Array, target: Array, /, *, wrt: tuple[int | str, ...] = (),
               grad_output: ArrayLike | None = None, bias: Array | None = None, class_weight: Array | None = None,
               sample_weight: ArrayLike | None = None, ignore_index: int | None = None,
               label_smoothing: float = 0.0, reduction: str = "mean", z_loss: float = 0.0,
               softcap: float | None = None, num_items_in_batch: float | None = None,
               memory_budget: int | None = None) -> tuple[Array, dict[int | str, Array]]:
    p = _plan(hidden, weight, target, bias=bias, class_weight=class_weight, sample_weight=sample_weight,
              ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction, z_loss=z_loss,
              softcap=softcap, num_items_in_batch=num_items_in_batch, memory_budget=memory_budget)
    xp = p.xp
    need = bool(wrt)
    scale, denom = _row_scale(p, grad_output)
    if p.layout is not None:
        return _engine_ce(p, p.layout, hidden, wrt, scale, denom)
    sw_rows = None if p.sw is None else xp.reshape(xp.broadcast_to(xp.astype(p.sw, p.h), p.shape), (p.N,))
    opts = _ce_options(p)
    losses = []
    dh = xp.zeros((p.N, p.D), like=p.h) if 0 in wrt else None
    dw = xp.zeros((p.V, p.D), like=p.h) if 1 in wrt else None
    db = xp.zeros((p.V,), like=p.h) if "bias" in wrt else None
    wt = xp.xp.permute_dims(p.w, (1, 0))  # (D, V) view: z = h @ Wᵀ
    for i0 in range(0, p.N, p.rows):
        i1 = min(p.N, i0 + p.rows)
        hc = p.h[i0:i1]
        z = xp.xp.matmul(hc, wt)
        if p.b is not None:
            if xp.name == "numpy":
                z += p.b  # in place: one chunk buffer
            else:
                z = z + p.b
        yc = p.y[i0:i1]
        if need:
            g_rows = _rows_of(scale, i0, i1)
            go = xp.ones_like(z[:, 0]) if g_rows is None else (
                g_rows if getattr(g_rows, "ndim", 0) else xp.full_like(z[:, 0], float(g_rows)))
            lc, g = value_and_grad(cross_entropy, z, yc, reduction="none", grad_output=go, **opts,
                                   **({"grad_into": z} if xp.name == "numpy" else {}))
            if dh is not None:
                dh[i0:i1] = xp.xp.matmul(g, p.w)
            if dw is not None:
                _accumulate_dw(xp, dw, g, hc, p.vslice)
            if db is not None:
                db = db + xp.sum(g, axis=0)
        else:
            lc = cross_entropy(z, yc, reduction="none", **opts)
        losses.append(lc if sw_rows is None else lc * sw_rows[i0:i1])
    rows_loss = xp.xp.concat(losses) if losses else xp.zeros((0,), like=p.h)
    value = _value(p, rows_loss, denom)
    grads: dict[int | str, Array] = {}
    if dh is not None:
        grads[0] = xp.reshape(dh, tuple(hidden.shape))
    if dw is not None:
        grads[1] = dw
    if db is not None:
        grads["bias"] = db
    return value, grads


def kernel_options(p: _Plan) -> dict[str, Any]:
    """The chunk kernels' options (class weights apart)."""
    return dict(ignore_index=p.ignore_index, label_smoothing=p.eps, z_loss=p.z, softcap=p.softcap)


def kernel_scale(scale: Any, n: int) -> float | np.ndarray:
    """The kernels' ``grad_scale``: a float, or a float64 array of one factor per row."""
    if scale is None:
        return 1.0
    a = np.asarray(scale, dtype=np.float64)
    return float(a) if a.ndim == 0 else np.ascontiguousarray(np.broadcast_to(a, (n,)))


def _engine_ce(p: _Plan, layout: Layout, hidden: np.ndarray, wrt: tuple[int | str, ...], scale: Any,
               denom: Any) -> tuple[Array, dict[int | str, Array]]:
    """NumPy float32/float64: the tiled engine with the compiled chunk kernels and NumPy's BLAS."""
    dtype = hidden.dtype
    h = np.ascontiguousarray(p.h)
    w = np.ascontiguousarray(p.w)
    b = None if p.b is None else np.ascontiguousarray(p.b)
    cw = None if p.cw is None else np.ascontiguousarray(p.cw, dtype=dtype)
    y = np.ascontiguousarray(p.y, dtype=np.int64)
    bk = ChunkBackend(NumpyMM(dtype), _chunk, h, w, b, y, cw, kernel_options(p),
                    want=(0 in wrt, 1 in wrt, "bias" in wrt))
    rows_loss = run_engine(bk, layout, scale=kernel_scale(scale, p.N) if wrt else None)
    if p.sw is not None:
        rows_loss = rows_loss * np.reshape(np.broadcast_to(np.asarray(p.sw, np.float64), p.shape), (p.N,))
    value = _value(p, rows_loss, denom)
    value = np.asarray(value, dtype=dtype) if p.reduction == "none" else dtype.type(value)
    grads: dict[int | str, Array] = {}
    if bk.dh is not None:
        grads[0] = bk.dh.reshape(tuple(hidden.shape))
    if bk.dw is not None:
        grads[1] = bk.dw
    if bk.db is not None:
        grads["bias"] = bk.db
    return value, grads


def _accumulate_dw(xp: Ops, dw: Array, g: Array, hc: Array, vslice: int) -> None:
    """``dw += gᵀ @ hc`` a vocabulary slice at a time: the temporary is (slice × D), not (V × D)."""
    gt = xp.xp.permute_dims(g, (1, 0))
    V = int(dw.shape[0])
    for v0 in range(0, V, vslice):
        v1 = min(V, v0 + vslice)
        dw[v0:v1] += xp.xp.matmul(gt[v0:v1], hc)


def linear_cross_entropy(hidden: Any, weight: Any, target: Any, /, *, bias: Any = None, class_weight: Any = None,
                         sample_weight: Any = None, ignore_index: int | None = None, label_smoothing: float = 0.0,
                         reduction: str = "mean", z_loss: float = 0.0, softcap: float | None = None,
                         num_items_in_batch: float | None = None, memory_budget: int | None = None) -> Any:
    r"""Cross-entropy of a linear layer's logits, computed in chunks: the N×V logits never exist.

    .. math:: \ell_i = \mathrm{CE}\big(\mathrm{cap}(h_i W^\top + b),\ y_i\big),\qquad
              \mathrm{cap}(z) = s\tanh(z/s)

    with every option of :func:`cross_entropy` (``class_weight`` is its
    ``weight``: the name ``weight`` is the layer's matrix here).  Reductions as
    :func:`cross_entropy`; ``num_items_in_batch`` (Hugging Face's name) replaces
    the mean's denominator by a global count, so that gradients accumulated
    over micro-batches equal the full batch's.  Gradients for ``hidden`` (0),
    ``weight`` (1) and ``bias`` come from
    ``value_and_grad(linear_cross_entropy, h, W, y, wrt=(0, 1, "bias"), bias=b)``.

    ``memory_budget`` (bytes; default 64 MiB, or on NumPy float32/float64 one
    block of rows if that is larger) bounds the logits held at once.
    On NumPy float32/float64 (the compiled kernels) the logits come in tiles
    whose shape depends on ``(N, V, dtype)`` alone (up to 16384 classes × a
    block of 384–512 rows); a budget that holds a block's tiles runs one pass (three
    matrix products, the floor), a smaller one two passes (the logits are
    computed twice, four products), and a budget below one tile is an error.
    The results are bitwise identical for every budget and thread count
    (``docs/linear.md``).  Other array libraries run chunks of rows, and a
    budget below one row of logits is an error.

    Shapes: ``hidden`` ``(..., D)``, ``weight`` ``(V, D)``, ``bias`` ``(V,)``,
    integer ``target`` ``(...)``; ``reduction='none'`` returns ``(...)``.

    >>> import numpy as np
    >>> from crossentropy import linear_cross_entropy, cross_entropy, value_and_grad
    >>> rng = np.random.default_rng(0)
    >>> h, W, y = rng.standard_normal((6, 4)), rng.standard_normal((10, 4)), np.array([1, 2, 3, 4, 5, 6])
    >>> bool(np.isclose(linear_cross_entropy(h, W, y), cross_entropy(h @ W.T, y)))
    True
    >>> loss, (dh, dW) = value_and_grad(linear_cross_entropy, h, W, y, wrt=(0, 1))
    >>> dh.shape, dW.shape
    ((6, 4), (10, 4))
    """
    return _linear_ce(hidden, weight, target, bias=bias, class_weight=class_weight, sample_weight=sample_weight,
                      ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction, z_loss=z_loss,
                      softcap=softcap, num_items_in_batch=num_items_in_batch, memory_budget=memory_budget)[0]


def _reference(hidden: Array, weight: Array, target: Array, *, wrt: tuple[int | str, ...] = (0, 1, "bias"),
               grad_output: ArrayLike | None = None, bias: Array | None = None, class_weight: Array | None = None,
               sample_weight: ArrayLike | None = None, ignore_index: int | None = None,
               label_smoothing: float = 0.0, reduction: str = "mean", z_loss: float = 0.0,
               softcap: float | None = None,
               num_items_in_batch: float | None = None) -> tuple[Array, tuple[Array, ...]]:
    """The unfused computation (materialises the N×V logits): the semantics the chunked path must equal."""
    xp = namespace(hidden, weight, target, bias)
    D = int(weight.shape[1])
    h = xp.reshape(hidden, (-1, D))
    z = xp.xp.matmul(h, xp.xp.permute_dims(weight, (1, 0)))
    if bias is not None:
        z = z + bias
    y = xp.reshape(target, (-1,))
    red = "sum" if num_items_in_batch is not None else reduction
    go = grad_output
    if go is not None and reduction == "none":
        go = xp.reshape(go, (-1,))
    sw = None if sample_weight is None else xp.reshape(
        xp.broadcast_to(sample_weight, tuple(hidden.shape[:-1])), (-1,))
    v, g = value_and_grad(cross_entropy, z, y, grad_output=go, weight=class_weight, sample_weight=sw,
                          ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=red, z_loss=z_loss,
                          softcap=softcap)
    if num_items_in_batch is not None:
        v, g = v / num_items_in_batch, g / num_items_in_batch
    if reduction == "none":
        v = xp.reshape(v, tuple(hidden.shape[:-1]))
    out = {0: xp.reshape(xp.xp.matmul(g, weight), tuple(hidden.shape)),
           1: xp.xp.matmul(xp.xp.permute_dims(g, (1, 0)), h),
           "bias": xp.sum(g, axis=0)}
    return v, tuple(out[k] for k in wrt)


register(linear_cross_entropy, _linear_ce, ("hidden", "weight", "target"), (0, 1, "bias"))
