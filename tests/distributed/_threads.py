"""A process group made of threads, for fast in-process tests of the full vocabulary-parallel stack.

:class:`ThreadComm` is the library's ``Comm`` with its transport replaced:
every collective is an exchange through a shared slot list between two
barriers (reduced in rank order, so deterministically).  The validation,
the chunking, the autograd Functions and the collective accounting are the
library's own; only gloo is not involved (``test_vocab_parallel.py`` runs
real process groups).
"""

from __future__ import annotations

import threading

import torch

from crossentropy.torch._dist_comm import Comm


class _Hub:
    def __init__(self, size, timeout):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=timeout)
        self.slots = [None] * size


class ThreadComm(Comm):
    __slots__ = ("hub",)

    def __init__(self, hub, rank):
        super().__init__(None, rank, hub.size, "threads")
        self.hub = hub

    def control_device(self, like=None):
        return like.device if like is not None else torch.device("cpu")

    def _exchange(self, t):
        self.hub.slots[self.rank] = t.detach().clone()
        self.hub.barrier.wait()
        vals = list(self.hub.slots)
        self.hub.barrier.wait()
        if any(v.shape != t.shape or v.dtype != t.dtype for v in vals):
            raise RuntimeError("a collective with different shapes or dtypes on the ranks")  # as gloo would
        return vals

    def _all_reduce(self, t, op):
        vals = self._exchange(t)
        acc = vals[0].clone()
        for v in vals[1:]:
            acc = torch.maximum(acc, v) if op == "max" else acc + v
        t.copy_(acc)

    def _all_gather(self, t):
        return torch.stack(self._exchange(t))


def run_ranks(size, fn, timeout=20.0):
    """``[fn(comm_r) for each rank r]``, the ranks running concurrently in threads.

    An exception on a rank is returned in its place (the test decides what it
    expected); a rank left waiting raises ``BrokenBarrierError`` after ``timeout``.
    """
    hub = _Hub(size, timeout)
    out = [None] * size

    def body(r):
        try:
            out[r] = fn(ThreadComm(hub, r))
        except BaseException as e:  # noqa: BLE001 - returned to the test
            # (no barrier.abort() here: a rank that raises right after the last exchange would break the
            # barrier under a rank still waking from it; a rank stuck waiting times out instead)
            out[r] = e

    threads = [threading.Thread(target=body, args=(r,), daemon=True) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return out
