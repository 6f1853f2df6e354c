"""crossentropy: the cross-entropy family of losses, exact and framework-neutral.

Every function takes NumPy, PyTorch or JAX arrays and returns the caller's
array type.  Arrays are positional-only, options keyword-only.  Gradients of
every loss come from :func:`value_and_grad` / :func:`grad`.

>>> import numpy as np, crossentropy as ce
>>> round(float(ce.cross_entropy(np.array([[2.0, 1.0, -1.0]]), np.array([0]))), 6)
0.349012
"""

from ._errors import (
    CrossEntropyError,
    InvalidDTypeError,
    InvalidOptionError,
    ProbabilityRangeError,
    ShapeMismatchError,
    TargetOutOfRangeError,
)
from ._grad import grad, value_and_grad
from .activations import log_sigmoid, log_softmax, logsumexp, sigmoid, softmax
from .binary import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    binary_focal_cross_entropy,
    binary_focal_cross_entropy_with_logits,
)
from .linear import linear_cross_entropy
from .categorical import (
    categorical_cross_entropy,
    categorical_focal_cross_entropy,
    cross_entropy,
    focal_cross_entropy,
    generalized_cross_entropy,
    nll_loss,
    poly1_cross_entropy,
    safe_softmax_cross_entropy,
)

from ._version import __version__

__all__ = [
    "sigmoid",
    "log_sigmoid",
    "softmax",
    "log_softmax",
    "logsumexp",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_focal_cross_entropy",
    "binary_focal_cross_entropy_with_logits",
    "cross_entropy",
    "categorical_cross_entropy",
    "nll_loss",
    "focal_cross_entropy",
    "categorical_focal_cross_entropy",
    "generalized_cross_entropy",
    "poly1_cross_entropy",
    "safe_softmax_cross_entropy",
    "linear_cross_entropy",
    "value_and_grad",
    "grad",
    "CrossEntropyError",
    "InvalidDTypeError",
    "InvalidOptionError",
    "ProbabilityRangeError",
    "ShapeMismatchError",
    "TargetOutOfRangeError",
]
