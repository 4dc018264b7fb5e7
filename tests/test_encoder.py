"""TransformerEncoderLayer / TransformerEncoder against torch's layers, Hugging Face BERT and the
float64 reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import selfattention as sa
from conftest import randn
from selfattention import reference
from selfattention.nn import (
    EncoderOutput,
    RotaryPositions,
    TransformerEncoder,
    TransformerEncoderLayer,
)

DIM, HEADS, FF = 12, 3, 20


def copy_from_torch(ours: TransformerEncoderLayer, theirs: torch.nn.TransformerEncoderLayer):
    """torch's packed in_proj [W_q; W_k; W_v] -> our query/key/value projections, and the rest."""
    sd = theirs.state_dict()
    wq, wk, wv = sd["self_attn.in_proj_weight"].chunk(3)
    bq, bk, bv = sd["self_attn.in_proj_bias"].chunk(3)
    mapped = {
        "attn.query_proj.weight": wq,
        "attn.query_proj.bias": bq,
        "attn.key_proj.weight": wk,
        "attn.key_proj.bias": bk,
        "attn.value_proj.weight": wv,
        "attn.value_proj.bias": bv,
        "attn.out_proj.weight": sd["self_attn.out_proj.weight"],
        "attn.out_proj.bias": sd["self_attn.out_proj.bias"],
        "ff.fc1.weight": sd["linear1.weight"],
        "ff.fc1.bias": sd["linear1.bias"],
        "ff.fc2.weight": sd["linear2.weight"],
        "ff.fc2.bias": sd["linear2.bias"],
    }
    for norm in ("norm1", "norm2"):
        for p in ("weight", "bias"):
            mapped[f"{norm}.{p}"] = sd[f"{norm}.{p}"]
    ours.load_state_dict(mapped)


def torch_pair(norm_first: bool, activation: str, dtype=torch.float64, seed: int = 0):
    torch.manual_seed(seed)
    theirs = torch.nn.TransformerEncoderLayer(
        DIM, HEADS, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    ).to(dtype)
    with torch.no_grad():  # non-trivial norms, so that their weights matter
        for name, p in theirs.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    ours = TransformerEncoderLayer(DIM, HEADS, FF, activation=activation, norm_first=norm_first).to(
        dtype
    )
    copy_from_torch(ours, theirs)
    return theirs, ours


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_layer_matches_torch(norm_first, activation):
    theirs, ours = torch_pair(norm_first, activation)
    x = randn(3, 9, DIM, seed=1)
    lengths = [9, 5, 1]
    kpm = ~sa.masks.padding(lengths)[:, 0, 0]  # torch polarity: True = padding
    causal = torch.triu(torch.full((9, 9), -torch.inf, dtype=torch.float64), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "enable_nested_tensor" etc.
        expected = {
            "plain": theirs(x),
            "padding": theirs(x, src_key_padding_mask=kpm),
            "causal": theirs(x, src_mask=causal, is_causal=True),
        }
    got = {
        "plain": ours(x),
        "padding": ours(x, mask=sa.masks.padding(lengths)),
        "causal": ours(x, mask=sa.masks.causal(9)),
    }
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-12, atol=1e-12, msg=key)


@pytest.mark.parametrize("norm_first", [False, True])
def test_layer_gradients_match_torch(norm_first):
    theirs, ours = torch_pair(norm_first, "gelu")
    xs = [randn(2, 6, DIM, seed=2).requires_grad_() for _ in range(2)]
    theirs(xs[0]).tanh().sum().backward()
    ours(xs[1]).tanh().sum().backward()
    torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=1e-10, atol=1e-12)
    g = theirs.self_attn.in_proj_weight.grad.chunk(3)
    torch.testing.assert_close(ours.attn.query_proj.weight.grad, g[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.attn.value_proj.weight.grad, g[2], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.ff.fc1.weight.grad, theirs.linear1.weight.grad)
    torch.testing.assert_close(ours.norm2.weight.grad, theirs.norm2.weight.grad)


def test_float32_fast_paths_match_torch():
    # eval + no_grad: torch takes its fused encoder kernel, we take SDPA; same numbers.
    theirs, ours = torch_pair(False, "gelu", dtype=torch.float32)
    theirs.eval(), ours.eval()
    x = randn(4, 33, DIM, seed=3, dtype=torch.float32)
    kpm = ~sa.masks.padding([33, 20, 7, 1])[:, 0, 0]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = theirs(x, src_key_padding_mask=kpm)
        b = ours(x, mask=~kpm[:, None, None, :])
    real = ~kpm  # torch's fast path zeroes the padded rows of its output; compare the real ones
    torch.testing.assert_close(b[real], a[real], rtol=2e-5, atol=2e-5)


def test_encoder_matches_torch_encoder_with_final_norm():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(
        DIM, HEADS, FF, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    ).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.nn.TransformerEncoder(
            layer, 3, norm=torch.nn.LayerNorm(DIM).double(), enable_nested_tensor=False
        )
    ours = TransformerEncoder(3, DIM, HEADS, ff_dim=FF, norm_first=True).double()
    assert ours.final_norm is not None  # pre-norm defaults to a final norm
    for mine, their in zip(ours.layers, theirs.layers, strict=True):
        copy_from_torch(mine, their)
    ours.final_norm.load_state_dict(theirs.norm.state_dict())
    x = randn(2, 8, DIM, seed=4)
    out = ours(x, return_hidden_states=True, return_weights=True)
    torch.testing.assert_close(out.last_hidden_state, theirs(x), rtol=1e-12, atol=1e-12)
    assert len(out.hidden_states) == 4 and out.hidden_states[0] is x
    assert out.hidden_states[-1] is out.last_hidden_state
    assert len(out.weights) == 3 and out.weights[0].shape == (2, HEADS, 8, 8)


def _bert(seed: int = 0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(
        vocab_size=40,
        hidden_size=DIM,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        intermediate_size=FF,
        max_position_embeddings=16,
        attn_implementation="eager",
    )
    bert = transformers.BertModel(cfg, add_pooling_layer=False).double().eval()
    with torch.no_grad():  # BERT's init (std 0.02) makes attention nearly uniform; spread it out
        for p in bert.encoder.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return bert


BERT_NAMES = {  # ours -> Hugging Face's, inside one layer
    "attn.query_proj": "attention.self.query",
    "attn.key_proj": "attention.self.key",
    "attn.value_proj": "attention.self.value",
    "attn.out_proj": "attention.output.dense",
    "norm1": "attention.output.LayerNorm",
    "ff.fc1": "intermediate.dense",
    "ff.fc2": "output.dense",
    "norm2": "output.LayerNorm",
}


def test_post_norm_gelu_is_exactly_bert():
    bert = _bert()
    ours = TransformerEncoder(
        2, DIM, HEADS, ff_dim=FF, norm_first=False, activation="gelu", layer_norm_eps=1e-12
    ).double()
    assert ours.final_norm is None  # post-norm: no final norm by default
    for mine, theirs in zip(ours.layers, bert.encoder.layer, strict=True):
        sd = theirs.state_dict()
        mine.load_state_dict(
            {f"{a}.{p}": sd[f"{b}.{p}"] for a, b in BERT_NAMES.items() for p in ("weight", "bias")}
        )
    ids = torch.randint(0, 40, (3, 11), generator=torch.Generator().manual_seed(5))
    lengths = [11, 6, 2]
    attention_mask = sa.masks.padding(lengths)[:, 0, 0].long()
    ref = bert(ids, attention_mask, output_attentions=True, output_hidden_states=True)
    emb = ref.hidden_states[0]
    out = ours(emb, mask=sa.masks.padding(lengths), return_weights=True, return_hidden_states=True)
    assert isinstance(out, EncoderOutput)
    for a, b in zip(out.hidden_states, ref.hidden_states, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(out.weights, ref.attentions, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, rtol=1e-12, atol=1e-12)


def test_layer_matches_reference_composition():
    # One pre-norm layer with RoPE, written with selfattention.reference and NumPy in float64.
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(8, 2, 16, norm_first=True, positions=RotaryPositions(4))
    layer = layer.double()
    x = randn(2, 7, 8, seed=6)
    p = {k: v.detach().numpy() for k, v in layer.state_dict().items()}

    def lin(name, a):
        return a @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    def norm(name, a):
        mu, var = a.mean(-1, keepdims=True), a.var(-1, keepdims=True)
        return (a - mu) / np.sqrt(var + 1e-5) * p[f"{name}.weight"] + p[f"{name}.bias"]

    def heads(a):
        return a.reshape(2, 7, 2, 4).transpose(0, 2, 1, 3)

    xn = x.numpy()
    h = norm("norm1", xn)
    q = reference.rotary(heads(lin("attn.query_proj", h)))
    k = reference.rotary(heads(lin("attn.key_proj", h)))
    o, _ = reference.attention(q, k, heads(lin("attn.value_proj", h)))
    xn = xn + lin("attn.out_proj", o.transpose(0, 2, 1, 3).reshape(2, 7, 8))
    h = lin("ff.fc1", norm("norm2", xn))
    gelu = torch.nn.functional.gelu(torch.from_numpy(h)).numpy()  # exact erf GELU
    xn = xn + lin("ff.fc2", gelu)
    np.testing.assert_allclose(layer(x).detach().numpy(), xn, rtol=1e-12, atol=1e-12)


def test_weights_per_layer_match_a_standalone_call():
    torch.manual_seed(0)
    enc = TransformerEncoder(2, DIM, HEADS, causal=True).double()
    x = randn(1, 5, DIM, seed=7)
    with torch.no_grad():
        out = enc(x, return_weights=True, return_hidden_states=True)
    for i, layer in enumerate(enc.layers):
        h_in = out.hidden_states[i]
        with torch.no_grad():
            _, w = layer.attn(layer.norm1(h_in), return_weights=True)
        torch.testing.assert_close(out.weights[i], w)
        assert float(torch.triu(w, 1).abs().max()) == 0.0  # causal reached every layer
    plain = enc(x)
    assert plain.hidden_states is None and plain.weights is None
    torch.testing.assert_close(plain.last_hidden_state, out.last_hidden_state)


def test_encoder_trains():
    torch.manual_seed(0)
    enc = TransformerEncoder(2, 8, 2, dropout=0.1)
    x, target = torch.randn(4, 6, 8), torch.randn(4, 6, 8)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = (enc(x).last_hidden_state - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation must be one of"):
        TransformerEncoderLayer(8, 2, activation="swishy")
    with pytest.raises(ValueError, match="heads must divide dim"):
        TransformerEncoderLayer(8, 3)
    with pytest.raises(ValueError, match="num_layers must be a positive int, got 0"):
        TransformerEncoder(0, 8, 2)
    with pytest.raises(ValueError, match="layer_norm_eps"):
        TransformerEncoderLayer(8, 2, layer_norm_eps=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'windw'"):
        TransformerEncoderLayer(8, 2, windw=3)
    enc = TransformerEncoder(1, 8, 2)
    with pytest.raises(ValueError, match=r"dim=8.*\(2, 3, 6\)"):
        enc(torch.randn(2, 3, 6))
    with pytest.raises(TypeError, match="mask must be bool"):
        enc(torch.randn(2, 3, 8), mask=torch.ones(2, 1, 1, 3))
