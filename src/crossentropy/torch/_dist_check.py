"""Validation of the vocabulary-parallel losses: local checks, then one handshake that every rank agrees on.

A check that fails on one rank only must not leave the other ranks waiting in
a collective for ever.  So with ``validate=True`` every rank first runs its
local checks (shapes, dtypes, options) *without raising*, then all ranks
exchange one small int64 row each (:data:`FIELDS`: the local error, the shard
width, the row count, the dtype, a hash of the options, checksums of the
replicated inputs).  From that table every rank evaluates the same
cross-rank checks and raises the same error (a rank's own local error is
raised there with its own traceback; the others raise its class with its
message, fetched in a second exchange that happens only on this error path).
The class-index range check needs the global vocabulary size, so it comes
after the handshake; the targets are then known to be the same on every
rank, so every rank finds the same bad entry.

With ``validate=False`` there is no handshake: local errors raise at once
(the other ranks would then wait), the shard widths come from
``vocab_sizes`` and the targets are not range-checked (a counted row whose
target is outside ``[0, V)`` gets a NaN loss and NaN gradients).
"""

from __future__ import annotations

import hashlib
import math
import numbers
from typing import Any

import torch

from .._backend import namespace
from .._errors import (
    CrossEntropyError,
    InvalidDTypeError,
    InvalidOptionError,
    ProbabilityRangeError,
    ShapeMismatchError,
    TargetOutOfRangeError,
)
from .._validation import check_index_target, check_nonnegative_option, check_softcap, check_unit_interval_option
from ._dist_math import Layout

__all__ = ["Plan", "plan_logits", "plan_linear", "DEFAULT_MEMORY_BUDGET"]

DEFAULT_MEMORY_BUDGET = 64 << 20  # bytes of one chunk of logits (as crossentropy.linear)
REDUCTIONS = ("none", "sum", "mean")
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_HALF = (torch.float16, torch.bfloat16)
_DTYPE_CODE = {d: i + 1 for i, d in enumerate(_FLOATS)}
_ERROR_CODE: dict[type, int] = {InvalidOptionError: 1, ShapeMismatchError: 2, TargetOutOfRangeError: 3, ProbabilityRangeError: 4,
               InvalidDTypeError: 5}
_CODE_ERROR = {v: k for k, v in _ERROR_CODE.items()}
# The handshake row: one int64 per field.
FIELDS = ("magic", "error", "width", "rows", "dim", "dtype", "options", "target", "sample_weight", "hidden",
          "weight_len")
_MAGIC = {"logits": 0x5643_4531, "linear": 0x5643_4532}  # which function the rank called
_MSG_BYTES = 2048


class Plan:
    """Everything one call needs, validated: options, shapes, the vocabulary layout, flattened inputs."""

    __slots__ = ("fname", "kind", "comm", "shape", "N", "width", "D", "dtype", "cdtype", "reduction",
                 "ignore_index", "eps", "z", "softcap", "num_items", "budget", "rows", "sizes", "V", "offset",
                 "layout", "y", "valid", "w_local", "weight_len", "sw", "reduce_hidden_grad", "validate")

    fname: str
    kind: str  # "logits" or "linear"
    comm: Any  # a ._dist_comm.Comm
    shape: tuple[int, ...]  # the leading (row) shape
    N: int
    width: int  # this rank's vocabulary entries
    D: int
    dtype: Any  # torch.dtype
    cdtype: Any  # the compute dtype
    reduction: str
    ignore_index: int | None
    eps: float
    z: float
    softcap: float | None
    num_items: float | None
    budget: int
    rows: int
    sizes: tuple[int, ...] | None
    V: int
    offset: int
    layout: Layout
    y: Any  # flattened targets (a tensor)
    valid: Any
    w_local: Any
    weight_len: int
    sw: Any
    reduce_hidden_grad: bool
    validate: bool

    def chunks(self):
        """Row ranges ``[i0, i1)`` of the chunks (the same count on every rank: sized by the widest shard)."""
        return [(i0, min(self.N, i0 + self.rows)) for i0 in range(0, self.N, self.rows)] if self.N else []


# -- local checks (raise CrossEntropyError) ------------------------------------------------------

def _tensor(x, name, fname):
    if not isinstance(x, torch.Tensor):
        raise InvalidDTypeError(f"{fname}: {name} must be a torch.Tensor; got {type(x).__name__}")
    return x


def _floating(x, name, fname):
    _tensor(x, name, fname)
    if x.dtype not in _FLOATS:
        raise InvalidDTypeError(f"{fname}: {name} must be a floating-point tensor (float16, bfloat16, float32 or "
                                f"float64); got dtype {x.dtype}")
    return x


def _same_device(x, like, name, like_name, fname):
    if x is not None and x.device != like.device:
        raise InvalidOptionError(f"{fname}: {name} must be on the device of {like_name} ({like.device}); "
                                 f"got {x.device}")


def _options(p: Plan, *, reduction, ignore_index, label_smoothing, z_loss, softcap, num_items_in_batch,
             memory_budget, vocab_sizes, validate):
    fname = p.fname
    if reduction not in REDUCTIONS:
        raise InvalidOptionError(f"{fname}: reduction must be one of 'none', 'sum', 'mean'; got {reduction!r}")
    p.reduction = reduction
    if ignore_index is not None and (not isinstance(ignore_index, numbers.Integral) or isinstance(ignore_index, bool)):
        raise InvalidOptionError(f"{fname}: ignore_index must be an int or None; got {ignore_index!r}")
    p.ignore_index = None if ignore_index is None else int(ignore_index)
    p.eps = check_unit_interval_option(label_smoothing, "label_smoothing")
    p.z = check_nonnegative_option(z_loss, "z_loss")
    p.softcap = check_softcap(softcap)
    p.num_items = None
    if num_items_in_batch is not None:
        if reduction != "mean":
            raise InvalidOptionError(
                f"{fname}: num_items_in_batch divides the summed loss (a global mean); it needs reduction='mean', "
                f"got reduction={reduction!r}")
        n = float(num_items_in_batch)
        if not (n > 0 and math.isfinite(n)):
            raise InvalidOptionError(f"{fname}: num_items_in_batch must be a positive number; "
                                     f"got {num_items_in_batch!r}")
        p.num_items = n
    if memory_budget is None:
        p.budget = DEFAULT_MEMORY_BUDGET
    else:
        if not isinstance(memory_budget, numbers.Integral) or isinstance(memory_budget, bool) or memory_budget <= 0:
            raise InvalidOptionError(f"{fname}: memory_budget must be a positive number of bytes; "
                                     f"got {memory_budget!r}")
        p.budget = int(memory_budget)
    if not isinstance(validate, bool):
        raise InvalidOptionError(f"{fname}: validate must be True or False; got {validate!r}")
    p.validate = validate
    p.sizes = None
    if vocab_sizes is not None:
        try:
            sizes = tuple(int(v) for v in vocab_sizes)
            ok = all(int(v) == v for v in vocab_sizes)
        except (TypeError, ValueError):
            ok = False
        if not ok or any(v < 0 for v in sizes):
            raise InvalidOptionError(f"{fname}: vocab_sizes must be a sequence of non-negative ints, one per rank; "
                                     f"got {vocab_sizes!r}")
        if len(sizes) != p.comm.size:
            raise ShapeMismatchError(f"{fname}: vocab_sizes has {len(sizes)} entries for a group of "
                                     f"{p.comm.size} ranks")
        if sizes[p.comm.rank] != p.width:
            raise ShapeMismatchError(
                f"{fname}: vocab_sizes[{p.comm.rank}] = {sizes[p.comm.rank]} but this rank's shard has "
                f"{p.width} vocabulary entries")
        p.sizes = sizes
    elif not validate:
        raise InvalidOptionError(f"{fname}: validate=False needs vocab_sizes (the shard widths of every rank, "
                                 "e.g. from gather_vocab_sizes()): without the handshake nothing else tells them")


def _target(p: Plan, target, like, lead_shape, lead_name):
    fname = p.fname
    _tensor(target, "target", fname)
    if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        raise InvalidDTypeError(f"{fname}: target must hold integer class indices; got dtype {target.dtype}")
    _same_device(target, like, "target", lead_name, fname)
    if tuple(target.shape) != tuple(lead_shape):
        raise ShapeMismatchError(
            f"{fname}: target must have the shape of {lead_name} without its last dimension, "
            f"{tuple(lead_shape)}; got {tuple(target.shape)}")
    p.shape = tuple(int(s) for s in lead_shape)
    p.N = math.prod(p.shape)
    p.y = target.reshape(-1).long()


def _class_weight(p: Plan, w, name, like):
    if w is None:
        p.w_local, p.weight_len = None, -1
        return
    fname = p.fname
    _floating(w, name, fname)
    if w.dtype != like.dtype:
        raise InvalidDTypeError(f"{fname}: {name} must have the dtype of the logits ({like.dtype}), as PyTorch "
                                f"wants with class-index targets; got {w.dtype}")
    _same_device(w, like, name, "the logits", fname)
    if w.ndim != 1:
        raise ShapeMismatchError(f"{fname}: {name} must be 1-D, the full (V,) class weights or this rank's "
                                 f"({p.width},) slice of them; got shape {tuple(w.shape)}")
    p.w_local, p.weight_len = w, int(w.shape[0])  # sliced once V is known


def _sample_weight(p: Plan, sw, like):
    if sw is None:
        p.sw = None
        return
    fname = p.fname
    _floating(sw, "sample_weight", fname)
    _same_device(sw, like, "sample_weight", "the logits", fname)
    try:
        b = torch.broadcast_to(sw, p.shape)
    except RuntimeError as e:
        raise ShapeMismatchError(f"{fname}: sample_weight of shape {tuple(sw.shape)} does not broadcast to the "
                                 f"per-row loss shape {p.shape}") from e
    p.sw = b.reshape(-1).to(p.cdtype)


def _dtype(p: Plan, x):
    p.dtype = x.dtype
    p.cdtype = torch.float32 if x.dtype in _HALF else x.dtype  # half precision computes in float32


# -- the handshake ------------------------------------------------------------------------------

_U = 2654435761  # Knuth's multiplicative hash constant: position weights for the checksums


def _weights(n, device):
    i = torch.arange(n, dtype=torch.int64, device=device)
    return (i * _U) % (1 << 32) + 1


def _checksum(t):
    """An exact, order-independent int64 checksum of a tensor's bits (rows weighted by position).

    Integer sums wrap modulo 2⁶⁴, so the result does not depend on how the
    reduction is split over threads: identical tensors give identical sums on
    every rank.  (A checksum: it catches different data, not every difference.)
    """
    if t is None:
        return 0
    if t.numel() == 0:
        return 1
    if t.is_floating_point():
        t = t.view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])
    t = t.reshape(t.shape[0], -1) if t.ndim > 1 else t.reshape(-1, 1)
    rows = t.sum(dim=1, dtype=torch.int64)
    return int((rows * _weights(rows.shape[0], rows.device)).sum())


def _options_hash(p: Plan, extra) -> int:
    key = repr((p.kind, p.reduction, p.ignore_index, p.eps, p.z, p.softcap, p.num_items, p.budget, p.sizes,
                p.w_local is not None, p.sw is not None, p.reduce_hidden_grad, extra))
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little", signed=True)


def _raise_agreed(comm, table, own_error, device):
    """Some rank failed its local checks: every rank raises (the failing rank its own error)."""
    errs = table[:, FIELDS.index("error")].tolist()
    msg = b"" if own_error is None else str(own_error).encode()[:_MSG_BYTES]
    buf = torch.zeros(_MSG_BYTES, dtype=torch.uint8, device=device)
    if msg:
        buf[:len(msg)] = torch.frombuffer(bytearray(msg), dtype=torch.uint8).to(device)
    msgs = comm.gather(buf)
    if own_error is not None:
        raise own_error
    q = next(i for i, e in enumerate(errs) if e)
    text = bytes(msgs[q].cpu().tolist()).rstrip(b"\0").decode(errors="replace")
    raise _CODE_ERROR.get(errs[q], InvalidOptionError)(f"{text} (raised by rank {q}; every rank of the group "
                                                        "raises)")


def _agree(p: Plan, row, own_error, device):
    """The handshake: gather every rank's row, raise the agreed error or fill in the layout."""
    comm = p.comm
    table = comm.gather(torch.tensor(row, dtype=torch.int64, device=device)).cpu()
    col = {f: table[:, i].tolist() for i, f in enumerate(FIELDS)}
    if any(col["error"]):
        _raise_agreed(comm, table, own_error, device)
    fname = p.fname

    def differ(field):
        vals = col[field]
        return None if all(v == vals[0] for v in vals) else vals

    if differ("magic"):
        raise InvalidOptionError(f"{fname}: the ranks of the group called different functions "
                                 "(vocab_parallel_cross_entropy and vocab_parallel_linear_cross_entropy)")
    if (v := differ("rows")):
        raise ShapeMismatchError(f"{fname}: every rank must hold the same rows; the number of rows per rank is {v}")
    if (v := differ("dim")):
        raise ShapeMismatchError(f"{fname}: hidden's last dimension differs between ranks: {v}")
    if (v := differ("dtype")):
        names = [str(_FLOATS[c - 1]) if c else "?" for c in v]
        raise InvalidDTypeError(f"{fname}: the ranks' logits / weights have different dtypes: {names}")
    if differ("options"):
        raise InvalidOptionError(
            f"{fname}: the options differ between ranks (reduction, ignore_index, label_smoothing, z_loss, softcap, "
            "num_items_in_batch, memory_budget, vocab_sizes, which of weight / sample_weight / bias are given, "
            f"reduce_hidden_grad); on rank {comm.rank}: reduction={p.reduction!r}, ignore_index={p.ignore_index}, "
            f"label_smoothing={p.eps}, z_loss={p.z}, softcap={p.softcap}, num_items_in_batch={p.num_items}, "
            f"memory_budget={p.budget}")
    for field, what in (("target", "target"), ("sample_weight", "sample_weight"), ("hidden", "hidden")):
        if differ(field):
            raise ShapeMismatchError(f"{fname}: {what} must be the same on every rank of the group; the checksums of "
                                     f"the ranks' {what} differ")
    widths = tuple(col["width"])
    if p.sizes is not None and p.sizes != widths:
        raise ShapeMismatchError(f"{fname}: vocab_sizes={list(p.sizes)} but the ranks' shards have "
                                 f"{list(widths)} vocabulary entries")
    return widths, col["weight_len"]


def _layout(p: Plan, widths, weight_lens, weight_name):
    fname = p.fname
    p.sizes = tuple(widths)
    p.V = sum(p.sizes)
    if p.V == 0:
        raise ShapeMismatchError(f"{fname}: the vocabulary is empty (every rank's shard has 0 entries)")
    p.offset = sum(p.sizes[:p.comm.rank])
    for q, (L, Vq) in enumerate(zip(weight_lens, p.sizes)):
        if L != -1 and L not in (Vq, p.V):
            raise ShapeMismatchError(
                f"{fname}: {weight_name} on rank {q} has shape ({L},); expected the full ({p.V},) class weights or "
                f"that rank's ({Vq},) slice")
    if p.w_local is not None and p.weight_len == p.V and p.V != p.width:
        p.w_local = p.w_local[p.offset:p.offset + p.width]
    if p.w_local is not None:
        p.w_local = p.w_local.to(p.cdtype)
    item = torch.empty((), dtype=p.cdtype).element_size()
    widest = max(p.sizes)
    if p.budget < widest * item:
        raise InvalidOptionError(
            f"{fname}: memory_budget={p.budget} bytes is too small for one row of logits of the widest shard "
            f"({widest} entries × {item} bytes = {widest * item} bytes)")
    # Every rank cuts the same chunks (the fused loss makes collectives per chunk): sized by the widest shard.
    p.rows = max(1, p.budget // (max(1, widest) * item))
    p.valid = None if p.ignore_index is None else (p.y != p.ignore_index)
    p.layout = Layout(V=p.V, offset=p.offset, width=p.width, eps=p.eps, z=p.z, softcap=p.softcap,
                      weighted=p.w_local is not None, ignore_index=p.ignore_index)


def _finish(p: Plan, local, row_extra, weight_name, device):
    """Run the local checks, then the handshake (validate=True), then the checks that need V."""
    own = None
    try:
        local()
    except CrossEntropyError as e:
        if not p.validate:
            raise
        own = e
    if p.validate:
        ok = own is None
        row = [_MAGIC[p.kind], 0 if ok else _ERROR_CODE.get(type(own), 1)]
        row += [p.width, p.N, row_extra.get("dim", lambda: 0)(), _DTYPE_CODE[p.dtype]] if ok else [0] * 4
        row += [_options_hash(p, row_extra.get("hash")), _checksum(p.y), _checksum(p.sw),
                row_extra.get("hidden", lambda: 0)(), p.weight_len] if ok else [0] * 5
        widths, weight_lens = _agree(p, row, own, device)
    else:
        widths, weight_lens = p.sizes, [p.weight_len if q == p.comm.rank else -1 for q in range(p.comm.size)]
    _layout(p, widths, weight_lens, weight_name)
    if p.validate:
        # Same targets on every rank (checked above): every rank finds the same bad entry.
        check_index_target(namespace(p.y), p.y.reshape(p.shape), p.V, p.ignore_index, p.shape)
    return p


def _new(fname, kind, comm, reduce_hidden_grad=False):
    p = Plan()
    p.fname, p.kind, p.comm = fname, kind, comm
    p.reduce_hidden_grad = reduce_hidden_grad
    p.width = p.D = 0
    p.N, p.shape, p.y, p.sw, p.w_local, p.weight_len = 0, (), None, None, None, -1
    p.sizes, p.validate, p.dtype = None, True, None
    return p


def plan_logits(comm, logits, target, *, weight, sample_weight, options):
    """Validate a call of ``vocab_parallel_cross_entropy``."""
    fname = "vocab_parallel_cross_entropy"
    p = _new(fname, "logits", comm)
    p.validate = options.get("validate", True)
    device = comm.control_device(logits if isinstance(logits, torch.Tensor) else None)

    def local():
        _floating(logits, "logits_shard", fname)
        if logits.ndim < 1:
            raise ShapeMismatchError(f"{fname}: logits_shard must have shape (..., V_r), the vocabulary last; "
                                     f"got {tuple(logits.shape)}")
        _dtype(p, logits)
        p.width = int(logits.shape[-1])
        _options(p, **options)
        _target(p, target, logits, logits.shape[:-1], "logits_shard")
        _class_weight(p, weight, "weight", logits)
        _sample_weight(p, sample_weight, logits)

    return _finish(p, local, {}, "weight", device)


def plan_linear(comm, hidden, weight, target, *, bias, class_weight, sample_weight, reduce_hidden_grad, options):
    """Validate a call of ``vocab_parallel_linear_cross_entropy``."""
    fname = "vocab_parallel_linear_cross_entropy"
    p = _new(fname, "linear", comm, bool(reduce_hidden_grad))
    p.validate = options.get("validate", True)
    device = comm.control_device(hidden if isinstance(hidden, torch.Tensor) else None)

    def local():
        if not isinstance(reduce_hidden_grad, bool):
            raise InvalidOptionError(f"{fname}: reduce_hidden_grad must be True or False; got {reduce_hidden_grad!r}")
        _floating(hidden, "hidden", fname)
        _floating(weight, "weight_shard", fname)
        if hidden.ndim < 1:
            raise ShapeMismatchError(f"{fname}: hidden must have shape (..., D); got {tuple(hidden.shape)}")
        if weight.ndim != 2:
            raise ShapeMismatchError(f"{fname}: weight_shard must have shape (V_r, D); got {tuple(weight.shape)}")
        p.width, p.D = (int(s) for s in weight.shape)
        if int(hidden.shape[-1]) != p.D:
            raise ShapeMismatchError(
                f"{fname}: hidden's last dimension must equal weight_shard's second (D = {p.D}); got hidden "
                f"{tuple(hidden.shape)} and weight_shard {tuple(weight.shape)}")
        if hidden.dtype != weight.dtype:
            raise InvalidDTypeError(f"{fname}: hidden and weight_shard must have one dtype; got {hidden.dtype} and "
                                    f"{weight.dtype}")
        _same_device(weight, hidden, "weight_shard", "hidden", fname)
        if bias is not None:
            _floating(bias, "bias_shard", fname)
            if tuple(bias.shape) != (p.width,):
                raise ShapeMismatchError(f"{fname}: bias_shard must have shape ({p.width},), one entry per row of "
                                         f"weight_shard; got {tuple(bias.shape)}")
            if bias.dtype != weight.dtype:
                raise InvalidDTypeError(f"{fname}: bias_shard must have the dtype of weight_shard ({weight.dtype}); "
                                        f"got {bias.dtype}")
            _same_device(bias, hidden, "bias_shard", "hidden", fname)
        _dtype(p, hidden)
        _options(p, **options)
        _target(p, target, hidden, hidden.shape[:-1], "hidden")
        _class_weight(p, class_weight, "class_weight", hidden)
        _sample_weight(p, sample_weight, hidden)

    extra = {"dim": lambda: p.D, "hash": bias is not None, "hidden": lambda: _checksum(hidden.reshape(p.N, p.D))}
    return _finish(p, local, extra, "class_weight", device)
