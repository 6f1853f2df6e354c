"""Error classes of the library.

Every validation error raised by :mod:`crossentropy` is an instance of
:class:`CrossEntropyError` and of the matching builtin (``ValueError`` or
``TypeError``), so ``except ValueError`` keeps working for callers that do not
know about this library.
"""

from __future__ import annotations

__all__ = [
    "CrossEntropyError",
    "InvalidOptionError",
    "ShapeMismatchError",
    "TargetOutOfRangeError",
    "ProbabilityRangeError",
    "InvalidDTypeError",
]


class CrossEntropyError(Exception):
    """Base class of every error raised by :mod:`crossentropy` for bad input."""


class InvalidOptionError(CrossEntropyError, ValueError):
    """A keyword option has a value outside its domain (unknown reduction,
    ``label_smoothing`` outside [0, 1], an unknown reduction, ...)."""


class ShapeMismatchError(CrossEntropyError, ValueError):
    """Arrays whose shapes do not match or broadcast as the loss requires."""


class TargetOutOfRangeError(CrossEntropyError, ValueError):
    """A class index target outside ``[0, C)`` that is not ``ignore_index``."""


class ProbabilityRangeError(CrossEntropyError, ValueError):
    """A probability (input or target) outside ``[0, 1]``."""


class InvalidDTypeError(CrossEntropyError, TypeError):
    """An array of the wrong kind of dtype (e.g. integer logits)."""
