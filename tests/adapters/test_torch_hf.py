"""crossentropy.torch.hf.use_fused_loss: tiny randomly initialised transformers causal LMs (no downloads)
train to the same losses and parameters as with transformers' own loss."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")  # CI installs it (.ci/run); a skip there fails the run

from crossentropy import InvalidOptionError  # noqa: E402
from crossentropy.torch.hf import use_fused_loss  # noqa: E402

V, T, B = 97, 9, 4


def _config(kind):
    common = dict(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64)
    if kind == "llama":
        return transformers.LlamaConfig(**common)
    if kind == "qwen2":
        return transformers.Qwen2Config(**common)
    if kind == "gemma2":  # final_logit_softcapping -> softcap; tied embeddings
        return transformers.Gemma2Config(**common, head_dim=4, final_logit_softcapping=3.0, sliding_window=4,
                                         attn_implementation="eager")
    raise ValueError(kind)


def _model(kind, dtype):
    torch.manual_seed(0)
    cfg = _config(kind)
    model = transformers.AutoModelForCausalLM.from_config(cfg).to(dtype)
    with torch.no_grad():  # larger logits than the tiny init gives, so that the softcap matters
        model.lm_head.weight.mul_(20.0)
    model.train()
    return model


def _batches(n):
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        ids = torch.randint(0, V, (B, T), generator=g)
        labels = ids.clone()
        labels[0, :3] = -100  # a prompt that is not trained on
        labels[2, -2:] = -100  # padding
        out.append((ids, labels))
    return out


def _train(model, batches, micro):
    """SGD steps (linear in the gradient, so the parameters compare as the gradients do); with ``micro`` > 1
    each batch runs as micro-batches with the global num_items_in_batch, as HF's Trainer passes it."""
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for ids, labels in batches:
        opt.zero_grad()
        n_items = (labels[:, 1:] != -100).sum()
        total = 0.0
        for part in torch.arange(B).chunk(micro):
            kw = {"num_items_in_batch": n_items} if micro > 1 else {}
            out = model(input_ids=ids[part], labels=labels[part], **kw)
            out.loss.backward()
            total += float(out.loss.detach())
        losses.append(total)
        opt.step()
    return losses


# HF's loss upcasts the logits to float32 (also for a float64 model): the models are float32 and the
# tolerances float32's
LOSS_RTOL, PARAM_ATOL = 2e-6, 2e-5


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma2"])
@pytest.mark.parametrize("micro", [1, 2])
def test_training_matches_transformers_own_loss(kind, micro):
    base = _model(kind, torch.float32)
    ours = use_fused_loss(copy.deepcopy(base))
    head_calls = []
    ours.lm_head.register_forward_hook(lambda *a: head_calls.append(1))
    batches = _batches(3)
    l_hf = _train(base, batches, micro)
    l_ours = _train(ours, batches, micro)
    assert not head_calls  # the logits were never computed
    for a, b in zip(l_ours, l_hf):
        assert abs(a - b) <= LOSS_RTOL * abs(b), (l_ours, l_hf)
    diff = max(float((p - q).detach().abs().max()) for p, q in zip(ours.parameters(), base.parameters()))
    assert diff <= PARAM_ATOL, diff
    assert l_hf[-1] < l_hf[0]  # it trains


# Gemma2's RMSNorm computes in float32 whatever the model's dtype (transformers' code), so its
# micro-batches differ from the full batch at float32's rounding; Llama's is exact in float64
@pytest.mark.parametrize("kind,rtol", [("llama", 1e-12), ("gemma2", 1e-6)])
def test_gradient_accumulation_equals_the_full_batch(kind, rtol):
    """float64: micro-batch gradients with the global num_items_in_batch add up to the full batch's."""
    base = _model(kind, torch.float64)
    m_full, m_acc = use_fused_loss(copy.deepcopy(base)), use_fused_loss(copy.deepcopy(base))
    ids, labels = _batches(1)[0]
    full = m_full(input_ids=ids, labels=labels).loss
    full.backward()
    n_items = (labels[:, 1:] != -100).sum()
    acc = 0.0
    for part in (slice(0, 1), slice(1, 3), slice(3, 4)):
        loss = m_acc(input_ids=ids[part], labels=labels[part], num_items_in_batch=n_items).loss
        loss.backward()
        acc += float(loss.detach())
    assert abs(acc - float(full.detach())) <= rtol * float(full.detach())
    for (name, p), q in zip(m_full.named_parameters(), m_acc.parameters()):
        assert float((p.grad - q.grad).abs().max()) <= rtol * float(p.grad.abs().max()), name


def test_float32_and_bfloat16_models():
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        base = _model("llama", dtype)
        ours = use_fused_loss(copy.deepcopy(base))
        ids, labels = _batches(1)[0]
        a, b = ours(input_ids=ids, labels=labels).loss, base(input_ids=ids, labels=labels).loss
        assert a.dtype == b.dtype == torch.float32  # as HF's loss
        assert abs(float(a) - float(b)) <= tol * abs(float(b))


def test_eval_mode_and_restore_keep_the_logits():
    base = _model("llama", torch.float64)
    model = use_fused_loss(copy.deepcopy(base))
    ids, labels = _batches(1)[0]
    assert model(input_ids=ids, labels=labels).logits is None
    model.eval()
    out = model(input_ids=ids, labels=labels)
    assert out.logits is not None and out.logits.shape == (B, T, V)
    model.train()
    use_fused_loss(model, enabled=False)
    assert model(input_ids=ids, labels=labels).logits is not None
    # a copy of a patched model is patched on its own (Trainer/EMA deep copies), and Trainer's signature
    # checks see the model's parameters
    import inspect

    use_fused_loss(model)
    clone = copy.deepcopy(model)
    assert clone.forward.__self__ is clone and clone._crossentropy_original_forward.__self__ is clone
    params = inspect.signature(clone.forward).parameters
    assert "input_ids" in params and "labels" in params and any(p.kind == p.VAR_KEYWORD for p in params.values())
    assert clone(input_ids=ids, labels=labels).logits is None
    with pytest.raises(InvalidOptionError, match="ForCausalLM layout"):
        use_fused_loss(torch.nn.Linear(2, 2))
