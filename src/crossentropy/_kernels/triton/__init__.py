"""Triton kernels for softmax cross-entropy on CUDA tensors.

Importing this package imports neither ``torch`` nor ``triton``; the names
below load :mod:`.ce` (which imports ``torch``) on first access, and the
kernels themselves (which import ``triton``) load on the first launch.

* :func:`chunk_cross_entropy`: the in-chunk kernel (loss, lse, gradient in place);
* :func:`vocab_partials`, :func:`lift_partials`, :func:`merge_partials`,
  :func:`vocab_finish`: the vocabulary-split mode, :class:`Partials` its state;
* :func:`cross_entropy_cuda`: ``value_and_grad(cross_entropy, ...)`` on CUDA tensors.

See ``docs/triton.md`` for the design, the exactness scheme and the state layout.

>>> import crossentropy._kernels.triton as kt
>>> sorted(kt.__all__)[:3]
['Partials', 'available', 'chunk_cross_entropy']
"""

from __future__ import annotations

__all__ = [
    "Partials",
    "available",
    "chunk_cross_entropy",
    "cross_entropy_cuda",
    "lift_partials",
    "merge_partials",
    "vocab_finish",
    "vocab_partials",
]


def available() -> bool:
    """Whether the kernels can run here: ``triton`` and ``torch`` are installed and a CUDA device is visible.

    Answered without importing triton (see ``_ce_triton.build``)."""
    import importlib.util

    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def __getattr__(name):
    if name in __all__:
        from . import ce

        return getattr(ce, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
