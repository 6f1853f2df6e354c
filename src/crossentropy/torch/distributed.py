"""Vocabulary-parallel cross-entropy on ``torch.distributed`` (tensor parallelism over the vocabulary).

When the LM head no longer fits on one device, its weight is split by rows
(vocabulary entries) over the ranks of a tensor-parallel group, as
Megatron-LM does: rank ``r`` holds the contiguous columns
``[offset_r, offset_r + V_r)`` of the logits, in rank order; the slices may
be uneven (``V_r`` may differ, even be 0).  The functions here compute the
cross-entropy of the *full* vocabulary from the shards, with O(N)
communication per rank, and return the same loss on every rank:

* :func:`vocab_parallel_cross_entropy` — from each rank's logits shard
  ``(..., V_r)``; differentiable w.r.t. it;
* :func:`vocab_parallel_linear_cross_entropy` — fused with the LM head
  ``z = hidden @ weight_shardᵀ + bias_shard``, in chunks of rows, so that no
  rank ever holds ``N × V_r`` logits; differentiable w.r.t. ``hidden``,
  ``weight_shard`` and ``bias_shard``.

Options are those of :func:`crossentropy.cross_entropy` with PyTorch's
names: ``ignore_index`` (default ``-100``), ``label_smoothing`` over the
*global* vocabulary ``V = Σ V_r``, class weights, ``sample_weight``,
``reduction`` (``'none' | 'sum' | 'mean'``), ``z_loss``, ``softcap`` and
``num_items_in_batch`` (a global normaliser for ``'mean'``).

Exactness is the library's: the values and gradients equal the
single-process ``crossentropy.cross_entropy`` on the gathered logits (and
``crossentropy.linear_cross_entropy``) up to the order of the row sums —
within 1e-12 relative in float64, for every option and process count
(``tests/distributed``), and a confident correct prediction keeps a loss of
1e-30 (float32) instead of rounding it to 0.

Communication per call (``docs/distributed.md`` has the byte counts): a
handshake all-gather of 11 int64 per rank (``validate=True``, the default;
it makes every rank raise the same error instead of hanging), an all-reduce
MAX of ``N`` numbers and an all-reduce SUM of ``N × k`` numbers (``k`` = 3,
4 or 7 with the options), for the fused loss per chunk of rows; no
collective in the logits loss's backward; one all-reduce of ``∂hidden``
(``N × D``) in the fused loss's backward unless ``reduce_hidden_grad=False``.

The same code runs with ``gloo`` (CPU tensors, tested here with 2, 3 and 4
processes) and ``nccl`` (CUDA tensors; not run or measured in this project,
which has no GPU).  Importing this module imports ``torch`` but does not
initialise anything; the functions need an initialised process group.

>>> import torch, torch.distributed as dist
>>> from crossentropy.torch.distributed import vocab_parallel_cross_entropy
>>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)  # a group of one, here
>>> x = torch.tensor([[2.0, 1.0, -1.0], [0.5, 2.5, 0.0]], requires_grad=True)
>>> loss = vocab_parallel_cross_entropy(x, torch.tensor([0, 1]))
>>> loss.backward()
>>> print(loss.detach(), torch.allclose(x.grad, torch.func.grad(
...     lambda z: torch.nn.functional.cross_entropy(z, torch.tensor([0, 1])))(x.detach())))
tensor(0.2729) True
>>> dist.destroy_process_group()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from .._errors import InvalidOptionError
from ._dist_autograd import LinearCE, LogitsCE
from ._dist_check import DEFAULT_MEMORY_BUDGET, plan_linear, plan_logits
from ._dist_comm import Comm

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_linear_cross_entropy", "gather_vocab_sizes",
           "DEFAULT_MEMORY_BUDGET"]


def _plain_call(fname: str, *tensors: torch.Tensor | None, names: Sequence[str] = ()) -> None:
    """Refuse what this function cannot do, before any collective."""
    if torch._C._are_functorch_transforms_active():
        raise InvalidOptionError(f"{fname} cannot run under torch.func transforms (grad, vmap, jvp, ...): each "
                                 "call makes collectives over the process group; use backward()")
    if torch.is_grad_enabled():
        for t, name in zip(tensors, names):
            if isinstance(t, torch.Tensor) and t.requires_grad:
                raise InvalidOptionError(f"{fname} has no derivative with respect to {name} (as PyTorch's "
                                         f"cross_entropy has none for its weight); detach it")


def vocab_parallel_cross_entropy(logits_shard: torch.Tensor, target: torch.Tensor, /, *,
                                 group: ProcessGroup | None = None, vocab_sizes: Sequence[int] | None = None,
                                 weight: torch.Tensor | None = None,
                                 sample_weight: torch.Tensor | None = None, ignore_index: int | None = -100,
                                 label_smoothing: float = 0.0, reduction: str = "mean", z_loss: float = 0.0,
                                 softcap: float | None = None, num_items_in_batch: float | None = None,
                                 memory_budget: int | None = None, validate: bool = True) -> torch.Tensor:
    r"""Cross-entropy over a vocabulary whose logits are split over the ranks of ``group``.

    .. math::
        \ell_i = -\sum_{c<V} w_c\, q_{ic} \log \frac{e^{x'_{ic}}}{\sum_{j<V} e^{x'_{ij}}}
                 + z\,\Big(\log \sum_{j<V} e^{x'_{ij}}\Big)^2,
        \qquad q = (1-ε)\,\mathrm{onehot}(y) + ε/V,\quad x' = s\tanh(x/s)

    where rank ``r`` holds the columns ``[offset_r, offset_r + V_r)`` of
    ``x`` (in rank order) and ``V = Σ_r V_r`` is the global vocabulary; the
    reduction is :func:`crossentropy.cross_entropy`'s (``'mean'`` divides by
    ``Σ w_{y_i}·sample_weight_i`` over counted rows, or by
    ``num_items_in_batch``).  Every rank gets the same loss; ``backward()``
    gives each rank the gradient of its own shard.

    Arguments (every rank passes the same ones, except the shards):

    ``logits_shard``
        ``(..., V_r)``, floating (half precision is computed in float32).
    ``target``
        integer ``(...)``: *global* class indices in ``[0, V)``, the same on
        every rank, or ``ignore_index``.
    ``group``
        the process group of the vocabulary split (default: the world).
    ``vocab_sizes``
        every rank's ``V_r``; by default they come from the handshake.
    ``weight``
        class weights: the full ``(V,)`` vector *or* this rank's ``(V_r,)``
        slice of it (each rank may choose); the logits' dtype.  Not
        differentiable.
    ``sample_weight``
        per-row weights broadcastable to ``target``'s shape, the same on
        every rank.
    ``memory_budget``
        bytes of logits processed at once (default 64 MiB): bounds the
        temporaries, not the result.
    ``validate``
        ``True``: a handshake all-gather checks that the ranks agree (shard
        widths, rows, dtypes, options, checksums of ``target`` and
        ``sample_weight``) and that the targets are in range, and makes every
        rank raise the same error.  ``False`` skips it (and the targets'
        range check, which reads values): ``vocab_sizes`` is then required,
        and a counted row whose target is outside ``[0, V)`` gets a NaN loss.

    Communication: ``validate`` adds one all-gather of 11 int64 per rank;
    then an all-reduce MAX of ``N`` and an all-reduce SUM of ``N × k``
    numbers in the compute dtype, ``k = 3 + [weight] + [ε > 0]·(1 + 2·[weight])``.
    The backward makes no collective.  Second derivatives and forward-mode AD
    raise :class:`~crossentropy._errors.InvalidOptionError`.

    >>> import torch, torch.distributed as dist
    >>> from crossentropy.torch.distributed import vocab_parallel_cross_entropy
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> x = torch.tensor([[30.0, -30.0, -30.0]])       # a confident, correct prediction
    >>> print(f"{vocab_parallel_cross_entropy(x, torch.tensor([0])).item():.4e}")   # 2e⁻⁶⁰, not rounded to 0
    1.7513e-26
    >>> dist.destroy_process_group()
    """
    return _call(_logits_loss, "vocab_parallel_cross_entropy", group, logits_shard, target, weight=weight,
                 sample_weight=sample_weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                 reduction=reduction, z_loss=z_loss, softcap=softcap, num_items_in_batch=num_items_in_batch,
                 memory_budget=memory_budget, vocab_sizes=vocab_sizes, validate=validate)


_EAGER: dict[str, Callable[..., Any]] = {}


def _call(fn: Callable[..., torch.Tensor], fname: str, group: ProcessGroup | None, *args: Any,
          **kwargs: Any) -> torch.Tensor:
    """``fn(comm, *args, **kwargs)``, run eagerly even inside ``torch.compile``.

    The losses read values (validation) and make collectives: under Dynamo
    they are one graph break, run as in eager mode.  The
    ``torch.compiler.disable`` wrapper is made on first use (it imports
    ``torch._dynamo``, which importing this module must not).
    """
    if torch.compiler.is_compiling():
        eager = _EAGER.get("call")
        if eager is None:
            eager = _EAGER["call"] = torch.compiler.disable(_call, recursive=True)
        return eager(fn, fname, group, *args, **kwargs)
    return fn(Comm.of(group, fname), *args, **kwargs)


def _logits_loss(comm: Comm, logits_shard: torch.Tensor, target: torch.Tensor, *, weight: torch.Tensor | None,
                 sample_weight: torch.Tensor | None, **options: Any) -> torch.Tensor:
    """:func:`vocab_parallel_cross_entropy` over ``comm`` (the tests pass one made of threads)."""
    _plain_call("vocab_parallel_cross_entropy", weight, sample_weight, names=("weight", "sample_weight"))
    p = plan_logits(comm, logits_shard, target, weight=weight, sample_weight=sample_weight, options=options)
    return LogitsCE.apply(logits_shard, p)


def vocab_parallel_linear_cross_entropy(hidden: torch.Tensor, weight_shard: torch.Tensor, target: torch.Tensor, /, *,
                                        bias_shard: torch.Tensor | None = None, group: ProcessGroup | None = None,
                                        vocab_sizes: Sequence[int] | None = None,
                                        class_weight: torch.Tensor | None = None,
                                        sample_weight: torch.Tensor | None = None, ignore_index: int | None = -100,
                                        label_smoothing: float = 0.0, reduction: str = "mean", z_loss: float = 0.0,
                                        softcap: float | None = None, num_items_in_batch: float | None = None,
                                        memory_budget: int | None = None, reduce_hidden_grad: bool = True,
                                        validate: bool = True) -> torch.Tensor:
    r"""The LM head and its vocabulary-parallel cross-entropy, fused: no rank holds ``N × V_r`` logits.

    :func:`vocab_parallel_cross_entropy` of the logits
    ``z = hidden @ weight_shardᵀ + bias_shard``, computed in chunks of rows
    of at most ``memory_budget`` bytes of logits (sized by the widest shard,
    so that every rank cuts the same chunks): for each chunk, this rank's
    logits, an all-reduce MAX of the chunk's row maxima and an all-reduce SUM
    of its packed sums, then (``'sum'``/``'mean'``) the chunk's gradient and
    its two matmuls, ``∂hidden = g @ Wᵣ`` and ``∂Wᵣ += gᵀ @ hidden``.  With
    ``reduction='none'`` the backward recomputes each chunk's logits from the
    saved row statistics (no collective).

    ``hidden`` ``(..., D)`` is replicated: the same on every rank.  Its
    gradient is a sum over the ranks' vocabulary slices; with
    ``reduce_hidden_grad=True`` (default) the backward all-reduces it (``N ×
    D`` numbers), so that every rank's ``hidden.grad`` is the full gradient,
    equal to the single-process one.  Pass ``False`` when the surrounding
    tensor-parallel code reduces it itself (Megatron-LM's
    ``copy_to_tensor_model_parallel_region`` before the LM head does): each
    rank then gets only its slice's part.

    ``weight_shard`` ``(V_r, D)`` and ``bias_shard`` ``(V_r,)`` are this
    rank's rows of the LM head; ``class_weight`` the full ``(V,)`` class
    weights or this rank's ``(V_r,)`` slice (the name ``weight`` is the
    matrix here, as in :func:`crossentropy.linear_cross_entropy`).  Every
    other argument is :func:`vocab_parallel_cross_entropy`'s; the handshake
    also checks that ``hidden`` is the same on every rank (a checksum).

    Communication per call: the handshake (``validate=True``); per chunk of
    rows, an all-reduce MAX (rows numbers) and an all-reduce SUM (rows × k);
    in the backward, one all-reduce of ``∂hidden`` when it is asked for and
    ``reduce_hidden_grad``.  Fewer chunks (a larger ``memory_budget``) means
    fewer collectives.

    >>> import torch, torch.distributed as dist
    >>> import crossentropy as ce
    >>> from crossentropy.torch.distributed import vocab_parallel_linear_cross_entropy
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> g = torch.Generator().manual_seed(0)
    >>> h = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    >>> W = torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    >>> y = torch.tensor([1, 2, 3, 4, 5, 6])
    >>> loss = vocab_parallel_linear_cross_entropy(h, W, y, memory_budget=160)   # two rows of logits a chunk
    >>> loss.backward()
    >>> ref, (dh, dW) = ce.value_and_grad(ce.linear_cross_entropy, h.detach(), W.detach(), y, wrt=(0, 1))
    >>> bool(torch.isclose(loss, ref)), bool(torch.allclose(h.grad, dh)), bool(torch.allclose(W.grad, dW))
    (True, True, True)
    >>> dist.destroy_process_group()
    """
    return _call(_linear_loss, "vocab_parallel_linear_cross_entropy", group, hidden, weight_shard, target,
                 bias_shard=bias_shard, class_weight=class_weight, sample_weight=sample_weight,
                 reduce_hidden_grad=reduce_hidden_grad, ignore_index=ignore_index, label_smoothing=label_smoothing,
                 reduction=reduction, z_loss=z_loss, softcap=softcap, num_items_in_batch=num_items_in_batch,
                 memory_budget=memory_budget, vocab_sizes=vocab_sizes, validate=validate)


def _linear_loss(comm: Comm, hidden: torch.Tensor, weight_shard: torch.Tensor, target: torch.Tensor, *,
                 bias_shard: torch.Tensor | None, class_weight: torch.Tensor | None,
                 sample_weight: torch.Tensor | None, reduce_hidden_grad: bool, **options: Any) -> torch.Tensor:
    """:func:`vocab_parallel_linear_cross_entropy` over ``comm``."""
    _plain_call("vocab_parallel_linear_cross_entropy", class_weight, sample_weight,
                names=("class_weight", "sample_weight"))
    p = plan_linear(comm, hidden, weight_shard, target, bias=bias_shard, class_weight=class_weight,
                    sample_weight=sample_weight, reduce_hidden_grad=reduce_hidden_grad, options=options)
    return LinearCE.apply(hidden, weight_shard, bias_shard, p)


def gather_vocab_sizes(local_size: int, /, *, group: ProcessGroup | None = None) -> tuple[int, ...]:
    """Every rank's shard width, in rank order (one all-gather): the ``vocab_sizes`` for ``validate=False``.

    >>> import torch.distributed as dist
    >>> from crossentropy.torch.distributed import gather_vocab_sizes
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> gather_vocab_sizes(50257)
    (50257,)
    >>> dist.destroy_process_group()
    """
    comm = Comm.of(group, "gather_vocab_sizes")
    n = int(local_size)
    if n != local_size or n < 0:
        raise InvalidOptionError(f"gather_vocab_sizes: local_size must be a non-negative int; got {local_size!r}")
    t = torch.tensor([n], dtype=torch.int64, device=comm.control_device())
    return tuple(int(v) for v in comm.gather(t).reshape(-1).tolist())
