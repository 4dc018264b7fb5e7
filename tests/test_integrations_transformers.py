"""attn_implementation="selfattention" against transformers' own "eager", on tiny random models.

Every model is built here from a config with a fixed seed and saved to a temporary folder (nothing
is downloaded). Each config is copied per model: ``from_config`` writes the implementation into
the config object it is given.
"""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    AttentionInterface,
    AutoModel,
    AutoModelForCausalLM,
    BertConfig,
    LlamaConfig,
    MistralConfig,
)

from selfattention.integrations import transformers as sa_hf  # noqa: E402

TOL = 1e-5
TINY = dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64)


@pytest.fixture(scope="module")
def bridge() -> sa_hf.Bridge:
    return sa_hf.register()


def _bert() -> BertConfig:
    return BertConfig(vocab_size=50, max_position_embeddings=32, **TINY)


def _llama() -> LlamaConfig:
    return LlamaConfig(vocab_size=50, num_key_value_heads=2, max_position_embeddings=64, **TINY)


def _mistral() -> MistralConfig:
    return MistralConfig(vocab_size=50, num_key_value_heads=2, sliding_window=4, **TINY)


def _saved_pair(config, auto, tmp_path, impl="selfattention"):
    """(eager model, same weights through ``impl``), both loaded with ``from_pretrained``."""
    torch.manual_seed(0)
    auto.from_config(copy.deepcopy(config)).save_pretrained(tmp_path)
    eager = auto.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ours = auto.from_pretrained(tmp_path, attn_implementation=impl).eval()
    assert ours.config._attn_implementation == impl
    return eager, ours


def _config_pair(config, auto, impl="selfattention"):
    torch.manual_seed(0)
    eager = auto.from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    ours = auto.from_config(copy.deepcopy(config), attn_implementation=impl).eval()
    ours.load_state_dict(eager.state_dict())
    return eager, ours


def _max_diff(a, b, rows: torch.Tensor | None = None) -> float:
    """max |a - b|; ``rows`` (b, n) bool keeps the positions that are not padding (axis -2 or 1)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if rows is not None:
        keep = rows[:, None, :, None] if a.dim() == 4 else rows[..., None]
        a, b = a * keep, b * keep
    return (a - b).abs().max().item()


def _grad_diff(m1, m2) -> float:
    """max |g1 - g2| over all parameter gradients, relative to the largest |g1|."""
    g2 = dict(m2.named_parameters())
    pairs = [(p.grad, g2[n].grad) for n, p in m1.named_parameters() if p.grad is not None]
    scale = max(a.abs().max().item() for a, _ in pairs)
    return max((a - b).abs().max().item() for a, b in pairs) / scale


def _compare(eager, ours, inputs: dict, rows: torch.Tensor) -> dict[str, float]:
    """Outputs, per-head attentions (absolute) and parameter gradients (relative) of a forward +
    backward on both."""
    diffs: dict[str, float] = {}
    results = []
    for model in (eager, ours):
        model.zero_grad()
        out = model(**inputs, output_attentions=True)
        main = out.logits if hasattr(out, "logits") else out.last_hidden_state
        (main * rows[..., None]).square().sum().backward()
        results.append((main, out.attentions))
    (m1, a1), (m2, a2) = results
    diffs["out"] = _max_diff(m1.detach(), m2.detach(), rows)
    pairs = zip(a1, a2, strict=True)
    diffs["weights"] = max(_max_diff(x.detach(), y.detach(), rows) for x, y in pairs)
    diffs["grad"] = _grad_diff(eager, ours)
    # Padded query rows included: zeros where eager averages, never NaN.
    assert torch.isfinite(m2).all() and all(torch.isfinite(w).all() for w in a2)
    return diffs


# --- equality with eager -------------------------------------------------------------------------


def test_bert_with_padding_matches_eager(bridge, tmp_path):
    eager, ours = _saved_pair(_bert(), AutoModel, tmp_path)
    ids = torch.randint(0, 50, (3, 9), generator=torch.Generator().manual_seed(1))
    attn = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [1] * 2 + [0] * 7])
    bridge.served.clear()
    diffs = _compare(eager, ours, dict(input_ids=ids, attention_mask=attn), attn.bool())
    assert max(diffs.values()) <= TOL, diffs
    # Weights were asked for: the dispatcher chose, per layer, a backend that returns them.
    assert sum(bridge.served.values()) == 2


def test_bert_without_weights_takes_the_fused_path(bridge, tmp_path):
    eager, ours = _saved_pair(_bert(), AutoModel, tmp_path)
    ids = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(2))
    attn = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
    bridge.served.clear()
    with torch.no_grad():
        a = eager(input_ids=ids, attention_mask=attn).last_hidden_state
        b = ours(input_ids=ids, attention_mask=attn).last_hidden_state
    assert _max_diff(a, b, attn.bool()) <= TOL
    assert bridge.served == {"sdpa": 2}


def test_llama_gqa_rotary_causal_matches_eager(bridge, tmp_path):
    eager, ours = _saved_pair(_llama(), AutoModelForCausalLM, tmp_path)
    ids = torch.randint(1, 50, (2, 11), generator=torch.Generator().manual_seed(3))
    # No padding: transformers gives no mask and the causal flag carries the pattern.
    diffs = _compare(eager, ours, dict(input_ids=ids), torch.ones(2, 11, dtype=torch.bool))
    assert max(diffs.values()) <= TOL, diffs
    # Left padding: a bool mask; the padded query rows (no key allowed) are ours zeros and
    # eager's uniform average, so only real positions are compared.
    attn = torch.tensor([[1] * 11, [0] * 4 + [1] * 7])
    diffs = _compare(eager, ours, dict(input_ids=ids, attention_mask=attn), attn.bool())
    assert max(diffs.values()) <= TOL, diffs


def test_mistral_sliding_window_matches_eager(bridge):
    eager, ours = _config_pair(_mistral(), AutoModelForCausalLM)
    ids = torch.randint(1, 50, (2, 13), generator=torch.Generator().manual_seed(4))
    diffs = _compare(eager, ours, dict(input_ids=ids), torch.ones(2, 13, dtype=torch.bool))
    assert max(diffs.values()) <= TOL, diffs
    bridge.served.clear()
    with torch.no_grad():
        a, b = eager(input_ids=ids).logits, ours(input_ids=ids).logits
    assert _max_diff(a, b) <= TOL
    # The window reached sa.attention as a window (SDPA passes a window over), not only as a mask.
    assert "sdpa" not in bridge.served and sum(bridge.served.values()) == 2


@pytest.mark.parametrize("make", [_llama, _mistral], ids=["llama", "mistral"])
def test_generate_with_kv_cache_matches_eager(bridge, tmp_path, make):
    eager, ours = _saved_pair(make(), AutoModelForCausalLM, tmp_path)
    shapes: list[tuple[int, int]] = []

    def spy(module, query, key, *args, **kwargs):
        shapes.append((query.shape[-2], key.shape[-2]))
        return bridge(module, query, key, *args, **kwargs)

    AttentionInterface.register("selfattention", spy)
    try:
        ids = torch.randint(1, 50, (2, 6), generator=torch.Generator().manual_seed(5))
        attn = torch.tensor([[1] * 6, [0, 0] + [1] * 4])
        kw = dict(max_new_tokens=3, do_sample=False, pad_token_id=0, output_scores=True)
        ga = eager.generate(ids, attention_mask=attn, return_dict_in_generate=True, **kw)
        gb = ours.generate(ids, attention_mask=attn, return_dict_in_generate=True, **kw)
    finally:
        AttentionInterface.register("selfattention", bridge)
    assert torch.equal(ga.sequences, gb.sequences)
    assert max(_max_diff(x, y) for x, y in zip(ga.scores, gb.scores, strict=True)) <= TOL
    # The decoding steps pass one query against the cached keys (a window keeps the last few).
    assert [n for i, n in shapes if i == 1] == [7, 7, 8, 8] if make is _llama else [4, 4, 4, 4]


def test_float_mask_with_a_bias_matches_eager(bridge):
    eager, ours = _config_pair(_llama(), AutoModelForCausalLM)
    n = 7
    ids = torch.randint(1, 50, (2, n), generator=torch.Generator().manual_seed(6))
    low = torch.finfo(torch.float32).min
    bias = -0.3 * (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs().float()
    mask4d = torch.where(torch.ones(n, n).tril().bool(), bias, low).expand(2, 1, n, n).clone()
    with torch.no_grad():
        a = eager(input_ids=ids, attention_mask=mask4d, output_attentions=True)
        b = ours(input_ids=ids, attention_mask=mask4d, output_attentions=True)
    assert _max_diff(a.logits, b.logits) <= TOL
    assert max(_max_diff(x, y) for x, y in zip(a.attentions, b.attentions, strict=True)) <= TOL


def test_dropout_applies_in_training_only(bridge):
    config = _bert()
    config.attention_probs_dropout_prob = 0.5
    config.hidden_dropout_prob = 0.0
    _, ours = _config_pair(config, AutoModel)
    ids = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        still = ours(input_ids=ids).last_hidden_state
        ours.train()
        torch.manual_seed(0)
        dropped = ours(input_ids=ids).last_hidden_state
    assert torch.isfinite(dropped).all()
    assert _max_diff(still, dropped) > 1e-3


@pytest.mark.parametrize("backend", ["sdpa", "chunked"])
@pytest.mark.parametrize("make", [_bert, _llama], ids=["bert", "llama"])
def test_forced_backend_matches_eager(backend, make):
    sa_hf.register(f"sa-{backend}", backend=backend)
    auto = AutoModel if make is _bert else AutoModelForCausalLM
    eager, ours = _config_pair(make(), auto, impl=f"sa-{backend}")
    ids = torch.randint(1, 50, (2, 9), generator=torch.Generator().manual_seed(9))
    attn = torch.tensor(
        [[1] * 9, [1] * 5 + [0] * 4] if make is _bert else [[1] * 9, [0] * 3 + [1] * 6]
    )
    rows = attn.bool()
    outs = []
    for model in (eager, ours):
        out = model(input_ids=ids, attention_mask=attn)
        main = out.logits if hasattr(out, "logits") else out.last_hidden_state
        (main * rows[..., None]).square().sum().backward()
        outs.append(main.detach())
    assert _max_diff(*outs, rows) <= TOL
    assert _grad_diff(eager, ours) <= TOL


# --- the conversions -----------------------------------------------------------------------------


def test_split_mask_keeps_one_polarity_and_a_separate_bias():
    allowed = torch.tensor([[True, False], [True, True]])
    assert sa_hf.split_mask(None) == (None, None)
    mask, bias = sa_hf.split_mask(allowed)
    assert mask is allowed and bias is None
    low = torch.finfo(torch.float32).min
    mask, bias = sa_hf.split_mask(torch.tensor([[0.0, low], [0.0, 0.0]]))
    assert torch.equal(mask, allowed) and bias is None
    mask, bias = sa_hf.split_mask(torch.tensor([[0.5, -torch.inf], [0.0, -2.0]]))
    assert torch.equal(mask, allowed)
    assert torch.equal(bias, torch.tensor([[0.5, 0.0], [0.0, -2.0]]))
    with pytest.raises(TypeError, match="attention_mask"):
        sa_hf.split_mask(torch.ones(2, 2, dtype=torch.long))


def test_fully_masked_rows_give_zeros_not_nan(bridge):
    module = torch.nn.Module()
    module.is_causal = False
    q = torch.randn(1, 4, 3, 8, requires_grad=True)
    k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    mask = torch.ones(1, 1, 3, 5, dtype=torch.bool)
    mask[..., 1, :] = False
    out, w = bridge(module, q, k, v, mask, scaling=None, output_attentions=True)
    assert out.shape == (1, 3, 4, 8) and w.shape == (1, 4, 3, 5)
    assert torch.all(out[:, 1] == 0) and torch.all(w[:, :, 1] == 0)
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_unsupported_keyword_is_refused(bridge):
    q = torch.randn(1, 2, 3, 4)
    with pytest.raises(ValueError, match="softcap"):
        bridge(torch.nn.Module(), q, q, q, None, softcap=30.0)


# --- register ------------------------------------------------------------------------------------


def test_register_names_a_bad_argument():
    with pytest.raises(TypeError, match="backnd"):
        sa_hf.register("sa-typo", backnd="math")
    with pytest.raises(ValueError, match="backend"):
        sa_hf.register("sa-typo", backend="fastest")
    with pytest.raises(ValueError, match="normalize"):
        sa_hf.register("sa-typo", normalize="softermax")
    with pytest.raises(ValueError, match="name"):
        sa_hf.register("sdpa")
    with pytest.raises(ValueError, match="name"):
        sa_hf.register("")


def test_register_backend_choice(tmp_path):
    math_bridge = sa_hf.register("sa-math", backend="math")
    eager, ours = _saved_pair(_bert(), AutoModel, tmp_path, impl="sa-math")
    ids = torch.randint(0, 50, (1, 6), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert _max_diff(eager(input_ids=ids)[0], ours(input_ids=ids)[0]) <= TOL
    assert math_bridge.served == {"math": 2}
    # A backend that cannot serve the call says why, under the implementation's name.
    sa_hf.register("sa-window", backend="window")
    ours.set_attn_implementation("sa-window")
    with pytest.raises(ValueError, match=r"sa-window.*window"):
        ours(input_ids=ids)
