"""The collectives of the vocabulary-parallel losses, in one place (and counted).

Every collective the losses make goes through :class:`Comm`, so that the
counts and byte sizes documented in ``docs/distributed.md`` are what the
tests measure (:func:`recording`).  A group of one rank makes no collective
call at all.
"""

from __future__ import annotations

import contextlib

import torch

from .._errors import InvalidOptionError

__all__ = ["Comm", "recording"]

_LOG: list | None = None


@contextlib.contextmanager
def recording():
    """Record ``(op, shape, dtype, bytes)`` of every collective made inside the block."""
    global _LOG
    prev, _LOG = _LOG, []
    try:
        yield _LOG
    finally:
        _LOG = prev


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
        if _LOG is not None:
            _LOG.append((op, tuple(t.shape), str(t.dtype).replace("torch.", ""),
                         t.numel() * t.element_size() * factor))

    def max_(self, t):
        """All-reduce MAX in place."""
        if self.size > 1 and t.numel():
            self._log("all_reduce(MAX)", t)
            _dist().all_reduce(t, op=_dist().ReduceOp.MAX, group=self.group)
        return t

    def sum_(self, t):
        """All-reduce SUM in place."""
        if self.size > 1 and t.numel():
            self._log("all_reduce(SUM)", t)
            _dist().all_reduce(t, op=_dist().ReduceOp.SUM, group=self.group)
        return t

    def gather(self, t):
        """All-gather: a ``(size, *t.shape)`` tensor, rank order."""
        if self.size == 1:
            return t[None]
        self._log("all_gather", t)
        out = [torch.empty_like(t) for _ in range(self.size)]
        _dist().all_gather(out, t.contiguous(), group=self.group)
        return torch.stack(out)
