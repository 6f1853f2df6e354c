r"""Hugging Face ``transformers``: train a causal LM with the fused linear cross-entropy, in one line.

>>> from crossentropy.torch.hf import use_fused_loss
>>> model = use_fused_loss(model)          # doctest: +SKIP

``use_fused_loss`` replaces the *instance's* ``forward`` (the class is left
alone) with one that, while the model is training and ``labels`` are given,
runs the decoder (``model.model``), then
:func:`crossentropy.torch.linear.linear_cross_entropy` on its last hidden
states and ``lm_head``'s weight (and bias): the logits are never materialised,
and ``outputs.logits`` is ``None``.  Everything else is HF's own loss
(``ForCausalLMLoss``):

* labels shifted by one (or ``shift_labels`` when given), ``-100`` ignored;
* ``num_items_in_batch`` (the Trainer passes it under gradient accumulation)
  divides the summed loss, so accumulated micro-batches give the full
  batch's gradient;
* ``config.final_logit_softcapping`` (Gemma 2/3) becomes ``softcap``;
* the loss is computed in float32 for half-precision models (HF upcasts the
  logits; here the hidden states and the head are upcast, V × D instead of
  N × V).

In eval mode, or without labels, or with ``logits_to_keep`` set, the model's
own forward runs (logits returned as usual).  Works for the ``*ForCausalLM``
classes that follow HF's standard layout (``model.model`` the decoder,
``model.lm_head`` a ``Linear``): Llama, Mistral, Qwen2/Qwen3, Gemma/Gemma2/
Gemma3 (text), Phi3, and others alike; :func:`use_fused_loss` checks the layout
and raises a clear error otherwise.  ``use_fused_loss(model, enabled=False)``
restores the original forward.
"""

from __future__ import annotations

import functools
import types
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from .._errors import InvalidOptionError
from .linear import linear_cross_entropy

__all__ = ["use_fused_loss"]

_LOSS_KWARGS = ("num_items_in_batch", "shift_labels", "ignore_index")

_Model = TypeVar("_Model", bound=torch.nn.Module)


def _check_layout(model: torch.nn.Module) -> None:
    lm_head = getattr(model, "lm_head", None)
    decoder = getattr(model, "model", None)
    if not isinstance(lm_head, torch.nn.Linear) or not isinstance(decoder, torch.nn.Module):
        raise InvalidOptionError(
            f"use_fused_loss needs a causal LM with a decoder at .model and a torch.nn.Linear at .lm_head "
            f"(Hugging Face's *ForCausalLM layout); got {type(model).__name__} with .model "
            f"{type(decoder).__name__} and .lm_head {type(lm_head).__name__}")


def use_fused_loss(model: _Model, *, z_loss: float = 0.0, memory_budget: int | None = None,
                   enabled: bool = True) -> _Model:
    """Make ``model`` (a ``transformers`` causal LM) train with the fused loss; returns ``model``.

    ``z_loss`` adds ``z_loss · lse²`` per counted token (off by default: HF's
    loss has none); ``memory_budget`` bounds the logits held at once (bytes).
    ``enabled=False`` restores the model's own forward.
    """
    original = model.__dict__.get("_crossentropy_original_forward")
    if not enabled:
        if original is not None:
            model.forward = original
            del model._crossentropy_original_forward
        return model
    _check_layout(model)
    if original is None:
        # setattr: nn.Module's __setattr__ is typed for tensors and modules, this is a bound method
        setattr(model, "_crossentropy_original_forward", model.forward)

    # a method bound to the model (not a closure over it): copy.deepcopy(model) rebinds it to the copy;
    # wrapped with the class's forward so that inspect.signature (Trainer's column and loss-kwargs
    # checks) sees the model's own parameters
    @functools.wraps(type(model).forward)
    def forward(self: Any, *args: Any, labels: torch.Tensor | None = None, **kwargs: Any) -> Any:
        own = self._crossentropy_original_forward
        if labels is None or not self.training or args or kwargs.get("logits_to_keep", 0) not in (0, None):
            return own(*args, labels=labels, **kwargs)
        return _fused_forward(self, labels, kwargs, z_loss, memory_budget)

    model.forward = types.MethodType(forward, model)
    return model


def _fused_forward(model: Any, labels: torch.Tensor, kwargs: dict[str, Any], z_loss: float,
                   memory_budget: int | None) -> Any:
    from transformers.modeling_outputs import CausalLMOutputWithPast

    loss_kw = {k: kwargs.pop(k) for k in _LOSS_KWARGS if k in kwargs}
    kwargs.pop("logits_to_keep", None)
    return_dict = kwargs.pop("return_dict", None)
    out = model.model(**kwargs)
    hidden = out[0] if not hasattr(out, "last_hidden_state") else out.last_hidden_state
    ignore_index = loss_kw.get("ignore_index", -100)
    shift_labels = loss_kw.get("shift_labels")
    if shift_labels is None:
        # as HF's ForCausalLMLoss: tokens < n predict n; the last position predicts nothing
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    head = model.lm_head
    D = hidden.shape[-1]
    h = hidden.reshape(-1, D)
    w, b = head.weight, head.bias
    if h.dtype in (torch.float16, torch.bfloat16):
        # HF computes the loss of a half-precision model on float32 logits (N × V); a float32 copy of
        # the head (V × D) gives the same float32 loss without them
        h, w, b = h.float(), w.float(), (None if b is None else b.float())
    loss = linear_cross_entropy(h, w, shift_labels.reshape(-1).to(h.device), linear_bias=b,
                                ignore_index=ignore_index, softcap=getattr(model.config, "final_logit_softcapping",
                                                                           None),
                                z_loss=z_loss, num_items_in_batch=loss_kw.get("num_items_in_batch"),
                                memory_budget=memory_budget)
    result = CausalLMOutputWithPast(loss=loss, logits=None, past_key_values=getattr(out, "past_key_values", None),
                                    hidden_states=getattr(out, "hidden_states", None),
                                    attentions=getattr(out, "attentions", None))
    return result.to_tuple() if return_dict is False else result
