"""The collectives of the vocabulary-parallel losses, in one place (and counted).

Every collective the losses make goes through :class:`Comm`, so that the
counts and byte sizes documented in ``docs/distributed.md`` are what the
tests measure (:func:`recording`).  A group of one rank makes no collective
call at all.
"""

from __future__ import annotations

import contextlib
import threading

import torch

from .._errors import InvalidOptionError

__all__ = ["Comm", "recording"]

_STATE = threading.local()  # per thread: the list being recorded into, if any


@contextlib.contextmanager
def recording():
    """Record ``(op, shape, dtype, bytes)`` of every collective this thread makes inside the block."""
    prev = getattr(_STATE, "log", None)
    _STATE.log = log = []
    try:
        yield log
    finally:
        _STATE.log = prev


def _dist():
    import torch.distributed as dist

    return dist


class Comm:
    """A process group (or the default one) with the three collectives the losses use."""

    __slots__ = ("group", "rank", "size", "backend")

    def __init__(self, group, rank, size, backend):
        self.group, self.rank, self.size, self.backend = group, rank, size, backend

    @classmethod
    def of(cls, group, fname):
        dist = _dist()
        if not dist.is_available() or not dist.is_initialized():
            raise InvalidOptionError(
                f"{fname} needs an initialised torch.distributed process group "
                "(torch.distributed.init_process_group); none is initialised in this process")
        rank = dist.get_rank(group)
        if rank < 0:
            raise InvalidOptionError(f"{fname}: this process (global rank {dist.get_rank()}) is not a member "
                                     "of the process group passed as group=")
        return cls(group, rank, dist.get_world_size(group), str(dist.get_backend(group)))

    def control_device(self, like=None):
        """Where the small control tensors live: the data's device, else the backend's own."""
        if like is not None:
            return like.device
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _log(self, op, t, factor=1):
        log = getattr(_STATE, "log", None)
        if log is not None:
            log.append((op, tuple(t.shape), str(t.dtype).replace("torch.", ""),
                         t.numel() * t.element_size() * factor))

    def max_(self, t):
        """All-reduce MAX in place."""
        if self.size > 1 and t.numel():
            self._log("all_reduce(MAX)", t)
            self._all_reduce(t, "max")
        return t

    def sum_(self, t):
        """All-reduce SUM in place."""
        if self.size > 1 and t.numel():
            self._log("all_reduce(SUM)", t)
            self._all_reduce(t, "sum")
        return t

    def gather(self, t):
        """All-gather: a ``(size, *t.shape)`` tensor, rank order."""
        if self.size == 1:
            return t[None]
        self._log("all_gather", t)
        return self._all_gather(t.contiguous())

    # the transport (the tests replace it with threads)
    def _all_reduce(self, t, op):
        dist = _dist()
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM, group=self.group)

    def _all_gather(self, t):
        out = [torch.empty_like(t) for _ in range(self.size)]
        _dist().all_gather(out, t, group=self.group)
        return torch.stack(out)
