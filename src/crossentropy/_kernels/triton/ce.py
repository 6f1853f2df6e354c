"""Softmax cross-entropy on CUDA tensors with Triton kernels: in-chunk, vocabulary-split, and plain.

Three layers, each a thin wrapper over the kernels of :mod:`._ce_triton`
(imported on the first launch, so importing this module imports ``torch``
but not ``triton``):

* :func:`chunk_cross_entropy`: per-row loss and log-sum-exp of a
  ``(rows, V)`` logits block, and, when asked, its gradient written over the
  block itself (the in-chunk kernel of a fused linear + cross-entropy);
* :func:`vocab_partials` → :func:`merge_partials` → :func:`vocab_finish`:
  the same computation with the vocabulary cut into column slices (a huge
  ``V``, or one slice per rank of a vocabulary-parallel layer);
* :func:`cross_entropy_cuda`: ``value_and_grad(cross_entropy, input, target,
  ...)`` for CUDA tensors with the classes last, in one forward and one
  gradient pass; ``NotImplemented`` for what it does not handle.

Every loss follows :class:`crossentropy.activations.SoftmaxParts`: with ``m``
the row maximum at one argmax ``K`` and ``S_off = Σ_{c≠K} e^{x_c − m}``
(summed without the ``K`` term), ``−log p_y = (m − x_y) + log1p(S_off)`` and
``1 − p_K = S_off/(1 + S_off)``, so a confident row keeps its loss (1e-30 in
float32) and its target gradient to a few ulp.  Rows whose maximum is not
finite follow the reference's plain formula (NaN and ±inf propagate as
there).  Logits may be float32, bfloat16 or float16; everything is computed
in float32; the gradient is stored in the logits' dtype.

CPU tensors run through Triton's interpreter when ``TRITON_INTERPRET=1`` was
set before :mod:`triton` was first imported (that is how the tests run);
otherwise the kernels need CUDA tensors.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple, Sequence

import torch

from ..._backend import concrete, log_of_base, namespace
from ..._errors import InvalidDTypeError, InvalidOptionError, ShapeMismatchError
from ..._validation import (
    check_ignore_index,
    check_index_target,
    check_nonnegative_option,
    check_reduction,
    check_softcap,
    check_unit_interval_option,
    normalize_axis,
)
from . import _layout as L

__all__ = [
    "Partials",
    "chunk_cross_entropy",
    "vocab_partials",
    "lift_partials",
    "merge_partials",
    "vocab_finish",
    "cross_entropy_cuda",
    "kernel_dtypes",
]

#: Logit dtypes the kernels take (computing in float32 in every case).
kernel_dtypes = (torch.float32, torch.bfloat16, torch.float16)
_MAX_TILE = 4096


class Partials(NamedTuple):
    """Per-row partial state of a vocabulary slice (see ``_layout`` for the columns).

    ``stats``: ``(rows, 15)`` float32; ``index``: ``(rows, 2)`` int64 (K, KPINF);
    ``options``: ``(smoothing, weighted, softcap, num_classes)``, the options
    the state was computed for (checked when states are merged or finished,
    so a state cannot silently meet options it lacks the sums for).
    """

    stats: torch.Tensor
    index: torch.Tensor  # type: ignore[assignment]  # the field shadows tuple.index (a public name)
    options: tuple


# ---------------------------------------------------------------------------------------------
# validation (all before any kernel is imported or launched)
# ---------------------------------------------------------------------------------------------

def _mod():
    """The kernels (imports triton on first use)."""
    from . import _ce_triton

    try:
        return _ce_triton.build()
    except ImportError as e:
        raise ImportError(f"the Triton kernels need triton (pip install 'crossentropy[cuda]'): {e}") from e


def _interpreting() -> bool:
    """CPU tensors run only under Triton's interpreter.  Without TRITON_INTERPRET=1 this is
    False *without importing triton* (importing it after TensorFlow aborts the process)."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        return False
    return bool(_mod().INTERPRET)


def _check_device(t, name="logits"):
    """The last check before a launch (after every value check, so those run anywhere)."""
    if t.device.type == "cuda" or (t.device.type == "cpu" and _interpreting()):
        return
    raise InvalidOptionError(
        f"{name} must be a CUDA tensor (CPU tensors run only under Triton's interpreter, "
        f"TRITON_INTERPRET=1 set before triton is imported); got device {t.device}")


def _check_logits(x, name="logits"):
    if not isinstance(x, torch.Tensor):
        raise InvalidDTypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if x.ndim != 2:
        raise ShapeMismatchError(f"{name} must be 2-D (rows, classes); got shape {tuple(x.shape)}")
    if x.dtype not in kernel_dtypes:
        raise InvalidDTypeError(f"{name} must be float32, bfloat16 or float16; got dtype {x.dtype}")
    if x.shape[1] > 1 and x.stride(1) != 1:
        raise InvalidOptionError(f"{name} must be contiguous along its class axis (stride 1); got strides {x.stride()}")


def _check_target(target, rows, device):
    if not isinstance(target, torch.Tensor):
        raise InvalidDTypeError(f"target must be a torch.Tensor of class indices; got {type(target).__name__}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise InvalidDTypeError(f"target must hold integer class indices; got dtype {target.dtype}")
    if tuple(target.shape) != (rows,):
        raise ShapeMismatchError(f"target must have shape ({rows},), one class index per row; got {tuple(target.shape)}")
    if target.device != device:
        raise InvalidOptionError(f"target must be on the logits' device {device}; got {target.device}")
    return target if target.is_contiguous() else target.contiguous()


def _check_weight(weight, n, device, what):
    if weight is None:
        return None
    if not isinstance(weight, torch.Tensor):
        raise InvalidDTypeError(f"weight must be a torch.Tensor; got {type(weight).__name__}")
    if tuple(weight.shape) != (n,):
        raise ShapeMismatchError(f"weight must have shape ({n},), one entry per {what}; got {tuple(weight.shape)}")
    if not weight.dtype.is_floating_point:
        raise InvalidDTypeError(f"weight must be a floating tensor; got dtype {weight.dtype}")
    if weight.device != device:
        raise InvalidOptionError(f"weight must be on the logits' device {device}; got {weight.device}")
    return weight.to(torch.float32).contiguous()


def _check_targets_in_range(target, num_classes, ignore_index):
    # The core's check: same message as the reference path (one device sync).
    check_index_target(namespace(target), target, num_classes, ignore_index, tuple(target.shape))


def _grad_args(logits, grad_scale, grad_into, rows):
    """``(scale_tensor_or_None, scale_scalar, grad_into)``; scale None means no gradient."""
    if grad_scale is None:
        if grad_into is not None:
            raise InvalidOptionError("grad_into was given without grad_scale; pass grad_scale=1.0 for the plain gradient")
        return None, 0.0, None
    if grad_into is None:
        raise InvalidOptionError(
            "grad_scale was given without grad_into; pass grad_into=logits to write the gradient over the logits")
    if not isinstance(grad_into, torch.Tensor) or tuple(grad_into.shape) != tuple(logits.shape):
        raise ShapeMismatchError(
            f"grad_into must have the logits' shape {tuple(logits.shape)}; got {tuple(getattr(grad_into, 'shape', ()))}")
    if grad_into.dtype != logits.dtype:
        raise InvalidDTypeError(f"grad_into must have the logits' dtype {logits.dtype}; got {grad_into.dtype}")
    if grad_into.device != logits.device:
        raise InvalidOptionError(f"grad_into must be on the logits' device {logits.device}; got {grad_into.device}")
    if grad_into.shape[1] > 1 and grad_into.stride(1) != 1:
        raise InvalidOptionError(f"grad_into must be contiguous along its class axis; got strides {grad_into.stride()}")
    if (grad_into.data_ptr() != logits.data_ptr() or grad_into.stride() != logits.stride()) \
            and _overlap(grad_into, logits):
        raise InvalidOptionError("grad_into overlaps logits without being the logits themselves")
    if isinstance(grad_scale, torch.Tensor):
        if grad_scale.numel() == 1 and grad_scale.ndim <= 1:
            grad_scale = grad_scale.reshape(1).expand(rows)  # a device scalar: no sync to read it
        if tuple(grad_scale.shape) != (rows,):
            raise ShapeMismatchError(f"grad_scale must be a number or have shape ({rows},); got {tuple(grad_scale.shape)}")
        if grad_scale.device != logits.device:
            raise InvalidOptionError(f"grad_scale must be on the logits' device {logits.device}; got {grad_scale.device}")
        return grad_scale.to(torch.float32).contiguous(), 0.0, grad_into
    try:
        return None, float(grad_scale), grad_into
    except (TypeError, ValueError):
        raise InvalidOptionError(f"grad_scale must be a number or a tensor; got {grad_scale!r}") from None


def _pow2(n):
    return 1 << max(0, int(n) - 1).bit_length()


def _blocks(width, rows, block_v, block_rows):
    """Tile shape: up to 4096 columns a tile; short rows are packed several to a program."""
    for v, name in ((block_v, "block_v"), (block_rows, "block_rows")):
        if v is not None and (int(v) < 1 or int(v) & (int(v) - 1)):
            raise InvalidOptionError(f"{name} must be a power of two >= 1; got {v!r}")
    bv = int(block_v) if block_v else min(_pow2(max(width, 1)), _MAX_TILE)
    br = int(block_rows) if block_rows else max(1, min(16, _MAX_TILE // bv, _pow2(max(rows, 1))))
    return bv, br


_LAUNCH = None


def _launch_options(bv, br):
    """Compiler options: no FMA contraction (the written order of operations is the one
    executed), and (NVIDIA) libdevice without flush-to-zero, so subnormals survive."""
    global _LAUNCH
    mod = _mod()
    if mod.INTERPRET:
        return {}
    if _LAUNCH is None:
        import triton

        backend = triton.runtime.driver.active.get_current_target().backend
        _LAUNCH = {"enable_fp_fusion": False}
        if backend == "cuda":
            from triton.backends.nvidia.compiler import CUDAOptions

            # a Triton without the option rejects the keyword; it then keeps its default
            if "enable_reflect_ftz" in getattr(CUDAOptions, "__dataclass_fields__", {}):
                _LAUNCH["enable_reflect_ftz"] = False
    n = bv * br
    return dict(_LAUNCH, num_warps=4 if n <= 2048 else 8)


def _options(label_smoothing, z_loss, softcap, ignore_index, num_classes):
    eps = check_unit_interval_option(label_smoothing, "label_smoothing")
    z = check_nonnegative_option(z_loss, "z_loss")
    cap = check_softcap(softcap)
    ii = check_ignore_index(ignore_index)
    return eps, z, cap, ii, (1.0 - eps), (eps / num_classes if num_classes else 0.0)


# ---------------------------------------------------------------------------------------------
# in-chunk kernel
# ---------------------------------------------------------------------------------------------

def chunk_cross_entropy(logits, target, /, *, weight=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0,
                        softcap=None, grad_scale=None, grad_into=None, validate=True, block_v=None, block_rows=None):
    r"""Per-row softmax cross-entropy of a logits block, and optionally its gradient, in one kernel.

    With :math:`x' = s\tanh(x/s)` when ``softcap=s`` (else :math:`x' = x`),
    :math:`q = (1-ε)\,\mathrm{onehot}(y) + ε/V` and class weights :math:`w`:

    .. math::
        \ell_i = -\sum_c w_c q_{ic} \log \mathrm{softmax}(x'_i)_c + z\,\mathrm{lse}(x'_i)^2

    (0 for rows whose target is ``ignore_index``), returned with
    :math:`\mathrm{lse}(x'_i)`.  With ``grad_scale`` (a number or one per
    row: the caller folds the reduction, a global normaliser, sample weights
    and ``grad_output`` into it) the kernel writes
    :math:`g_i\,∂\ell_i/∂x_i` (w.r.t. the *pre-softcap* logits) into
    ``grad_into``, which may be ``logits`` itself: then no second
    ``rows × V`` buffer exists.

    Shapes: ``logits`` ``(rows, V)`` float32/bfloat16/float16, unit stride
    along ``V``; ``target`` ``(rows,)`` integer; ``weight`` ``(V,)``;
    ``grad_scale`` a number or ``(rows,)``; ``grad_into`` like ``logits``.
    Returns ``(loss, lse)``, both ``(rows,)`` float32.

    ``validate=False`` skips the target range check (a device sync); a
    counted row whose target is out of range then gets a NaN loss and a NaN
    gradient row, never a number.  ``block_v``/``block_rows`` override the
    tile shape (powers of two; the tests use small tiles).

    >>> import torch
    >>> from crossentropy._kernels.triton import chunk_cross_entropy
    >>> chunk_cross_entropy(torch.zeros(2, 3, dtype=torch.float64), torch.tensor([0, 1]))
    Traceback (most recent call last):
    ...
    crossentropy._errors.InvalidDTypeError: logits must be float32, bfloat16 or float16; got dtype torch.float64
    """
    _check_logits(logits)
    rows, V = logits.shape
    target = _check_target(target, rows, logits.device)
    w = _check_weight(weight, V, logits.device, "class")
    eps, z, cap, ii, keep, eps_v = _options(label_smoothing, z_loss, softcap, ignore_index, V)
    scale_t, scale_s, g = _grad_args(logits, grad_scale, grad_into, rows)
    if V >= L.BIG:
        raise ShapeMismatchError(f"logits has {V} classes; the kernels take fewer than {L.BIG}")
    loss = torch.empty(rows, dtype=torch.float32, device=logits.device)
    lse = torch.empty(rows, dtype=torch.float32, device=logits.device)
    if rows == 0:
        return loss, lse
    if V == 0:
        raise ShapeMismatchError("logits must have at least one class; got shape (rows, 0)")
    if validate:
        _check_targets_in_range(target, V, ii)
    bv, br = _blocks(V, rows, block_v, block_rows)
    _check_device(logits)
    mod = _mod()
    grid = (triton_cdiv(rows, br),)
    mod.ce_fused_kernel[grid](
        logits, logits.stride(0), g if g is not None else logits, (g if g is not None else logits).stride(0),
        target, w if w is not None else loss, scale_t if scale_t is not None else loss, loss, lse,
        rows, V, ii if ii is not None else 0, keep, eps_v, z, cap or 1.0, scale_s,
        BLOCK_R=br, BLOCK_V=bv, HAS_W=w is not None, HAS_IGNORE=ii is not None, SMOOTH=eps > 0.0,
        HAS_Z=z > 0.0, SOFTCAP=cap is not None, GRAD=g is not None, SCALE_VEC=scale_t is not None,
        **_launch_options(bv, br))
    return loss, lse


def triton_cdiv(a, b):
    return -(-int(a) // int(b))


# ---------------------------------------------------------------------------------------------
# vocabulary split
# ---------------------------------------------------------------------------------------------

def _split_checks(logits, class_offset, num_classes):
    _check_logits(logits)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not (0 < num_classes < L.BIG):
        raise InvalidOptionError(f"num_classes must be an int in [1, {L.BIG}); got {num_classes!r}")
    width = logits.shape[1]
    if isinstance(class_offset, bool) or not isinstance(class_offset, int) or class_offset < 0 \
            or class_offset + width > num_classes:
        raise InvalidOptionError(
            f"class_offset must be an int with 0 <= class_offset and class_offset + {width} (the slice's width) "
            f"<= num_classes={num_classes}; got {class_offset!r}")
    return logits.shape[0], width


def vocab_partials(logits, target, /, *, class_offset, num_classes, weight=None, label_smoothing=0.0, softcap=None,
                   block_v=None, block_rows=None):
    r"""Pass 1 over a column slice: the per-row partial state of classes ``[class_offset, class_offset + width)``.

    ``logits`` is the slice ``(rows, width)`` of the full ``(rows, num_classes)``
    logits (a view with unit column stride is fine); ``weight``, when given,
    is the slice of the class weights, shape ``(width,)``; ``target`` holds
    the *global* class indices.  ``label_smoothing`` only says whether the
    smoothing sums are needed.  The state's columns are in ``_layout``; states
    of disjoint slices combine with :func:`merge_partials` (or, across ranks,
    with MAX/MIN/SUM all-reduces, see :func:`lift_partials`).

    Shapes: returns :class:`Partials` with ``stats`` ``(rows, 15)`` float32 and
    ``index`` ``(rows, 2)`` int64.

    >>> import torch
    >>> from crossentropy._kernels.triton import vocab_partials
    >>> vocab_partials(torch.zeros(2, 3), torch.tensor([0, 1]), class_offset=2, num_classes=4)
    Traceback (most recent call last):
    ...
    crossentropy._errors.InvalidOptionError: class_offset must be an int with 0 <= class_offset and class_offset + 3 (the slice's width) <= num_classes=4; got 2
    """
    rows, width = _split_checks(logits, class_offset, num_classes)
    target = _check_target(target, rows, logits.device)
    w = _check_weight(weight, width, logits.device, "class of the slice")
    eps = check_unit_interval_option(label_smoothing, "label_smoothing")
    cap = check_softcap(softcap)
    options = (eps > 0.0, w is not None, cap, num_classes)
    stats = torch.zeros(rows, L.NSTAT, dtype=torch.float32, device=logits.device)
    index = torch.full((rows, 2), L.BIG, dtype=torch.int64, device=logits.device)
    if rows == 0 or width == 0:
        stats[:, L.M] = -math.inf  # the empty slice: the merge's neutral element
        return Partials(stats, index, options)
    bv, br = _blocks(width, rows, block_v, block_rows)
    _check_device(logits)
    mod = _mod()
    mod.ce_partial_kernel[(triton_cdiv(rows, br),)](
        logits, logits.stride(0), target, w if w is not None else stats, stats, index, rows, width, class_offset,
        cap or 1.0, BLOCK_R=br, BLOCK_V=bv, HAS_W=w is not None, SMOOTH=eps > 0.0, SOFTCAP=cap is not None,
        **_launch_options(bv, br))
    return Partials(stats, index, options)


def lift_partials(part, m, k, kpinf):
    r"""A slice's state re-expressed against the global ``(M, K, KPINF)``, so that summing is the merge.

    With ``m = max_r M_r``, ``k = min{K_r : M_r = m}`` and ``kpinf = min_r KPINF_r``
    (MAX and MIN all-reduces), each slice computes ``lift_partials`` and the
    merged state is the column-wise SUM of the lifted states (a SUM
    all-reduce), with ``M`` then set to ``m``:

    * ``S_OFF ← S_OFF·r + [K_r ≠ k]·r`` with ``r = e^{M_r − m}`` (the slice's own
      maximum term joins the off-argmax sum unless it is the global argmax);
    * ``D ← D + (sh − sh_r)·W`` (the shift moves from ``sh_r`` to ``sh``);
    * ``WOFF ← WOFF + [K_r ≠ k]·WK``, ``WK ← [K_r = k]·WK``, ``WKP ← [KPINF_r = kpinf]·WKP``;
    * every other column is already a sum; ``M`` is returned as 0.

    Shapes: ``part`` a :class:`Partials` of ``rows`` rows; ``m`` ``(rows,)``
    float32; ``k``, ``kpinf`` ``(rows,)`` int64.  Returns ``(rows, 15)``.

    >>> import torch
    >>> from crossentropy._kernels.triton import Partials, lift_partials
    >>> st = torch.zeros(1, 15); st[0, 0] = 1.0; st[0, 1] = 0.5      # M = 1, S_off = 0.5
    >>> p = Partials(st, torch.tensor([[3, 2**31 - 1]]), (False, False, None, 8))
    >>> lift_partials(p, torch.tensor([1.0]), torch.tensor([0]), torch.tensor([2**31 - 1]))[0, 1]
    tensor(1.5000)
    """
    s = part.stats.clone()
    mr = s[:, L.M]
    kr, kpr = part.index[:, L.K], part.index[:, L.KPINF]
    neg = mr == -math.inf
    sh = torch.where(m > -math.inf, m, torch.zeros_like(m))
    shr = torch.where(neg, torch.zeros_like(mr), mr)
    r = torch.where(neg, torch.zeros_like(mr), torch.exp(torch.where(neg, sh, mr) - sh))
    is_k = kr == k
    zero = torch.zeros_like(r)
    s[:, L.S_OFF] = s[:, L.S_OFF] * r + torch.where(is_k, zero, r)
    s[:, L.D] = s[:, L.D] + (sh - shr) * s[:, L.W]
    s[:, L.WOFF] = s[:, L.WOFF] + torch.where(is_k, zero, s[:, L.WK])
    s[:, L.WK] = torch.where(is_k, s[:, L.WK], zero)
    s[:, L.WKP] = torch.where(kpr == kpinf, s[:, L.WKP], zero)
    s[:, L.M] = 0.0
    return s


def merge_partials(parts: Sequence[Partials]) -> Partials:
    r"""Combine the states of disjoint column slices (in list order) into one state.

    The rule is the one an all-reduce applies: ``M`` by MAX, ``K`` by MIN over
    the slices attaining ``M`` (so ties keep the first column), ``KPINF`` by
    MIN, then the SUM of :func:`lift_partials`.  It is exact up to the
    rounding of those sums; a single state merges to itself unchanged.

    Shapes: every state ``(rows, 15)`` / ``(rows, 2)``; returns the same.

    >>> import math, torch
    >>> from crossentropy._kernels.triton import Partials, merge_partials
    >>> def state(m, s_off, k):
    ...     st = torch.zeros(1, 15); st[0, 0] = m; st[0, 1] = s_off
    ...     return Partials(st, torch.tensor([[k, 2**31 - 1]]), (False, False, None, 4))
    >>> # slice {0, 1} = [0, ln 0.5] and slice {2, 3} = [0, -inf]: M = 0, K = 0, S_off = 0.5 + 1 + 0
    >>> merged = merge_partials([state(0.0, 0.5, 0), state(0.0, 0.0, 2)])
    >>> merged.stats[0, :2].tolist(), merged.index[0].tolist()
    ([0.0, 1.5], [0, 2147483647])
    """
    parts = list(parts)
    if not parts:
        raise InvalidOptionError("merge_partials needs at least one Partials; got none")
    opts = parts[0].options
    for i, p in enumerate(parts):
        if not isinstance(p, Partials):
            raise InvalidDTypeError(f"parts[{i}] must be a Partials; got {type(p).__name__}")
        if p.options != opts:
            raise InvalidOptionError(f"parts[{i}] was computed with options {p.options}; parts[0] with {opts}")
        if p.stats.shape != parts[0].stats.shape:
            raise ShapeMismatchError(f"parts[{i}] has {p.stats.shape[0]} rows; parts[0] has {parts[0].stats.shape[0]}")
    ms = torch.stack([p.stats[:, L.M] for p in parts])
    m = ms.amax(0)
    ks = torch.stack([p.index[:, L.K] for p in parts])
    k = torch.where(ms == m, ks, torch.full_like(ks, L.BIG)).amin(0)
    kpinf = torch.stack([p.index[:, L.KPINF] for p in parts]).amin(0)
    total = lift_partials(parts[0], m, k, kpinf)
    for p in parts[1:]:
        total = total + lift_partials(p, m, k, kpinf)
    total[:, L.M] = m
    return Partials(total, torch.stack([k, kpinf], 1), opts)


def vocab_finish(logits, target, merged, /, *, class_offset, num_classes, weight=None, ignore_index=None,
                 label_smoothing=0.0, z_loss=0.0, softcap=None, grad_scale=None, grad_into=None, write_loss=True,
                 validate=True, block_v=None, block_rows=None):
    r"""Pass 2 over a column slice, from the merged state: loss, lse and the slice's gradient.

    The options must be those the partial states were computed with (checked:
    smoothing on/off, weights on/off, softcap, ``num_classes``).  Returns
    ``(loss, lse)`` (``(rows,)`` float32, the same on every slice; ``None, None``
    with ``write_loss=False``) and, with ``grad_scale``, writes the gradient of
    the slice's logits into ``grad_into`` (``logits`` itself for in place),
    exactly as :func:`chunk_cross_entropy` does for the whole row.

    Shapes: ``logits`` ``(rows, width)``; ``target`` ``(rows,)`` global class
    indices; ``merged`` a :class:`Partials` of ``rows`` rows; ``weight`` ``(width,)``.

    >>> import torch
    >>> from crossentropy._kernels.triton import Partials, vocab_finish
    >>> p = Partials(torch.zeros(2, 15), torch.zeros(2, 2, dtype=torch.int64), (True, False, None, 4))
    >>> vocab_finish(torch.zeros(2, 4), torch.tensor([0, 1]), p, class_offset=0, num_classes=4)
    Traceback (most recent call last):
    ...
    crossentropy._errors.InvalidOptionError: merged was computed with options (smoothing=True, weighted=False, softcap=None, num_classes=4); this call has (smoothing=False, weighted=False, softcap=None, num_classes=4)
    """
    rows, width = _split_checks(logits, class_offset, num_classes)
    target = _check_target(target, rows, logits.device)
    w = _check_weight(weight, width, logits.device, "class of the slice")
    eps, z, cap, ii, keep, eps_v = _options(label_smoothing, z_loss, softcap, ignore_index, num_classes)
    if not isinstance(merged, Partials):
        raise InvalidDTypeError(f"merged must be a Partials; got {type(merged).__name__}")
    want = (eps > 0.0, w is not None, cap, num_classes)
    if tuple(merged.options) != want:
        names = ("smoothing", "weighted", "softcap", "num_classes")
        fmt = lambda o: ", ".join(f"{n}={v}" for n, v in zip(names, o))  # noqa: E731
        raise InvalidOptionError(f"merged was computed with options ({fmt(merged.options)}); this call has ({fmt(want)})")
    if tuple(merged.stats.shape) != (rows, L.NSTAT) or tuple(merged.index.shape) != (rows, 2):
        raise ShapeMismatchError(f"merged must hold {rows} rows; got stats {tuple(merged.stats.shape)}")
    scale_t, scale_s, g = _grad_args(logits, grad_scale, grad_into, rows)
    loss = torch.empty(rows, dtype=torch.float32, device=logits.device)
    lse = torch.empty(rows, dtype=torch.float32, device=logits.device)
    if validate:
        _check_targets_in_range(target, num_classes, ii)
    if rows and (write_loss or (g is not None and width)):
        bv, br = _blocks(width, rows, block_v, block_rows)
        _check_device(logits)
        stats = merged.stats.to(torch.float32).contiguous()
        index = merged.index.to(torch.int64).contiguous()
        _mod().ce_finish_kernel[(triton_cdiv(rows, br),)](
            logits, logits.stride(0), g if g is not None else logits, (g if g is not None else logits).stride(0),
            target, w if w is not None else loss, stats, index, scale_t if scale_t is not None else loss, loss, lse,
            rows, width, class_offset, ii if ii is not None else 0, keep, eps_v, z, cap or 1.0, scale_s,
            BLOCK_R=br, BLOCK_V=bv, HAS_W=w is not None, HAS_IGNORE=ii is not None, SMOOTH=eps > 0.0,
            HAS_Z=z > 0.0, SOFTCAP=cap is not None, GRAD=g is not None, SCALE_VEC=scale_t is not None,
            WRITE_LOSS=bool(write_loss), **_launch_options(bv, br))
    return (loss, lse) if write_loss else (None, None)


# ---------------------------------------------------------------------------------------------
# plain cross_entropy on CUDA tensors
# ---------------------------------------------------------------------------------------------

def _runs_here(t):
    if t.device.type == "cpu":
        return _interpreting()
    if t.device.type != "cuda":
        return False
    try:
        _mod()
    except ImportError:
        return False  # no triton: the caller's fallback runs
    return True


def _grad_buffer(input, x2, grad_into):
    """Where the kernel writes the gradient: the logits themselves when ``grad_into`` is the
    input (in place), ``grad_into`` when it can be written directly, else a new buffer."""
    rows, C = x2.shape
    if grad_into is None:
        return torch.empty((rows, C), dtype=x2.dtype, device=x2.device)
    if not isinstance(grad_into, torch.Tensor) or tuple(grad_into.shape) != tuple(input.shape):
        raise ShapeMismatchError(f"grad_into must have the shape of input {tuple(input.shape)}; "
                                 f"got {tuple(getattr(grad_into, 'shape', ()))}")
    if grad_into.dtype != input.dtype:
        raise InvalidDTypeError(f"grad_into must have the dtype of input ({input.dtype}); got dtype {grad_into.dtype}")
    if grad_into.device != input.device:
        raise InvalidOptionError(f"grad_into must be on the input's device {input.device}; got {grad_into.device}")
    same = grad_into.data_ptr() == input.data_ptr() and grad_into.stride() == input.stride()
    if same and x2.data_ptr() == input.data_ptr() and x2.is_contiguous():
        return x2  # in place: the kernel reads each row before it writes it
    if grad_into.is_contiguous() and not same and not _overlap(grad_into, input):
        return grad_into.view(rows, C)
    return torch.empty((rows, C), dtype=x2.dtype, device=x2.device)  # copied into grad_into afterwards


def _overlap(a, b):
    lo, hi = a.data_ptr(), a.data_ptr() + a.numel() * a.element_size()
    lo2, hi2 = b.data_ptr(), b.data_ptr() + b.numel() * b.element_size()
    return a.numel() > 0 and b.numel() > 0 and lo < hi2 and lo2 < hi


def cross_entropy_cuda(input, target, /, *, axis=-1, weight=None, sample_weight=None, ignore_index=None,
                       label_smoothing=0.0, reduction="mean", z_loss=0.0, base=None, grad_output=None,
                       need_grad=True, grad_into=None):
    r"""``value_and_grad(cross_entropy, input, target, ...)`` for CUDA tensors, in one kernel launch.

    The options and the result are those of :func:`crossentropy.cross_entropy`
    with class-index targets and the classes on the last axis: the loss
    (reduced, in the input's dtype) and :math:`∂L/∂\,\mathrm{input}` (or the
    vector-Jacobian product with ``grad_output``), ``None`` for the gradient
    when ``need_grad=False``.  ``grad_into`` receives the gradient (``input``
    itself computes it in place).  The reduction, sample weights, base and
    ``grad_output`` are folded into the per-row gradient scale, so the
    kernel reads the logits twice (loss pass, gradient pass) and writes the
    gradient once.

    Returns ``NotImplemented`` (the caller then runs the reference path) for
    anything else: tensors that are not concrete CUDA tensors, float64,
    probability targets, a class axis other than the last, or arguments the
    reference would reject (which it then reports).

    Shapes: ``input`` ``(..., C)``; ``target`` ``input.shape[:-1]``; ``weight``
    ``(C,)``; ``sample_weight`` broadcast to ``input.shape[:-1]``.

    >>> import torch
    >>> from crossentropy._kernels.triton import cross_entropy_cuda
    >>> cross_entropy_cuda(torch.zeros(2, 3, dtype=torch.float64), torch.tensor([0, 1])) is NotImplemented
    True
    """
    if not (type(input) is torch.Tensor and type(target) is torch.Tensor):
        return NotImplemented
    if input.dtype not in kernel_dtypes or target.dtype.is_floating_point or target.dtype == torch.bool \
            or target.dtype.is_complex or input.ndim < 1:
        return NotImplemented
    if not (concrete(input) and concrete(target)) or target.device != input.device or not _runs_here(input):
        return NotImplemented
    try:
        ax = normalize_axis(axis, input.ndim)
    except InvalidOptionError:
        return NotImplemented
    if ax != input.ndim - 1 or tuple(target.shape) != tuple(input.shape[:-1]):
        return NotImplemented
    extra = [t for t in (weight, sample_weight, grad_output, grad_into) if isinstance(t, torch.Tensor)]
    if any(t.device != input.device or not concrete(t) for t in extra):
        return NotImplemented
    if weight is not None and not (isinstance(weight, torch.Tensor) and tuple(weight.shape) == (input.shape[-1],)
                                   and not weight.dtype.is_complex):
        return NotImplemented
    check_reduction(reduction)
    eps = check_unit_interval_option(label_smoothing, "label_smoothing")
    z = check_nonnegative_option(z_loss, "z_loss")
    log_base = log_of_base(base)
    ii = ignore_index
    if ii is not None and (isinstance(ii, bool) or not isinstance(ii, int)):
        return NotImplemented
    C = int(input.shape[-1])
    loss_shape = tuple(input.shape[:-1])
    rows = math.prod(loss_shape)
    if C == 0:
        return NotImplemented
    check_index_target(namespace(target), target, C, ii, loss_shape)
    dev = input.device
    dt = input.dtype
    with torch.no_grad():
        x2 = input.detach().reshape(rows, C)
        if C > 1 and x2.stride(1) != 1:
            x2 = x2.contiguous()
        y = target.reshape(rows)
        valid = (y != ii) if ii is not None else None
        # as the reference: weights rounded to the input's dtype first, then used in float32/float64
        w = weight.to(dt).to(torch.float32) if weight is not None else None
        sw = None
        if sample_weight is not None:
            swt = sample_weight if isinstance(sample_weight, torch.Tensor) else torch.as_tensor(sample_weight, device=dev)
            if swt.dtype.is_complex or swt.dtype == torch.bool:
                return NotImplemented
            try:
                sw = torch.broadcast_to(swt.to(dt), loss_shape).reshape(rows).to(torch.float64)
            except RuntimeError:
                return NotImplemented
        go = None
        if grad_output is not None and need_grad:
            got = grad_output if isinstance(grad_output, torch.Tensor) else torch.as_tensor(grad_output, device=dev)
            target_shape = loss_shape if reduction == "none" else ()
            try:
                go = torch.broadcast_to(got.to(dt), target_shape).reshape(-1).to(torch.float64)
            except RuntimeError:
                return NotImplemented
        # normaliser weights and divisor, as _reduction.denominators defines them
        norm = None
        if w is not None:
            norm = w[torch.where(valid, y, 0) if valid is not None else y].to(torch.float64)
        if sw is not None:
            norm = sw if norm is None else norm * sw
        div = None
        if reduction in ("mean", "sum_over_batch_size"):
            count = (valid.sum() if valid is not None else torch.tensor(rows, device=dev)).to(torch.float64)
            if reduction == "mean" and norm is not None:
                denom = (torch.where(valid, norm, 0.0) if valid is not None else norm).sum()
            else:
                denom = count
            div = torch.where(denom == 0, torch.ones_like(denom), denom)
        scale = None
        if need_grad:
            scale = torch.ones(rows, dtype=torch.float64, device=dev)
            if sw is not None:
                scale = scale * sw
            if log_base is not None:
                scale = scale / log_base
            if div is not None:
                scale = scale / div
            if go is not None:
                scale = scale * go
            scale = scale.to(torch.float32)
            out = _grad_buffer(input, x2, grad_into)
        loss_rows, _ = chunk_cross_entropy(x2, y, weight=w, ignore_index=ii, label_smoothing=eps, z_loss=z,
                                           grad_scale=scale, grad_into=out if need_grad else None, validate=False)
        l64 = loss_rows.to(torch.float64)
        if sw is not None:
            l64 = l64 * sw
        if log_base is not None:
            l64 = l64 / log_base
        if reduction == "none":
            value = l64.reshape(loss_shape).to(dt)
        else:
            total = l64.sum()
            if reduction == "mean":
                total = total / denom
            elif reduction == "sum_over_batch_size":
                total = torch.where(denom > 0, total / div, torch.zeros_like(total))
            value = total.to(dt)
        if not need_grad:
            return value, None
        grad = out.reshape(input.shape)
        if grad_into is not None and grad.data_ptr() != grad_into.data_ptr():
            grad_into.copy_(grad)
            grad = grad_into
        return value, grad
