"""PyTorch drop-ins: ``CrossEntropyLoss``, ``NLLLoss``, ``BCELoss``, ``BCEWithLogitsLoss``.

Each class *is* the ``torch.nn`` class of the same name (a subclass: same
constructor, defaults, buffers, ``state_dict``, ``repr`` and legacy
``size_average``/``reduce`` handling) whose ``forward`` computes with
:mod:`crossentropy` through :mod:`crossentropy.torch.functional`.  Swap the
import and nothing else changes::

    from crossentropy.torch import CrossEntropyLoss   # was: from torch.nn import CrossEntropyLoss

>>> import torch
>>> from crossentropy.torch import CrossEntropyLoss
>>> loss_fn = CrossEntropyLoss(label_smoothing=0.1)
>>> x = torch.tensor([[2.0, 1.0, -1.0]], requires_grad=True)
>>> loss = loss_fn(x, torch.tensor([0]))
>>> loss.backward()
>>> print(loss.detach(), x.grad)
tensor(0.4823) tensor([[-0.2279,  0.2262,  0.0018]])

Every autodiff entry point of PyTorch works and gives PyTorch's numbers:
``backward``, ``create_graph=True`` (double backward, gradient penalties),
``torch.autograd.functional``, forward-mode AD, every ``torch.func`` transform
(``grad``, ``vmap``, ``jacrev``, ``jacfwd``, ``hessian``) and ``torch.compile``
(see ``docs/adapters.md``):

>>> h = torch.func.hessian(lambda z: CrossEntropyLoss()(z, torch.tensor([0])))(x.detach())
>>> print(h.shape, torch.allclose(h, torch.func.hessian(lambda z: torch.nn.CrossEntropyLoss()(z, torch.tensor([0])))(x.detach())))
torch.Size([1, 3, 1, 3]) True

Importing this module imports ``torch``; importing :mod:`crossentropy`
alone does not.
"""

from __future__ import annotations

import torch

from . import functional
from .functional import binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, nll_loss
from .linear import LinearCrossEntropyLoss

__all__ = ["CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "LinearCrossEntropyLoss", "functional"]


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    r"""``torch.nn.CrossEntropyLoss`` computed by :func:`crossentropy.torch.functional.cross_entropy`.

    Constructor: ``(weight=None, size_average=None, ignore_index=-100,
    reduce=None, reduction='mean', label_smoothing=0.0)``; call
    ``(input, target)`` with classes on dim 1 (dim 0 when unbatched).

    >>> import torch
    >>> from crossentropy.torch import CrossEntropyLoss
    >>> print(CrossEntropyLoss(reduction="sum")(torch.zeros(2, 4), torch.tensor([1, 3])))  # 2 ln 4
    tensor(2.7726)
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(torch.nn.NLLLoss):
    r"""``torch.nn.NLLLoss`` computed by :func:`crossentropy.torch.functional.nll_loss`.

    Constructor: ``(weight=None, size_average=None, ignore_index=-100,
    reduce=None, reduction='mean')``; input holds log-probabilities.

    >>> import torch
    >>> from crossentropy.torch import NLLLoss
    >>> print(NLLLoss()(torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]])), torch.tensor([0, 1])))
    tensor(1.4979)
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class BCELoss(torch.nn.BCELoss):
    r"""``torch.nn.BCELoss`` computed by :func:`crossentropy.torch.functional.binary_cross_entropy`.

    Constructor: ``(weight=None, size_average=None, reduce=None,
    reduction='mean')``; ``weight`` is elementwise.

    >>> import torch
    >>> from crossentropy.torch import BCELoss
    >>> print(BCELoss()(torch.tensor([0.9, 0.2]), torch.tensor([1.0, 0.0])))
    tensor(0.1643)
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    r"""``torch.nn.BCEWithLogitsLoss`` computed by :func:`crossentropy.torch.functional.binary_cross_entropy_with_logits`.

    Constructor: ``(weight=None, size_average=None, reduce=None,
    reduction='mean', pos_weight=None)``.

    >>> import torch
    >>> from crossentropy.torch import BCEWithLogitsLoss
    >>> print(BCEWithLogitsLoss(pos_weight=torch.tensor([3.0]))(torch.zeros(2, 1), torch.tensor([[1.0], [0.0]])))
    tensor(1.3863)
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy_with_logits(input, target, weight=self.weight, reduction=self.reduction,
                                                pos_weight=self.pos_weight)
